package config

import (
	"errors"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want ByteSize
		err  string // part of the error; "" = valid
	}{
		{"0", 0, ""},
		{"1073741824", GiB, ""},
		{"512B", 512, ""},
		{"4KiB", 4096, ""},
		{"512MiB", 512 * MiB, ""},
		{"1GiB", GiB, ""},
		{"1 GiB", GiB, ""},
		{" 2gib ", 2 * GiB, ""},
		{"3TiB", 3 * TiB, ""},
		{"1PiB", PiB, ""},
		{"8191PiB", 8191 * PiB, ""},
		{"9223372036854775807", 1<<63 - 1, ""},
		{"9223372036854775808", 0, "too large"},
		{"8192PiB", 0, "too large"},
		{"1G", 0, `ambiguous unit "G" in "1G": write "1GiB"`},
		{"1GB", 0, `write "1GiB"`},
		{"10k", 0, `write "10KiB"`},
		{"10KB", 0, `write "10KiB"`},
		{"5M", 0, `write "5MiB"`},
		{"2T", 0, `write "2TiB"`},
		{"1P", 0, `write "1PiB"`},
		{"1.5GiB", 0, "whole number"},
		{"-1", 0, "negative"},
		{"-1GiB", 0, "negative"},
		{"", 0, "want a size"},
		{"GiB", 0, "want a size"},
		{"1XiB", 0, `unknown unit "XiB"`},
		{"1 G iB", 0, "unknown unit"},
		{"0x10", 0, "unknown unit"},
		{"1_000", 0, "unknown unit"},
	}
	for _, tc := range cases {
		got, err := ParseByteSize(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseByteSize(%q) error = %v; want one containing %q matching ErrInvalid", tc.in, err, tc.err)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	for _, tc := range []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"}, {1, "1B"}, {1000, "1000B"}, {1024, "1KiB"}, {1536 * MiB, "1536MiB"},
		{GiB, "1GiB"}, {1<<63 - 1, "9223372036854775807B"}, {3 * PiB, "3PiB"}, {4 * 1024 * PiB, "4096PiB"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
		back, err := ParseByteSize(tc.in.String())
		if err != nil || back != tc.in {
			t.Errorf("round trip of %d via %q = %d, %v", int64(tc.in), tc.in.String(), back, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"0", 0, ""},
		{"000", 0, ""},
		{"0s", 0, ""},
		{"30s", 30 * time.Second, ""},
		{"2m", 2 * time.Minute, ""},
		{"1m30s", 90 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"1h", time.Hour, ""},
		{" 5s ", 5 * time.Second, ""},
		{"30", 0, `no unit; write e.g. "30s"`},
		{"-5s", 0, "negative"},
		{"", 0, "want a duration"},
		{"soon", 0, "want a duration"},
		{"5 s", 0, "want a duration"},
		{"1d", 0, "want a duration"},
	}
	for _, tc := range cases {
		got, err := ParseDuration(tc.in)
		if tc.err == "" {
			if err != nil || got.Std() != tc.want {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDuration(%q) error = %v; want one containing %q", tc.in, err, tc.err)
		}
	}
	if s := Duration(90 * time.Second).String(); s != "1m30s" {
		t.Errorf("String() = %q", s)
	}
}

func TestLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "WARN": slog.LevelWarn, "Error": slog.LevelError,
	} {
		got, err := ParseLogLevel(in)
		if err != nil || got.Level() != want {
			t.Errorf("ParseLogLevel(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "warning", "info+1", "trace"} {
		if _, err := ParseLogLevel(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseLogLevel(%q) error = %v", in, err)
		}
	}
	var _ slog.Leveler = LogLevel(0)
	if s := LogLevel(slog.LevelWarn).String(); s != "warn" {
		t.Errorf("String() = %q", s)
	}
}

// The types work as command-line flags via encoding.TextUnmarshaler.
func TestUnitsAsFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var size ByteSize
	var d Duration
	fs.TextVar(&size, "size", ByteSize(0), "")
	fs.TextVar(&d, "d", Duration(0), "")
	if err := fs.Parse([]string{"-size", "2GiB", "-d", "1m"}); err != nil {
		t.Fatal(err)
	}
	if size != 2*GiB || d.Std() != time.Minute {
		t.Errorf("size %v, d %v", size, d)
	}
}
