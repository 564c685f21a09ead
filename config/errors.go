package config

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid matches every error that reports invalid configuration:
// a *ValidationError and the errors of ParseByteSize, ParseDuration,
// ParseLogLevel and ValidateISCSIName.
var ErrInvalid = errors.New("invalid configuration")

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Field is the YAML key path of the offending value, such as
	// "targets[0].luns[1].block_size". It is empty for a problem with the
	// file as a whole, such as a YAML syntax error.
	Field string
	// Message says what is wrong and, where it helps, what would be right.
	Message string
	// Line is the 1-based line of the value in the file. It is 0 when
	// unknown. For a missing key it is the line of the enclosing mapping.
	Line int
}

// String formats p as "line 14: targets[0].luns[1].block_size: must be 512
// or 4096, got 1000". It leaves out the parts that are unknown.
func (p Problem) String() string { return p.format("") }

func (p Problem) format(file string) string {
	var b strings.Builder
	switch {
	case file != "" && p.Line > 0:
		b.WriteString(file + ":" + strconv.Itoa(p.Line) + ": ")
	case file != "":
		b.WriteString(file + ": ")
	case p.Line > 0:
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a configuration file.
// Problems are ordered by line, and those without a line come first.
type ValidationError struct {
	// File is the path given to Load. It is empty for Parse.
	File     string
	Problems []Problem
}

// Error lists the problems one per line. Each line reads
// "file:line: field: message", and file and line are left out when unknown.
// With more than one problem, a count comes first, on a line of its own.
func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].format(e.File)
	}
	var b strings.Builder
	b.WriteString(ErrInvalid.Error())
	if len(e.Problems) > 1 {
		b.WriteString(" (" + strconv.Itoa(len(e.Problems)) + " problems):")
	}
	for _, p := range e.Problems {
		b.WriteString("\n")
		b.WriteString(p.format(e.File))
	}
	return b.String()
}

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }
