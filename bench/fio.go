package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors of fio runs.
var (
	// errFioCapped: fio said it capped the queue depth at 1, so the
	// libiscsi engine still has FIO_SYNCIO and iodepth 32 would be a lie.
	errFioCapped = errors.New("fio capped the queue depth at 1 (libiscsi engine still FIO_SYNCIO; rebuild with bench/build-fio.sh)")
	// errFioOutput: fio's JSON is missing or does not hold one job.
	errFioOutput = errors.New("bad fio output")
	// errFioJob: fio ran but reported an error for the job.
	errFioJob = errors.New("fio job failed")
)

// cappedMessage is what fio prints when an engine flagged FIO_SYNCIO is run
// with iodepth > 1.
const cappedMessage = "queue depth will be capped at 1"

// fioOutput is the part of fio's --output-format=json that the harness reads.
type fioOutput struct {
	Version string   `json:"fio version"`
	Jobs    []fioJob `json:"jobs"`
}

type fioJob struct {
	Name       string  `json:"jobname"`
	Error      int     `json:"error"`
	Read       fioDir  `json:"read"`
	Write      fioDir  `json:"write"`
	JobRuntime int64   `json:"job_runtime"` // ms
	UsrCPU     float64 `json:"usr_cpu"`     // percent of JobRuntime
	SysCPU     float64 `json:"sys_cpu"`     // percent of JobRuntime
}

type fioDir struct {
	IOBytes  int64   `json:"io_bytes"`
	BWBytes  float64 `json:"bw_bytes"` // bytes per second
	IOPS     float64 `json:"iops"`
	Runtime  int64   `json:"runtime"` // ms
	TotalIOs int64   `json:"total_ios"`
	LatNS    struct {
		Mean float64 `json:"mean"`
	} `json:"lat_ns"`
}

// fioStats is what one measured fio run yields.
type fioStats struct {
	IOPS      float64       // reads + writes per second
	BytesPerS float64       // bytes per second
	LatMean   time.Duration // mean completion latency (submission to completion)
	IOs       int64         // I/Os completed in the measured window
	Runtime   time.Duration // fio's measured window
	CPU       time.Duration // fio's own CPU time (user + system) in the window
}

// parseFio reads fio's JSON output. fio may print notes before the JSON when
// writing to stdout, so anything before the first '{' is skipped.
func parseFio(data []byte) (fioStats, error) {
	i := bytes.IndexByte(data, '{')
	if i < 0 {
		return fioStats{}, fmt.Errorf("%w: no JSON object", errFioOutput)
	}
	var out fioOutput
	if err := json.Unmarshal(data[i:], &out); err != nil {
		return fioStats{}, fmt.Errorf("%w: %w", errFioOutput, err)
	}
	if len(out.Jobs) != 1 {
		return fioStats{}, fmt.Errorf("%w: %d jobs, want 1", errFioOutput, len(out.Jobs))
	}
	j := out.Jobs[0]
	if j.Error != 0 {
		return fioStats{}, fmt.Errorf("%w: job %q: error %d", errFioJob, j.Name, j.Error)
	}
	ios := j.Read.TotalIOs + j.Write.TotalIOs
	if ios == 0 {
		return fioStats{}, fmt.Errorf("%w: job %q completed no I/O", errFioJob, j.Name)
	}
	st := fioStats{
		IOPS:      j.Read.IOPS + j.Write.IOPS,
		BytesPerS: j.Read.BWBytes + j.Write.BWBytes,
		IOs:       ios,
		Runtime:   time.Duration(j.JobRuntime) * time.Millisecond,
	}
	// Mean latency over both directions, weighted by their I/O counts.
	st.LatMean = time.Duration((j.Read.LatNS.Mean*float64(j.Read.TotalIOs) +
		j.Write.LatNS.Mean*float64(j.Write.TotalIOs)) / float64(ios))
	st.CPU = time.Duration((j.UsrCPU + j.SysCPU) / 100 * float64(st.Runtime))
	return st, nil
}

// fioRun describes one fio invocation.
type fioRun struct {
	Bin     string
	Job     Job
	Runtime time.Duration
	// Engine holds the engine-specific arguments: ioengine, filename and,
	// for the raw file, direct and size.
	Engine []string
	// JSONPath receives fio's JSON output; empty discards it (ramp runs).
	JSONPath string
}

// args returns fio's command-line arguments.
func (r fioRun) args() []string {
	secs := int64((r.Runtime + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	a := []string{
		"--name=" + r.Job.Name,
		"--rw=" + r.Job.RW,
		"--bs=" + strconv.FormatInt(int64(r.Job.BS), 10),
		"--iodepth=" + strconv.Itoa(r.Job.IODepth),
		"--numjobs=1",
		"--time_based",
		"--runtime=" + strconv.FormatInt(secs, 10) + "s",
	}
	if r.Job.IsRandom() {
		a = append(a, "--norandommap", "--randrepeat=0")
	}
	a = append(a, r.Engine...)
	if r.JSONPath != "" {
		a = append(a, "--output-format=json", "--output="+r.JSONPath)
	} else {
		a = append(a, "--output-format=terse")
	}
	return a
}

// run runs fio to completion. fio gets SIGINT when ctx ends (it then stops
// its jobs and exits), SIGKILL if it is still running 5 s later.
func (r fioRun) run(ctx context.Context) (fioStats, error) {
	cmd := exec.CommandContext(ctx, r.Bin, r.args()...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, interruptSignal) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if strings.Contains(out.String(), cappedMessage) {
		return fioStats{}, errFioCapped
	}
	if err != nil {
		if ctx.Err() != nil {
			return fioStats{}, fmt.Errorf("fio %s: %w", r.Job.Name, ctx.Err())
		}
		return fioStats{}, fmt.Errorf("%w: fio %s: %w: %s", errFioJob, r.Job.Name, err, tail(out.String(), 800))
	}
	if r.JSONPath == "" {
		return fioStats{}, nil
	}
	data, err := os.ReadFile(r.JSONPath)
	if err != nil {
		return fioStats{}, fmt.Errorf("%w: %w", errFioOutput, err)
	}
	st, err := parseFio(data)
	if err != nil {
		return fioStats{}, fmt.Errorf("fio %s: %w (output: %s)", r.Job.Name, err, tail(out.String(), 400))
	}
	return st, nil
}

// iscsiFilename returns the libiscsi URL of a LUN as a fio filename. fio
// splits filenames at ':', so every ':' of the URL is escaped as "\:".
func iscsiFilename(portal, iqn string, lun int) string {
	url := fmt.Sprintf("iscsi://%s/%s/%d", portal, iqn, lun)
	return strings.ReplaceAll(url, ":", `\:`)
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
