package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Reference targets of the ratio columns.
const (
	baselineTarget = "tgt-direct"
	ceilingTarget  = "raw"
)

// result is one target × job measurement.
type result struct {
	Target string  `json:"target"`
	Job    string  `json:"job"`
	IOPS   float64 `json:"iops"`
	MBps   float64 `json:"mb_per_s"` // 10^6 bytes per second
	LatUS  float64 `json:"mean_latency_us"`
	IOs    int64   `json:"ios"`
	// TargetCPU is the target process's utime+stime during the measured
	// run; TargetCPUPerIO is that in µs divided by IOs, -1 when there is
	// no target process (raw).
	TargetCPU      time.Duration `json:"target_cpu_ns"`
	TargetCPUPerIO float64       `json:"target_cpu_us_per_io"`
	// PeerCPUPerIO is the same for a replicated target's secondary; 0
	// when there is none.
	PeerCPUPerIO float64 `json:"peer_cpu_us_per_io,omitempty"`
	// FioCPUPerIO is fio's own user+system CPU in µs per I/O.
	FioCPUPerIO float64 `json:"fio_cpu_us_per_io"`
	// MachineCPUPerIO is the busy time of all CPUs (every process and the
	// kernel's own threads) in µs per I/O; MachineBusy is that busy time
	// as a fraction of all CPUs over the run: near 1, the run was bound
	// by CPU.
	MachineCPUPerIO float64 `json:"machine_cpu_us_per_io"`
	MachineBusy     float64 `json:"machine_busy"`
	Err             string  `json:"error,omitempty"`
}

// targetInfo says what a target is and whether it ran.
type targetInfo struct {
	Name     string `json:"name"`
	Describe string `json:"describe"`
	Skipped  string `json:"skipped,omitempty"`
	Err      string `json:"error,omitempty"`
}

// report is one run's output.
type report struct {
	Command    string        `json:"command"`
	Started    time.Time     `json:"started"`
	Finished   time.Time     `json:"finished"`
	Machine    string        `json:"machine"`
	CPUs       int           `json:"cpus"`
	Size       ByteSize      `json:"lun_size_bytes"`
	BackingFS  string        `json:"backing_fs"`
	Runtime    time.Duration `json:"runtime_ns"`
	Ramp       time.Duration `json:"ramp_ns"`
	FioVersion string        `json:"fio_version"`
	Jobs       []string      `json:"jobs"`
	Targets    []targetInfo  `json:"targets"`
	Results    []result      `json:"results"`
	// Resync holds each replicated target's first full sync.
	Resync []resyncFigures `json:"resync,omitempty"`
}

