// Command bench is hastor's benchmark harness: it measures hastor's iSCSI
// target hastord side by side with other userspace iSCSI targets, in one run,
// on the same machine, with the same LUN size, the same filled backing file
// and the same fio jobs.
//
// Run it from the module root as root (it installs Debian packages and starts
// targets):
//
//	go run ./bench                   # full run, all targets, all jobs
//	go run ./bench -quick            # 3 s per job, 256 MiB LUN
//	go run ./bench -targets tgt-direct,istgt -jobs randread-4k-qd32
//
// Targets (flag -targets):
//   - raw: fio directly on the backing file with libaio and O_DIRECT, the
//     ceiling no target can beat.
//   - hastord: this project's daemon, built from ./cmd/hastord and started
//     from a generated YAML config (write_cache on, like tgt).
//   - tgt-direct and tgt-buffered: Debian's tgtd, backing file opened with
//     O_DIRECT (--bsoflags direct) and in its default buffered mode.
//   - istgt: Debian's istgt (buffered, QueueDepth 32).
//   - gotgt: github.com/gostor/gotgt v0.2.2, built into the cache directory
//     from the Go module proxy (GPL; never vendored, only run).
//
// Jobs (flag -jobs): 4 KiB random read and write, 1 MiB sequential read and
// write, each at iodepth 1 and 32. Before each measured fio run a separate
// fio run of the same job warms the target up for -ramp; the measured run
// then lasts -runtime. Keeping the ramp out of the measured run makes the
// window in which the target's CPU time is sampled (utime+stime of
// /proc/PID/stat, all threads) the same window in which fio counts I/Os, so
// "target CPU µs per I/O" is exact up to the 10 ms clock tick.
//
// fio reaches the iSCSI targets through its libiscsi engine. Debian's fio is
// built without it, so bench/build-fio.sh rebuilds Debian's fio source
// package with --enable-libiscsi and with the engine's FIO_SYNCIO flag
// removed (otherwise fio caps the queue depth at 1); the harness refuses any
// fio output that still says "queue depth will be capped at 1".
// bench/install-deps.sh installs the Debian packages (idempotent).
//
// Output: a Markdown table (job × target: IOPS, MB/s, mean latency, target
// CPU µs per I/O, fio CPU µs per I/O, IOPS ratios against tgt-direct and
// against the raw ceiling) headed by the exact command line, written to
// results.md in the results directory (flag -results) and optionally to
// -out; the raw fio JSON of every measured run goes to raw/, the targets'
// logs to logs/, and a machine-readable summary to results.json.
//
// Every process the harness starts is put in its own process group, gets
// SIGKILL if the harness dies (Pdeathsig), and is stopped on return, on error
// and on SIGINT/SIGTERM. Ports are picked free on 127.0.0.1 for every run;
// 3260 is never used.
package main
