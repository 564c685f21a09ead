// Command xtsbench measures hastor/crypt/xts against golang.org/x/crypto/xts
// and `openssl speed` on this machine, single-threaded (per core), and prints
// a Markdown table of MB/s (decimal megabytes, 10^6 bytes per second).
//
//	go run ./bench/xtsbench [-seconds N] [-out file.md]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"hastor/crypt/xts"

	xxts "golang.org/x/crypto/xts"
)

// bufSize is the bytes processed per operation: one I/O buffer of sectors.
const bufSize = 64 << 10

type row struct {
	keyBits, sector int
	impl            string
	mbps            float64 // 0 when not measured
	note            string
}

func main() {
	testing.Init()
	seconds := flag.Int("seconds", 2, "measuring time per case, for both Go and openssl")
	out := flag.String("out", "", "also write the Markdown report to this file")
	flag.Parse()
	if *seconds < 1 {
		fmt.Fprintln(os.Stderr, "xtsbench: -seconds must be >= 1")
		os.Exit(2)
	}
	if err := flag.Set("test.benchtime", fmt.Sprintf("%ds", *seconds)); err != nil {
		fmt.Fprintln(os.Stderr, "xtsbench:", err)
		os.Exit(1)
	}
	report, err := run(*seconds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xtsbench:", err)
		os.Exit(1)
	}
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "xtsbench:", err)
			os.Exit(1)
		}
	}
}

func run(seconds int) (string, error) {
	var rows []row
	opensslPath, lookErr := exec.LookPath("openssl")
	for _, keyBits := range []int{128, 256} {
		key := make([]byte, keyBits/4)
		for i := range key {
			key[i] = byte(i*7 + 1)
		}
		for _, sector := range []int{512, 4096} {
			for _, name := range xts.Implementations() {
				c, err := xts.NewImpl(key, name)
				if err != nil {
					return "", err
				}
				fmt.Fprintf(os.Stderr, "aes%d/%d/%s ...\n", keyBits, sector, name)
				rows = append(rows, row{keyBits, sector, name, measureOurs(c, sector), ""})
			}
			ref, err := xxts.NewCipher(aes.NewCipher, key)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(os.Stderr, "aes%d/%d/x-crypto ...\n", keyBits, sector)
			rows = append(rows, row{keyBits, sector, "x-crypto", measureXCrypto(ref, sector), ""})
			r := row{keyBits: keyBits, sector: sector, impl: "openssl"}
			if lookErr != nil {
				r.note = "openssl not found in PATH"
			} else {
				fmt.Fprintf(os.Stderr, "aes%d/%d/openssl ...\n", keyBits, sector)
				r.mbps, err = measureOpenSSL(opensslPath, keyBits, sector, seconds)
				if err != nil {
					r.note = err.Error()
				}
			}
			rows = append(rows, r)
		}
	}
	return format(rows, seconds, opensslPath, lookErr), nil
}

func mbps(r testing.BenchmarkResult) float64 {
	if r.T <= 0 {
		return 0
	}
	return float64(r.Bytes) * float64(r.N) / r.T.Seconds() / 1e6
}

func measureOurs(c *xts.Cipher, sector int) float64 {
	buf := make([]byte, bufSize)
	return mbps(testing.Benchmark(func(b *testing.B) {
		b.SetBytes(bufSize)
		for b.Loop() {
			c.EncryptSectors(buf, sector, 1000)
		}
	}))
}

func measureXCrypto(c *xxts.Cipher, sector int) float64 {
	buf := make([]byte, bufSize)
	return mbps(testing.Benchmark(func(b *testing.B) {
		b.SetBytes(bufSize)
		for b.Loop() {
			for i, u := 0, uint64(1000); i < len(buf); i, u = i+sector, u+1 {
				c.Encrypt(buf[i:i+sector], buf[i:i+sector], u)
			}
		}
	}))
}

func opensslArgs(keyBits, sector, seconds int) []string {
	return []string{"speed", "-evp", fmt.Sprintf("aes-%d-xts", keyBits),
		"-bytes", strconv.Itoa(sector), "-seconds", strconv.Itoa(seconds)}
}

// measureOpenSSL runs `openssl speed` and parses its result line, e.g.
// "AES-256-XTS    7369969.66k": the figure is in 1000s of bytes per second.
func measureOpenSSL(path string, keyBits, sector, seconds int) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second+2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, opensslArgs(keyBits, sector, seconds)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("openssl speed failed: %w: %s", err, firstLine(stderr.String()))
	}
	return parseOpenSSL(&stdout, fmt.Sprintf("AES-%d-XTS", keyBits))
}

func parseOpenSSL(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !strings.EqualFold(f[0], name) {
			continue
		}
		v := f[len(f)-1]
		if !strings.HasSuffix(v, "k") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(v, "k"), 64)
		if err != nil {
			return 0, fmt.Errorf("parsing openssl output %q: %w", sc.Text(), err)
		}
		return kb * 1000 / 1e6, nil
	}
	return 0, errors.New("no result line in openssl output")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func format(rows []row, seconds int, opensslPath string, lookErr error) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## AES-XTS throughput, one goroutine / one process (per core)\n\n")
	fmt.Fprintf(&sb, "- CPU: %s (%d logical CPUs)\n", cpuModel(), runtime.NumCPU())
	fmt.Fprintf(&sb, "- Go: %s %s/%s; hastor/crypt/xts implementations here: %s\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, strings.Join(xts.Implementations(), ", "))
	fmt.Fprintf(&sb, "- Units: MB/s = 10^6 bytes/s of data encrypted. Go figures: testing.Benchmark, EncryptSectors over a %d KiB buffer of sectors (x-crypto: one Encrypt call per sector), benchtime %ds.\n", bufSize>>10, seconds)
	if lookErr != nil {
		fmt.Fprintf(&sb, "- openssl: not available (%v)\n", lookErr)
	} else {
		ver, _ := exec.Command(opensslPath, "version").Output()
		fmt.Fprintf(&sb, "- openssl: %s; figures from `openssl speed` (1000s of bytes/s, converted)\n", strings.TrimSpace(string(ver)))
	}
	fmt.Fprintf(&sb, "\n| key | sector | impl | MB/s | vs x-crypto | vs openssl |\n|---|---:|---|---:|---:|---:|\n")
	find := func(r row, impl string) float64 {
		for _, o := range rows {
			if o.keyBits == r.keyBits && o.sector == r.sector && o.impl == impl {
				return o.mbps
			}
		}
		return 0
	}
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	for _, r := range rows {
		val := fmt.Sprintf("%.0f", r.mbps)
		if r.note != "" {
			val = r.note
		}
		fmt.Fprintf(&sb, "| AES-%d | %d | %s | %s | %s | %s |\n", r.keyBits, r.sector, r.impl, val,
			ratio(r.mbps, find(r, "x-crypto")), ratio(r.mbps, find(r, "openssl")))
	}
	fmt.Fprintf(&sb, "\nCommands:\n\n```\ngo run ./bench/xtsbench -seconds %d\n", seconds)
	for _, k := range []int{128, 256} {
		for _, s := range []int{512, 4096} {
			fmt.Fprintf(&sb, "openssl %s\n", strings.Join(opensslArgs(k, s, seconds), " "))
		}
	}
	fmt.Fprintf(&sb, "```\n")
	return sb.String()
}
