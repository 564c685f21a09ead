package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	hastorconfig "hastor/config"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func TestParseFioRandRead(t *testing.T) {
	data, err := os.ReadFile("testdata/fio-randread-4k-qd32.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseFio(data)
	if err != nil {
		t.Fatal(err)
	}
	if !near(st.IOPS, 26241.87906) || st.IOs != 52510 || !near(st.BytesPerS, 107486736) {
		t.Errorf("got %+v", st)
	}
	if st.Runtime != 2*time.Second {
		t.Errorf("runtime %v, want 2s", st.Runtime)
	}
	if want := time.Duration(1212319); st.LatMean != want {
		t.Errorf("latency %v, want %v", st.LatMean, want)
	}
	// usr 3.45% + sys 15.65% of 2000 ms.
	if want := 382 * time.Millisecond; (st.CPU - want).Abs() > time.Microsecond {
		t.Errorf("fio cpu %v, want %v", st.CPU, want)
	}
}

func TestParseFioWriteWithLeadingNotes(t *testing.T) {
	data, err := os.ReadFile("testdata/fio-seqwrite-1m-qd32.json")
	if err != nil {
		t.Fatal(err)
	}
	// fio prints notes before the JSON when it writes to stdout.
	data = append([]byte("note: something fio says\n"), data...)
	st, err := parseFio(data)
	if err != nil {
		t.Fatal(err)
	}
	if st.IOs != 2977 || !near(st.IOPS, 1470.849802) || !near(st.BytesPerS, 1542297802) {
		t.Errorf("got %+v", st)
	}
	if want := time.Duration(21741840); st.LatMean != want {
		t.Errorf("latency %v, want %v", st.LatMean, want)
	}
}

func TestParseFioErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", errFioOutput},
		{"garbage", "{not json", errFioOutput},
		{"no jobs", `{"jobs":[]}`, errFioOutput},
		{"two jobs", `{"jobs":[{"jobname":"a"},{"jobname":"b"}]}`, errFioOutput},
		{"job error", `{"jobs":[{"jobname":"a","error":5,"read":{"total_ios":3}}]}`, errFioJob},
		{"no io", `{"jobs":[{"jobname":"a"}]}`, errFioJob},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFio([]byte(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestIscsiFilenameEscapesColons(t *testing.T) {
	got := iscsiFilename("127.0.0.1:40001", "iqn.2024-01.org.hastor.bench:lun", 1)
	want := `iscsi\://127.0.0.1\:40001/iqn.2024-01.org.hastor.bench\:lun/1`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestFioArgs(t *testing.T) {
	j := Job{Name: "randread-4k-qd32", RW: "randread", BS: 4096, IODepth: 32}
	r := fioRun{Job: j, Runtime: 15 * time.Second, Engine: []string{"--ioengine=libiscsi"}, JSONPath: "/x/y.json"}
	a := r.args()
	for _, want := range []string{"--rw=randread", "--bs=4096", "--iodepth=32", "--runtime=15s", "--time_based",
		"--norandommap", "--ioengine=libiscsi", "--output-format=json", "--output=/x/y.json"} {
		if !slices.Contains(a, want) {
			t.Errorf("args %q lack %s", a, want)
		}
	}
	r.JSONPath = ""
	r.Job = Job{Name: "seqwrite-1m-qd1", RW: "write", BS: 1 << 20, IODepth: 1}
	a = r.args()
	if !slices.Contains(a, "--output-format=terse") || slices.Contains(a, "--norandommap") {
		t.Errorf("ramp/sequential args %q", a)
	}
}

func TestParseProcStat(t *testing.T) {
	// busy = user 100 + nice 10 + system 40 + irq 5 + softirq 3 + steal 2
	// ticks; idle and iowait do not count; guest is part of user already.
	text := "cpu  100 10 40 900 50 5 3 2 7 0\ncpu0 50 5 20 450 25 3 2 1 0 0\ncpu1 50 5 20 450 25 2 1 1 7 0\nintr 1 2 3\n"
	busy, cpus, err := parseProcStat(text)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1600 * time.Millisecond; busy != want || cpus != 2 {
		t.Fatalf("got %v on %d CPUs, want %v on 2", busy, cpus, want)
	}
	for _, bad := range []string{"", "intr 1 2\n", "cpu 1 2 3\ncpu0 1 2 3\n", "cpu 1 2 3 4 5 6 7 x\ncpu0 1\n"} {
		if _, _, err := parseProcStat(bad); !errors.Is(err, errBadStat) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
	if _, _, err := machineCPU(); err != nil {
		t.Fatal(err)
	}
}

func TestParseStatCPU(t *testing.T) {
	// comm may contain spaces and ')'; utime=250 and stime=150 ticks.
	line := "4242 (tgt d) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 17 0 12345 0 0\n"
	got, err := parseStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 4 * time.Second; got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); !errors.Is(err, errBadStat) {
		t.Fatalf("short line: err %v", err)
	}
	if _, err := parseStatCPU("no paren"); !errors.Is(err, errBadStat) {
		t.Fatalf("no paren: err %v", err)
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
	}{
		{"4GiB", 4 << 30}, {"4G", 4 << 30}, {"256MiB", 256 << 20}, {"256 MiB", 256 << 20},
		{"64k", 64 << 10}, {"1048576", 1 << 20}, {"2TiB", 2 << 40}, {"512b", 512},
	} {
		got, err := parseByteSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "GiB", "-1G", "1.5G", "0", "99999999999T"} {
		if _, err := parseByteSize(bad); !errors.Is(err, errBadSize) {
			t.Errorf("%q: err %v, want errBadSize", bad, err)
		}
	}
	if s := ByteSize(4 << 30).String(); s != "4 GiB" {
		t.Errorf("String: %s", s)
	}
	if s := ByteSize(1536 << 20).String(); s != "1536 MiB" {
		t.Errorf("String: %s", s)
	}
}

func TestSelectJobsAndTargets(t *testing.T) {
	all, err := selectJobs("")
	if err != nil || len(all) != 8 {
		t.Fatalf("all jobs: %d, %v", len(all), err)
	}
	js, err := selectJobs("seqwrite-1m-qd32,randread")
	if err != nil {
		t.Fatal(err)
	}
	if got := jobNames(js); got != "randread-4k-qd1,randread-4k-qd32,seqwrite-1m-qd32" {
		t.Fatalf("got %s", got)
	}
	if _, err := selectJobs("nosuch"); !errors.Is(err, errUnknownName) {
		t.Fatalf("err %v", err)
	}
	ts, err := selectTargets("istgt,raw")
	if err != nil || len(ts) != 2 || ts[0].Name() != "raw" || ts[1].Name() != "istgt" {
		t.Fatalf("targets %v, %v", ts, err)
	}
	if _, err := selectTargets("lio"); !errors.Is(err, errUnknownName) {
		t.Fatalf("err %v", err)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-quick", "-runtime", "5s", "-targets", "tgt-direct"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.size != quickSize || cfg.runtime != 5*time.Second || cfg.ramp != quickRamp {
		t.Errorf("quick: %+v", cfg)
	}
	if cfg.command != "go run ./bench -quick -runtime 5s -targets tgt-direct" {
		t.Errorf("command %q", cfg.command)
	}
	cfg, err = parseFlags(nil, io.Discard)
	if err != nil || cfg.size != defaultSize || cfg.runtime != defaultRuntime || cfg.ramp != defaultRamp {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{
		{"-size", "1000k"}, {"-size", "8MiB"}, {"-runtime", "1500ms"}, {"-targets", "lio"}, {"-jobs", "x"}, {"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRenderMarkdown(t *testing.T) {
	rep := &report{
		Command:    "go run ./bench -quick",
		Started:    time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Finished:   time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC),
		Machine:    "2 × test CPU",
		Size:       256 << 20,
		BackingFS:  "ext4 (/x)",
		Runtime:    3 * time.Second,
		Ramp:       time.Second,
		FioVersion: "fio-3.33",
		Jobs:       []string{"randread-4k-qd1", "randread-4k-qd32"},
		Targets: []targetInfo{
			{Name: "raw", Describe: "raw file"},
			{Name: "hastord", Describe: "ours", Skipped: "skipped: not built"},
			{Name: "tgt-direct", Describe: "tgt"},
			{Name: "istgt", Describe: "istgt"},
		},
		Results: []result{
			{Target: "raw", Job: "randread-4k-qd1", IOPS: 20000, MBps: 81.92, LatUS: 49.6, TargetCPUPerIO: -1, FioCPUPerIO: 10},
			{Target: "raw", Job: "randread-4k-qd32", IOPS: 100000, MBps: 409.6, LatUS: 320, TargetCPUPerIO: -1, FioCPUPerIO: 5},
			{Target: "tgt-direct", Job: "randread-4k-qd1", IOPS: 5000, MBps: 20.48, LatUS: 199, TargetCPUPerIO: 80, FioCPUPerIO: 15},
			{Target: "tgt-direct", Job: "randread-4k-qd32", IOPS: 21000, MBps: 86, LatUS: 1500, TargetCPUPerIO: 50.04, FioCPUPerIO: 9, MachineCPUPerIO: 90.4, MachineBusy: 0.95},
			{Target: "istgt", Job: "randread-4k-qd1", Err: "fio randread-4k-qd1: boom | bang"},
			{Target: "istgt", Job: "randread-4k-qd32", IOPS: 42000, MBps: 172, LatUS: 760, TargetCPUPerIO: 22.5, FioCPUPerIO: 8},
		},
	}
	var b bytes.Buffer
	renderMarkdown(&b, rep)
	out := b.String()
	for _, want := range []string{
		"```\ngo run ./bench -quick\n```",
		"| job | target | IOPS | MB/s | mean lat µs | target CPU µs/IO | fio CPU µs/IO | machine CPU µs/IO | machine busy | IOPS vs tgt-direct | IOPS vs raw |",
		"| randread-4k-qd1 | raw | 20\u202f000 | 82 | 50 | – | 10.0 | – | – | 4.00× | 1.00× |",
		"| randread-4k-qd32 | tgt-direct | 21\u202f000 | 86 | 1500 | 50.0 | 9.0 | 90.4 | 95% | 1.00× | 0.21× |",
		"| randread-4k-qd32 | istgt | 42\u202f000 | 172 | 760 | 22.5 | 8.0 | – | – | 2.00× | 0.42× |",
		"| randread-4k-qd1 | istgt | failed | | | | | | | | |",
		"**hastord**: ours. *Skipped*: skipped: not built",
		"Queue depth check (IOPS at QD32 ÷ QD1, 4 KiB random read): raw 5.0×, tgt-direct 4.2×",
		"- istgt/randread-4k-qd1: fio randread-4k-qd1: boom \\| bang",
		"256 MiB",
		"1 s warm-up run, then 3 s measured",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Every table row has the header's number of columns.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "| randread") {
			if n := strings.Count(line, "|") - strings.Count(line, `\|`); n != 12 {
				t.Errorf("row has %d bars: %s", n, line)
			}
		}
	}
}

func TestGeneratedConfigs(t *testing.T) {
	y := hastordConfig("/s", 40001, benchIQN, "/d/b.img", 4<<30, "")
	for _, want := range []string{`state_dir: "/s"`, `portals: ["127.0.0.1:40001"]`, `path: "/d/b.img"`,
		"size: 4294967296", "block_size: 512", "write_cache: true", benchIQN} {
		if !strings.Contains(y, want) {
			t.Errorf("hastord config lacks %q:\n%s", want, y)
		}
	}
	// The generated file must pass hastord's own validation.
	dir := t.TempDir()
	backing := filepath.Join(dir, "b.img")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := hastorconfig.Parse([]byte(hastordConfig(filepath.Join(dir, "state"), 40001, benchIQN, backing, 64<<20, ""))); err != nil {
		t.Errorf("hastord rejects the generated config: %v", err)
	}
	c := istgtConfig("/r", 40001, 40002, benchIQN, "/d/b.img", 256<<20)
	for _, want := range []string{`NodeBase "iqn.2024-01.org.hastor.bench"`, "TargetName lun", "Portal DA1 127.0.0.1:40001",
		"Portal UC1 127.0.0.1:40002", "LUN0 Storage /d/b.img 256MB", "QueueDepth 32", "[UnitControl]"} {
		if !strings.Contains(c, want) {
			t.Errorf("istgt config lacks %q:\n%s", want, c)
		}
	}
	if p := tgtControlPort(40001); p < 20000 || p > 32767 {
		t.Errorf("tgt control port %d out of tgtd's range", p)
	}
}

func TestCreateBacking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.img")
	const size = 16<<20 + 8192 // a partial last chunk
	if err := createBacking(path, size); err != nil {
		if errors.Is(err, errTmpfs) {
			t.Skip("temp dir is on tmpfs")
		}
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != size {
		t.Fatalf("size %d, want %d", len(data), size)
	}
	for b := 0; b < size/4096; b++ {
		if got := binary.LittleEndian.Uint64(data[b*4096:]); got != uint64(b)+1 {
			t.Fatalf("block %d starts with %d", b, got)
		}
	}
	if bytes.Count(data[8:4096], []byte{0}) > 200 {
		t.Fatalf("block 0 is mostly zeros")
	}
}

func TestProcessCPUAndStop(t *testing.T) {
	sleep, err := lookTool("sleep")
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProcess("sleep", filepath.Join(t.TempDir(), "sleep.log"), nil, sleep, "60")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.cpuTime(); err != nil {
		t.Fatal(err)
	}
	if err := p.alive(); err != nil {
		t.Fatal(err)
	}
	p.stop(5 * time.Second)
	if err := p.alive(); !errors.Is(err, errExited) {
		t.Fatalf("after stop: %v", err)
	}
}

// TestSmokeTgt runs the whole harness against tgt-direct, 2 s per job. It
// needs root, Debian's tgt and the fio build; it runs only when
// HASTOR_BENCH_SMOKE=1 so that `go test ./...` stays fast.
func TestSmokeTgt(t *testing.T) {
	if os.Getenv("HASTOR_BENCH_SMOKE") != "1" {
		t.Skip("set HASTOR_BENCH_SMOKE=1 to run the benchmark smoke test (root, apt, ~40 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	cfg := config{
		targets: "tgt-direct",
		jobs:    "all",
		size:    64 << 20,
		runtime: 2 * time.Second,
		dir:     dir,
		results: filepath.Join(dir, "results"),
		command: "go test ./bench -run TestSmokeTgt",
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	rep, err := run(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 8 {
		t.Fatalf("%d results, want 8", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Err != "" || r.IOPS <= 0 || r.TargetCPUPerIO <= 0 {
			t.Errorf("bad result %+v", r)
		}
	}
	lo, _ := rep.find("tgt-direct", "randread-4k-qd1")
	hi, _ := rep.find("tgt-direct", "randread-4k-qd32")
	if hi.IOPS <= lo.IOPS {
		t.Errorf("QD32 %v IOPS not above QD1 %v: is fio still capping the queue depth?", hi.IOPS, lo.IOPS)
	}
	for _, f := range []string{"results.md", "results.json", "raw/tgt-direct/randread-4k-qd32.json"} {
		if _, err := os.Stat(filepath.Join(cfg.results, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "backing-"+strconv.Itoa(os.Getpid())+".img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backing file left behind: %v", err)
	}
}

func TestReplicationCostCeiling(t *testing.T) {
	rep := &report{
		CPUs: 2,
		Jobs: []string{"seqwrite-1m-qd32", "randwrite-4k-qd32"},
		Results: []result{
			{Target: "hastord", Job: "seqwrite-1m-qd32", IOPS: 2000, MBps: 2097.152, MachineCPUPerIO: 600},
			{Target: "hastord-repl", Job: "seqwrite-1m-qd32", IOPS: 1000, MBps: 1048.576},
			{Target: "hastord", Job: "randwrite-4k-qd32", IOPS: 30000, MBps: 122.88},
			{Target: "hastord-repl", Job: "randwrite-4k-qd32", IOPS: 21000, MBps: 86},
		},
		Resync: []resyncFigures{{Target: "hastord-repl", LinkMBps: 3000, LinkCPUPerMB: 700, DiskMBps: 1000, Bytes: 1 << 30, Seconds: 1}},
	}
	// 1 MiB: 600 + 700 × 1.048576 µs per I/O on 2 CPUs gives 1499 IOPS,
	// 0.75 of the plain 2000. The 4 KiB job has no machine CPU: no ceiling.
	want := "seqwrite-1m-qd32 0.50× (CPU ceiling 0.75×), randwrite-4k-qd32 0.70×"
	if got := replicationCost(rep, "hastord-repl"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := resyncLine(rep.Resync[0]); !strings.Contains(got, "link 3000 MB/s (TCP over both veth paths, 700 µs of machine CPU per MB)") ||
		!strings.Contains(got, "= 1.07×") {
		t.Errorf("resync line %q", got)
	}
}
