package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// errValue is wrapped by the errors from ParseByteSize, ParseDuration and
// ParseLogLevel. Callers test for it with errors.Is(err, ErrInvalid).
var errValue = fmt.Errorf("%w value", ErrInvalid)

// ByteSize is a size in bytes.
//
// In the file it is either a plain integer count of bytes (1073741824) or an
// integer followed by a binary unit: B, KiB, MiB, GiB, TiB or PiB (1GiB = 2^30
// bytes). A space may sit between the number and the unit, and the unit's case
// does not matter. The units K, M, G, T, P, KB, MB, GB, TB and PB are rejected
// because they are ambiguous: storage vendors use them for powers of ten, while
// operating systems often use them for powers of two. Fractions (1.5GiB) and
// negative sizes are rejected.
type ByteSize int64

// Binary size units.
const (
	KiB ByteSize = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
	PiB
)

var byteUnits = []struct {
	name string
	size ByteSize
}{
	{"PiB", PiB}, {"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"B", 1},
}

// ParseByteSize parses a size such as "1GiB", "512 MiB" or "1073741824".
// It reports a negative, fractional or ambiguous ("1G") size as an error that
// matches ErrInvalid.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("%w: size must not be negative, got %q", errValue, s)
		}
		return 0, fmt.Errorf("%w: want a size such as 1073741824, 512MiB or 1GiB, got %q", errValue, s)
	}
	unit := strings.TrimSpace(t[i:])
	if strings.HasPrefix(unit, ".") || strings.HasPrefix(unit, ",") {
		return 0, fmt.Errorf("%w: size must be a whole number, got %q; use a smaller unit (1536MiB, not 1.5GiB)", errValue, s)
	}
	mult := ByteSize(0)
	for _, u := range byteUnits {
		if strings.EqualFold(unit, u.name) {
			mult = u.size
			break
		}
	}
	if unit == "" {
		mult = 1
	}
	if mult == 0 {
		switch strings.ToUpper(unit) {
		case "K", "KB", "M", "MB", "G", "GB", "T", "TB", "P", "PB":
			bin := strings.ToUpper(unit[:1]) + "iB"
			return 0, fmt.Errorf("%w: ambiguous unit %q in %q: write %q (binary, 1%s = %d bytes) or the exact number of bytes",
				errValue, unit, s, t[:i]+bin, bin, binUnit(bin))
		}
		return 0, fmt.Errorf("%w: unknown unit %q in %q; use B, KiB, MiB, GiB, TiB or PiB", errValue, unit, s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("%w: size %q is too large", errValue, s)
	}
	return ByteSize(n) * mult, nil
}

func binUnit(name string) ByteSize {
	for _, u := range byteUnits {
		if u.name == name {
			return u.size
		}
	}
	return 1
}

// String formats b with the largest binary unit that divides it exactly,
// for example "1GiB", "1536MiB" or "1000B". ParseByteSize accepts the result.
func (b ByteSize) String() string {
	if b != 0 {
		for _, u := range byteUnits {
			if b%u.size == 0 {
				return strconv.FormatInt(int64(b/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseByteSize,
// so a ByteSize works with flag.TextVar.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, b.UnmarshalText)
}

// Duration is a time span written like "30s", "2m", "1m30s" or "500ms"
// (the syntax of time.ParseDuration). A plain number is accepted only for 0,
// because "30" could mean seconds or milliseconds. Negative durations are
// rejected.
type Duration time.Duration

// ParseDuration parses a duration such as "30s". A bare "0" is the zero
// duration. Errors match ErrInvalid.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t != "" && strings.Trim(t, "0123456789") == "" {
		if strings.Trim(t, "0") == "" {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: duration %q has no unit; write e.g. %q", errValue, s, t+"s")
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("%w: want a duration such as 30s, 1m30s or 500ms, got %q", errValue, s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%w: duration must not be negative, got %q", errValue, s)
	}
	return Duration(d), nil
}

// String formats d like time.Duration.String, for example "30s".
func (d Duration) String() string { return time.Duration(d).String() }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, d.UnmarshalText)
}

// LogLevel is the minimum level of the messages hastord logs: debug, info,
// warn or error (any case). Its value is a slog.Level, and it implements
// slog.Leveler, so it can go straight into slog.HandlerOptions.Level.
type LogLevel slog.Level

// ParseLogLevel parses "debug", "info", "warn" or "error" (any case).
func ParseLogLevel(s string) (LogLevel, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return LogLevel(slog.LevelDebug), nil
	case "info":
		return LogLevel(slog.LevelInfo), nil
	case "warn":
		return LogLevel(slog.LevelWarn), nil
	case "error":
		return LogLevel(slog.LevelError), nil
	}
	return 0, fmt.Errorf("%w: log level must be debug, info, warn or error, got %q", errValue, s)
}

// Level implements slog.Leveler.
func (l LogLevel) Level() slog.Level { return slog.Level(l) }

// String returns the level's name in lower case, for example "info".
func (l LogLevel) String() string { return strings.ToLower(slog.Level(l).String()) }

// MarshalText implements encoding.TextMarshaler.
func (l LogLevel) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseLogLevel.
func (l *LogLevel) UnmarshalText(text []byte) error {
	v, err := ParseLogLevel(string(text))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *LogLevel) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, l.UnmarshalText)
}

// unmarshalScalar decodes a scalar node with parse. It returns a
// *yaml.TypeError, which makes yaml.v3 go on decoding the other fields
// instead of stopping at this one. Parse reports these problems itself,
// with the field's path, when it walks the document.
func unmarshalScalar(n *yaml.Node, parse func([]byte) error) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a single value", n.Line)}}
	}
	if err := parse([]byte(n.Value)); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, problemText(err))}}
	}
	return nil
}

// problemText strips the sentinel prefix from an error of this package, so a
// Problem reads "size must not be negative" instead of "invalid configuration
// value: size must not be negative".
func problemText(err error) string {
	s := err.Error()
	if errors.Is(err, errValue) {
		s = strings.TrimPrefix(s, errValue.Error()+": ")
	}
	return s
}
