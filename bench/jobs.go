package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes. Its flag form accepts a plain byte count or a
// number with a binary suffix: "4GiB", "256MiB", "64k" (k, M, G, T and their
// KiB/MiB/GiB/TiB spellings are all powers of 1024).
type ByteSize int64

// errBadSize reports a size that does not parse.
var errBadSize = errors.New("bad size")

// String formats s with the largest binary unit that divides it.
func (s ByteSize) String() string {
	units := []struct {
		name string
		mult ByteSize
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if s >= u.mult && s%u.mult == 0 {
			return fmt.Sprintf("%d %s", s/u.mult, u.name)
		}
	}
	return fmt.Sprintf("%d B", int64(s))
}

// Set parses a size for the flag package.
func (s *ByteSize) Set(v string) error {
	n, err := parseByteSize(v)
	if err != nil {
		return err
	}
	*s = n
	return nil
}

func parseByteSize(v string) (ByteSize, error) {
	t := strings.TrimSpace(v)
	mult := ByteSize(1)
	lower := strings.ToLower(t)
	for _, u := range []struct {
		suffixes []string
		mult     ByteSize
	}{
		{[]string{"tib", "tb", "t"}, 1 << 40},
		{[]string{"gib", "gb", "g"}, 1 << 30},
		{[]string{"mib", "mb", "m"}, 1 << 20},
		{[]string{"kib", "kb", "k"}, 1 << 10},
		{[]string{"b"}, 1},
	} {
		found := false
		for _, suf := range u.suffixes {
			if strings.HasSuffix(lower, suf) {
				t = strings.TrimSpace(t[:len(t)-len(suf)])
				mult = u.mult
				found = true
				break
			}
		}
		if found {
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: %q", errBadSize, v)
	}
	if n > (1<<62)/int64(mult) {
		return 0, fmt.Errorf("%w: %q is too large", errBadSize, v)
	}
	return ByteSize(n) * mult, nil
}

// Job is one fio workload. Its Name is what -jobs selects.
type Job struct {
	Name    string
	RW      string // fio's rw=: randread, randwrite, read, write
	BS      ByteSize
	IODepth int
}

// IsWrite reports whether the job writes.
func (j Job) IsWrite() bool { return j.RW == "randwrite" || j.RW == "write" }

// IsRandom reports whether the job's offsets are random.
func (j Job) IsRandom() bool { return strings.HasPrefix(j.RW, "rand") }

// allJobs lists every job in the order the harness runs and reports them.
func allJobs() []Job {
	var jobs []Job
	for _, base := range []struct {
		rw, name string
		bs       ByteSize
	}{
		{"randread", "randread-4k", 4 << 10},
		{"randwrite", "randwrite-4k", 4 << 10},
		{"read", "seqread-1m", 1 << 20},
		{"write", "seqwrite-1m", 1 << 20},
	} {
		for _, qd := range []int{1, 32} {
			jobs = append(jobs, Job{
				Name:    fmt.Sprintf("%s-qd%d", base.name, qd),
				RW:      base.rw,
				BS:      base.bs,
				IODepth: qd,
			})
		}
	}
	return jobs
}

// errUnknownName reports a -jobs or -targets entry that names nothing.
var errUnknownName = errors.New("unknown name")

// selectJobs returns the jobs named by a comma-separated list, in allJobs
// order. An entry selects every job whose name has it as a prefix or equals
// it ("randread" selects both queue depths; "all" or "" selects everything).
func selectJobs(list string) ([]Job, error) {
	all := allJobs()
	list = strings.TrimSpace(list)
	if list == "" || list == "all" {
		return all, nil
	}
	want := map[string]bool{}
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		matched := false
		for _, j := range all {
			if j.Name == e || strings.HasPrefix(j.Name, e) {
				want[j.Name] = true
				matched = true
			}
		}
		if !matched {
			return nil, fmt.Errorf("%w: job %q (have %s)", errUnknownName, e, jobNames(all))
		}
	}
	var out []Job
	for _, j := range all {
		if want[j.Name] {
			out = append(out, j)
		}
	}
	return out, nil
}

func jobNames(jobs []Job) string {
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.Name
	}
	return strings.Join(names, ",")
}
