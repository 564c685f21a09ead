package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Defaults. The LUN is 4 GiB: big enough that random I/O is spread over far
// more blocks than any cache below the page cache holds, small enough to
// fill in a few seconds and to stay in the page cache of this 24 GiB machine
// for the buffered targets, as it would on a real server. The runtime is
// 15 s per job after a 3 s ramp: 8 jobs × 6 targets then take about 15
// minutes on 2 cores, and 15 s averages out most scheduling noise from other
// work on the machine.
const (
	defaultSize    = 4 << 30
	defaultRuntime = 15 * time.Second
	defaultRamp    = 3 * time.Second
	quickSize      = 256 << 20
	quickRuntime   = 3 * time.Second
	quickRamp      = 1 * time.Second
)

// errUsage reports bad flags.
var errUsage = errors.New("usage")

// config is the harness's settings, fixed after flag parsing.
type config struct {
	targets    string
	jobs       string
	size       ByteSize
	runtime    time.Duration
	ramp       time.Duration
	dir        string // backing file directory
	results    string // results directory
	out        string // extra copy of the Markdown report
	fioBin     string
	gotgtBin   string
	hastordBin string
	keep       bool
	command    string // the command line, for the report
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-tcp-sink" {
		// The far end of the replication target's link measurement,
		// started by the harness inside a network namespace.
		if err := tcpSink(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bench -tcp-sink:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rep, err := run(ctx, cfg, log)
	if rep != nil {
		renderMarkdown(os.Stdout, rep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if ctx.Err() != nil {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{size: defaultSize}
	quick := fs.Bool("quick", false, "smoke run: 3 s per job, 1 s ramp, 256 MiB LUN (explicit -runtime, -ramp, -size win)")
	fs.StringVar(&cfg.targets, "targets", "all", "comma-separated targets: raw,hastord,hastord-crypt,hastord-repl,hastord-repl-ram,tgt-direct,tgt-buffered,istgt,gotgt")
	fs.StringVar(&cfg.jobs, "jobs", "all", "comma-separated jobs or name prefixes, e.g. randread or seqwrite-1m-qd32; "+jobNames(allJobs()))
	fs.Var(&cfg.size, "size", "LUN size = backing file size, a multiple of 1 MiB (e.g. 4GiB, 512MiB)")
	fs.DurationVar(&cfg.runtime, "runtime", defaultRuntime, "measured time per job")
	fs.DurationVar(&cfg.ramp, "ramp", defaultRamp, "warm-up time per job (a separate fio run before the measured one; 0 = none)")
	fs.StringVar(&cfg.dir, "dir", "", "directory for the backing file, on a real disk (default $HASTOR_CACHE/bench, HASTOR_CACHE defaulting to ~/.cache/hastor)")
	fs.StringVar(&cfg.results, "results", "", "results directory (default $HASTOR_CACHE/bench/results/<time>)")
	fs.StringVar(&cfg.out, "out", "", "also write the Markdown report to this file")
	fs.StringVar(&cfg.fioBin, "fio", "", "fio with the libiscsi engine (default: built by bench/build-fio.sh)")
	fs.StringVar(&cfg.gotgtBin, "gotgt", "", "gotgt binary (default: built from the module proxy into the cache)")
	fs.StringVar(&cfg.hastordBin, "hastord", "", "hastord binary (default: go build ./cmd/hastord)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the backing file after the run")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["size"] {
			cfg.size = quickSize
		}
		if !set["runtime"] {
			cfg.runtime = quickRuntime
		}
		if !set["ramp"] {
			cfg.ramp = quickRamp
		}
	}
	var problems []string
	if cfg.size%(1<<20) != 0 || cfg.size < 16<<20 {
		problems = append(problems, fmt.Sprintf("-size %v: must be a multiple of 1 MiB and at least 16 MiB (istgt sizes LUNs in MiB)", cfg.size))
	}
	if cfg.runtime < time.Second || cfg.runtime%time.Second != 0 {
		problems = append(problems, fmt.Sprintf("-runtime %v: must be whole seconds, at least 1s", cfg.runtime))
	}
	if cfg.ramp < 0 || cfg.ramp%time.Second != 0 {
		problems = append(problems, fmt.Sprintf("-ramp %v: must be whole seconds, 0 or more", cfg.ramp))
	}
	if _, err := selectJobs(cfg.jobs); err != nil {
		problems = append(problems, err.Error())
	}
	if _, err := selectTargets(cfg.targets); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return config{}, fmt.Errorf("%w: %s", errUsage, strings.Join(problems, "; "))
	}
	cfg.command = commandLine(args)
	return cfg, nil
}

// commandLine renders the invocation as a user would type it.
func commandLine(args []string) string {
	parts := []string{"go", "run", "./bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"\\$`*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// harness holds one run's state. It is used by one goroutine.
type harness struct {
	cfg        config
	log        *slog.Logger
	moduleRoot string
	cacheDir   string
	resultsDir string
	runDir     string
	backing    string
	fio        string
	depsTried  bool
	// resync collects the replicated targets' first full syncs.
	resync []resyncFigures
}

func (h *harness) logf(format string, args ...any) { h.log.Info(fmt.Sprintf(format, args...)) }

func (h *harness) logPath(name string) string {
	return filepath.Join(h.resultsDir, "logs", name+".log")
}

// needTools checks that Debian's tools are installed, running
// bench/install-deps.sh once per run if one is missing.
func (h *harness) needTools(ctx context.Context, names ...string) error {
	missing := func() []string {
		var m []string
		for _, n := range names {
			if _, err := lookTool(n); err != nil {
				m = append(m, n)
			}
		}
		return m
	}
	m := missing()
	if len(m) == 0 {
		return nil
	}
	if !h.depsTried {
		h.depsTried = true
		h.logf("missing %s: running bench/install-deps.sh", strings.Join(m, ", "))
		if _, err := runTool(ctx, nil, h.moduleRoot, filepath.Join(h.moduleRoot, "bench", "install-deps.sh")); err != nil {
			return fmt.Errorf("%w: install-deps.sh: %w", errSkip, err)
		}
		m = missing()
	}
	if len(m) > 0 {
		return fmt.Errorf("%w: not installed: %s", errSkip, strings.Join(m, ", "))
	}
	return nil
}

// ensureFio returns the fio to use, building it if needed.
func (h *harness) ensureFio(ctx context.Context) (string, error) {
	if h.cfg.fioBin != "" {
		return h.cfg.fioBin, nil
	}
	script := filepath.Join(h.moduleRoot, "bench", "build-fio.sh")
	h.logf("ensuring fio with libiscsi (%s)", script)
	out, err := runTool(ctx, []string{"HASTOR_CACHE=" + h.cacheDir}, h.moduleRoot, script)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	bin := strings.TrimSpace(lines[len(lines)-1])
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("build-fio.sh printed %q: %w", bin, err)
	}
	return bin, nil
}

// findModuleRoot walks up from the working directory to the go.mod of
// module hastor.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(data)), "module hastor") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the hastor module (no go.mod with module hastor above the working directory)")
		}
		dir = parent
	}
}

func cacheDir() (string, error) {
	if d := os.Getenv("HASTOR_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	return filepath.Join(home, ".cache", "hastor"), nil
}

// run does one benchmark run and returns its report. The report is non-nil
// once the run got as far as measuring, even if err is not nil.
func run(ctx context.Context, cfg config, log *slog.Logger) (*report, error) {
	jobs, err := selectJobs(cfg.jobs)
	if err != nil {
		return nil, err
	}
	targets, err := selectTargets(cfg.targets)
	if err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, log: log}
	if h.moduleRoot, err = findModuleRoot(); err != nil {
		return nil, err
	}
	if h.cacheDir, err = cacheDir(); err != nil {
		return nil, err
	}
	started := time.Now()
	h.resultsDir = cfg.results
	if h.resultsDir == "" {
		h.resultsDir = filepath.Join(h.cacheDir, "bench", "results", started.Format("20060102-150405"))
	}
	h.runDir = filepath.Join(h.resultsDir, "run")
	for _, d := range []string{"raw", "logs", "run"} {
		if err := os.MkdirAll(filepath.Join(h.resultsDir, d), 0o755); err != nil {
			return nil, err
		}
	}
	dir := cfg.dir
	if dir == "" {
		dir = filepath.Join(h.cacheDir, "bench")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h.backing = filepath.Join(dir, fmt.Sprintf("backing-%d.img", os.Getpid()))

	rep := newReport(cfg, started, jobs, dir)
	if h.fio, err = h.ensureFio(ctx); err != nil {
		return nil, fmt.Errorf("fio: %w", err)
	}
	rep.FioVersion = fioVersion(ctx, h.fio)

	var ready []target
	for _, t := range targets {
		ti := targetInfo{Name: t.Name(), Describe: t.Describe()}
		if err := t.Prepare(ctx, h); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, errSkip) {
				ti.Skipped = err.Error()
				h.log.Warn("target skipped", "target", t.Name(), "why", err)
			} else {
				ti.Err = err.Error()
				h.log.Error("target failed to prepare", "target", t.Name(), "err", err)
			}
		} else {
			ready = append(ready, t)
		}
		rep.Targets = append(rep.Targets, ti)
	}

	h.logf("filling %v backing file %s", cfg.size, h.backing)
	if err := createBacking(h.backing, cfg.size); err != nil {
		return nil, err
	}
	if !cfg.keep {
		defer os.Remove(h.backing)
	}

	var errs []error
	for _, t := range ready {
		if err := h.measureTarget(ctx, t, jobs, rep); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Name(), err))
			rep.setTargetErr(t.Name(), err)
			h.log.Error("target failed", "target", t.Name(), "err", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	rep.Finished = time.Now()
	if err := h.writeReport(rep); err != nil {
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return rep, errors.Join(errs...)
}

// measureTarget starts t, runs every job against it and stops it.
func (h *harness) measureTarget(ctx context.Context, t target, jobs []Job, rep *report) (err error) {
	d, err := warmCache(h.backing)
	if err != nil {
		return err
	}
	h.logf("read the backing file into the page cache in %v; starting %s", d.Round(time.Millisecond), t.Name())
	inst, err := t.Start(ctx, h)
	if err != nil {
		return err
	}
	defer func() {
		h.logf("stopping %s", t.Name())
		inst.shutdown()
		if serr := syncFile(h.backing); serr != nil && err == nil {
			err = serr
		}
	}()
	rawDir := filepath.Join(h.resultsDir, "raw", t.Name())
	if err := os.MkdirAll(rawDir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, j := range jobs {
		res, err := h.measureJob(ctx, inst, j, filepath.Join(rawDir, j.Name+".json"))
		res.Target = t.Name()
		res.Job = j.Name
		if err != nil {
			res.Err = err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", j.Name, err))
			h.log.Error("job failed", "target", t.Name(), "job", j.Name, "err", err)
		} else {
			h.log.Info("job done", "target", t.Name(), "job", j.Name,
				"iops", int64(res.IOPS), "MB/s", int64(res.MBps), "target_cpu_us_per_io", fmtFloat(res.TargetCPUPerIO, 1))
		}
		rep.Results = append(rep.Results, res)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if inst.proc != nil {
			if aerr := inst.proc.alive(); aerr != nil {
				return errors.Join(append(errs, aerr)...)
			}
		}
	}
	return errors.Join(errs...)
}

// measureJob runs the ramp and the measured fio run of one job, sampling the
// target's CPU time around the measured run only.
func (h *harness) measureJob(ctx context.Context, inst *instance, j Job, jsonPath string) (result, error) {
	res := result{TargetCPUPerIO: -1}
	if h.cfg.ramp > 0 {
		ramp := fioRun{Bin: h.fio, Job: j, Runtime: h.cfg.ramp, Engine: inst.engine}
		if _, err := ramp.run(ctx); err != nil {
			return res, fmt.Errorf("ramp: %w", err)
		}
	}
	cpu0, err := sampleCPU(inst)
	if err != nil {
		return res, err
	}
	start := time.Now()
	st, err := fioRun{Bin: h.fio, Job: j, Runtime: h.cfg.runtime, Engine: inst.engine, JSONPath: jsonPath}.run(ctx)
	if err != nil {
		return res, err
	}
	wall := time.Since(start)
	cpu1, err := sampleCPU(inst)
	if err != nil {
		return res, err
	}
	res.IOPS = st.IOPS
	res.MBps = st.BytesPerS / 1e6
	res.LatUS = float64(st.LatMean) / float64(time.Microsecond)
	res.IOs = st.IOs
	perIO := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(st.IOs) }
	res.FioCPUPerIO = perIO(st.CPU)
	if inst.proc != nil {
		res.TargetCPU = cpu1.target - cpu0.target
		res.TargetCPUPerIO = perIO(res.TargetCPU)
	}
	if inst.peer != nil {
		res.PeerCPUPerIO = perIO(cpu1.peer - cpu0.peer)
	}
	res.MachineCPUPerIO = perIO(cpu1.machine - cpu0.machine)
	res.MachineBusy = float64(cpu1.machine-cpu0.machine) / float64(wall) / float64(cpu1.cpus)
	return res, nil
}

// cpuSample is the CPU time used so far by a target's processes and by the
// whole machine.
type cpuSample struct {
	target, peer, machine time.Duration
	cpus                  int
}

func sampleCPU(inst *instance) (cpuSample, error) {
	var s cpuSample
	var err error
	if inst.proc != nil {
		if s.target, err = inst.proc.cpuTime(); err != nil {
			return s, err
		}
	}
	if inst.peer != nil {
		if s.peer, err = inst.peer.cpuTime(); err != nil {
			return s, err
		}
	}
	s.machine, s.cpus, err = machineCPU()
	return s, err
}

func fioVersion(ctx context.Context, bin string) string {
	out, err := runTool(ctx, nil, "", bin, "--version")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(out)
}

// writeReport writes results.json and results.md (and -out).
func (h *harness) writeReport(rep *report) error {
	rep.Resync = h.resync
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.resultsDir, "results.json"), data, 0o644); err != nil {
		return err
	}
	var b strings.Builder
	renderMarkdown(&b, rep)
	if err := os.WriteFile(filepath.Join(h.resultsDir, "results.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	if h.cfg.out != "" {
		if err := os.WriteFile(h.cfg.out, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	h.logf("results in %s", h.resultsDir)
	return nil
}