// resyncFigures are the replicated target's first full sync and the link
// it ran over.
type resyncFigures struct {
	Target   string  `json:"target"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	LinkMBps float64 `json:"link_mb_per_s"`
	// LinkCPUPerMB is the machine's CPU time in µs per MB the link
	// measurement moved: what replicating a byte costs at the least, the
	// sender's and the receiver's network stacks sharing this machine.
	LinkCPUPerMB float64 `json:"link_cpu_us_per_mb,omitempty"`
	// DiskMBps is an O_DIRECT copy of the primary's backing file to the
	// secondary's: what a resync needs from the disks, without the
	// network.
	DiskMBps float64 `json:"disk_mb_per_s"`
}

func newReport(cfg config, started time.Time, jobs []Job, backingDir string) *report {
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.Name
	}
	return &report{
		Command:   cfg.command,
		Started:   started,
		Machine:   machineInfo(),
		CPUs:      runtime.NumCPU(),
		Size:      cfg.size,
		BackingFS: fsName(backingDir),
		Runtime:   cfg.runtime,
		Ramp:      cfg.ramp,
		Jobs:      names,
	}
}

func (r *report) setTargetErr(name string, err error) {
	for i := range r.Targets {
		if r.Targets[i].Name == name {
			r.Targets[i].Err = err.Error()
		}
	}
}

func (r *report) find(target, job string) (result, bool) {
	for _, res := range r.Results {
		if res.Target == target && res.Job == job && res.Err == "" {
			return res, true
		}
	}
	return result{}, false
}

// renderMarkdown writes the report as Markdown: a header with the exact
// command and the setup, one table (job × target) and notes.
func renderMarkdown(w io.Writer, r *report) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	p("Produced by:\n\n```\n%s\n```\n\n", r.Command)
	p("- When: %s (%s)\n", r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Finished.Sub(r.Started).Round(time.Second))
	p("- Machine: %s\n", r.Machine)
	p("- LUN: %v, one backing file on %s, filled with data before the run, block size 512\n", r.Size, r.BackingFS)
	p("- Before each target the backing file is read once through the page cache, so buffered targets start warm whatever ran before\n")
	p("- Each job: %s warm-up run, then %s measured (fio `time_based`), 1 fio job, 1 session\n",
		secs(r.Ramp), secs(r.Runtime))
	p("- fio: %s, libiscsi engine rebuilt without FIO_SYNCIO (bench/build-fio.sh)\n\n", r.FioVersion)

	p("| job | target | IOPS | MB/s | mean lat µs | target CPU µs/IO | fio CPU µs/IO | machine CPU µs/IO | machine busy | IOPS vs %s | IOPS vs %s |\n", baselineTarget, ceilingTarget)
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, job := range r.Jobs {
		base, haveBase := r.find(baselineTarget, job)
		ceil, haveCeil := r.find(ceilingTarget, job)
		for _, t := range r.Targets {
			var res result
			found := false
			for _, x := range r.Results {
				if x.Target == t.Name && x.Job == job {
					res, found = x, true
				}
			}
			if !found {
				continue
			}
			if res.Err != "" {
				p("| %s | %s | failed | | | | | | | | |\n", job, t.Name)
				continue
			}
			ratio := func(ok bool, ref result) string {
				if !ok || ref.IOPS <= 0 {
					return "–"
				}
				return fmtFloat(res.IOPS/ref.IOPS, 2) + "×"
			}
			cpu := "–"
			if res.TargetCPUPerIO >= 0 {
				cpu = fmtFloat(res.TargetCPUPerIO, 1)
			}
			if res.PeerCPUPerIO > 0 {
				cpu += " + " + fmtFloat(res.PeerCPUPerIO, 1)
			}
			mcpu, busy := "–", "–"
			if res.MachineBusy > 0 {
				mcpu, busy = fmtFloat(res.MachineCPUPerIO, 1), fmtInt(100*res.MachineBusy)+"%"
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", job, t.Name,
				fmtInt(res.IOPS), fmtInt(res.MBps), fmtFloat(res.LatUS, 0), cpu, fmtFloat(res.FioCPUPerIO, 1),
				mcpu, busy, ratio(haveBase, base), ratio(haveCeil, ceil))
		}
	}
	p("\nTargets:\n\n")
	for _, t := range r.Targets {
		p("- **%s**: %s", t.Name, t.Describe)
		switch {
		case t.Skipped != "":
			p(". *Skipped*: %s", oneLine(t.Skipped))
		case t.Err != "":
			p(". *Failed*: %s", oneLine(t.Err))
		}
		p("\n")
	}
	if qd := queueDepthCheck(r); qd != "" {
		p("\nQueue depth check (IOPS at QD32 ÷ QD1, 4 KiB random read): %s\n", qd)
	}
	if ec := encryptionCost(r); ec != "" {
		p("\nEncrypted LUN vs plain LUN (hastord-crypt ÷ hastord, IOPS): %s\n", ec)
	}
	for _, name := range []string{"hastord-repl", "hastord-repl-ram"} {
		if rc := replicationCost(r, name); rc != "" {
			p("\nReplicated LUN vs plain LUN (%s ÷ hastord, IOPS; protocol C): %s\n", name, rc)
		}
	}
	for _, rs := range r.Resync {
		p("\nResync (%s: first full sync of the filled backing file to the secondary, idle): %s\n", rs.Target, resyncLine(rs))
	}
	if len(r.Resync) > 0 {
		p("\nA CPU ceiling is the ratio a replicated write could reach on this machine with every CPU busy, " +
			"if it cost no more CPU than a plain write (its machine CPU per I/O) plus moving its bytes over the link " +
			"(the link measurement's machine CPU per MB): fio, both nodes and both network stacks share these CPUs.\n")
	}
	p("\nMB/s is 10^6 bytes/s. Target CPU is the target process's utime+stime (all threads, /proc/PID/stat) " +
		"over the measured run, divided by the I/Os fio completed in it (for a replicated target: primary + secondary); " +
		"fio CPU is fio's own usr+sys time per I/O. Machine CPU is the busy time of all CPUs (/proc/stat: every process, " +
		"the kernel's threads and interrupts) per I/O, and machine busy that time as a share of all CPUs over the run: " +
		"near 100%%, the job was bound by CPU, not by the disk. " +
		"Ratios compare IOPS (equal to the MB/s ratio, the block size being the same).\n")
	var failed []string
	for _, res := range r.Results {
		if res.Err != "" {
			failed = append(failed, fmt.Sprintf("%s/%s: %s", res.Target, res.Job, oneLine(res.Err)))
		}
	}
	if len(failed) > 0 {
		p("\nFailures:\n\n")
		for _, f := range failed {
			p("- %s\n", f)
		}
	}
}

// queueDepthCheck returns, per target, the IOPS ratio between QD32 and QD1
// 4 KiB random reads: well above 1 shows that fio really keeps 32 commands
// in flight.
func queueDepthCheck(r *report) string {
	var parts []string
	for _, t := range r.Targets {
		lo, ok1 := r.find(t.Name, "randread-4k-qd1")
		hi, ok2 := r.find(t.Name, "randread-4k-qd32")
		if ok1 && ok2 && lo.IOPS > 0 {
			parts = append(parts, fmt.Sprintf("%s %s×", t.Name, fmtFloat(hi.IOPS/lo.IOPS, 1)))
		}
	}
	return strings.Join(parts, ", ")
}

// encryptionCost returns, per job, the IOPS ratio of the encrypted LUN to
// the plain one.
func encryptionCost(r *report) string {
	var parts []string
	for _, job := range r.Jobs {
		plain, ok1 := r.find("hastord", job)
		enc, ok2 := r.find("hastord-crypt", job)
		if ok1 && ok2 && plain.IOPS > 0 && plain.Err == "" && enc.Err == "" {
			parts = append(parts, fmt.Sprintf("%s %s×", job, fmtFloat(enc.IOPS/plain.IOPS, 2)))
		}
	}
	return strings.Join(parts, ", ")
}

// replicationCost compares a replicated target's LUN with the plain one,
// and gives each ratio's CPU ceiling on this machine: the IOPS it would
// reach with every CPU busy if a replicated write cost no more than a
// plain one (its machine CPU per I/O) plus moving its bytes over the link
// (the link measurement's CPU per MB), divided by the plain IOPS.
func replicationCost(r *report, target string) string {
	var link resyncFigures
	for _, rs := range r.Resync {
		if rs.Target == target {
			link = rs
		}
	}
	var parts []string
	for _, job := range r.Jobs {
		plain, ok1 := r.find("hastord", job)
		rep, ok2 := r.find(target, job)
		if !ok1 || !ok2 || plain.IOPS <= 0 || plain.Err != "" || rep.Err != "" {
			continue
		}
		part := fmt.Sprintf("%s %s×", job, fmtFloat(rep.IOPS/plain.IOPS, 2))
		if link.LinkCPUPerMB > 0 && plain.MachineCPUPerIO > 0 && r.CPUs > 0 {
			perIO := plain.MachineCPUPerIO + link.LinkCPUPerMB*plain.MBps/plain.IOPS
			ceiling := float64(r.CPUs) * 1e6 / perIO / plain.IOPS
			part += fmt.Sprintf(" (CPU ceiling %s×)", fmtFloat(ceiling, 2))
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}

// resyncLine reports the resync throughput against min(link, disk), the
// disk being the O_DIRECT copy the harness measured before the sync.
func resyncLine(rs resyncFigures) string {
	if rs.Seconds <= 0 {
		return "not measured"
	}
	mbps := float64(rs.Bytes) / rs.Seconds / 1e6
	lim := min(rs.LinkMBps, rs.DiskMBps)
	link := fmtFloat(rs.LinkMBps, 0) + " MB/s (TCP over both veth paths"
	if rs.LinkCPUPerMB > 0 {
		link += ", " + fmtFloat(rs.LinkCPUPerMB, 0) + " µs of machine CPU per MB"
	}
	return fmt.Sprintf("%d bytes in %s s = %s MB/s; link %s); "+
		"disk %s MB/s (O_DIRECT copy of the backing file to the secondary's, 1 MiB, 32 reads and 32 writes in flight); "+
		"resync ÷ min(link, disk) = %s×", rs.Bytes, fmtFloat(rs.Seconds, 2), fmtFloat(mbps, 0),
		link, fmtFloat(rs.DiskMBps, 0), fmtFloat(mbps/lim, 2))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func secs(d time.Duration) string {
	if d == 0 {
		return "no"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s"
}

// fmtFloat formats with the given decimals; NaN and negative values show
// as "–".
func fmtFloat(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// fmtInt formats a rate rounded to an integer with thin thousands groups
// ("21 034").
func fmtInt(v float64) string {
	if math.IsNaN(v) || v < 0 {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	return b.String()
}

// machineInfo describes the CPU, memory and kernel.
func machineInfo() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		mem = fmt.Sprintf(", %d GiB RAM", (uint64(si.Totalram)*uint64(si.Unit))>>30)
	}
	kernel := ""
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		kernel = ", Linux " + utsString(u.Release[:])
	}
	return fmt.Sprintf("%d × %s%s%s; shared with other work", runtime.NumCPU(), model, mem, kernel)
}

func utsString[T int8 | uint8](a []T) string {
	b := make([]byte, 0, len(a))
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// fsName names the file system that holds dir.
func fsName(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	switch st.Type {
	case 0xEF53:
		return "ext4 (" + dir + ")"
	case 0x58465342:
		return "xfs (" + dir + ")"
	case 0x9123683E:
		return "btrfs (" + dir + ")"
	case tmpfsMagic:
		return "tmpfs (" + dir + ")"
	}
	return fmt.Sprintf("fs type %#x (%s)", st.Type, dir)
}
