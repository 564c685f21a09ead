package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxKeyFile bounds a key file, as cryptsetup's default --keyfile-size
// limit does.
const MaxKeyFile = 8 << 20

// ErrKeyFile: a key file that cannot serve as a passphrase.
var ErrKeyFile = errors.New("unusable key file")

// ReadPassphrase reads a key file's whole content from r as a passphrase,
// as cryptsetup --key-file does: a trailing newline is part of it. name is
// for error messages. The caller zeroes the result.
func ReadPassphrase(r io.Reader, name string) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(4096)
	if _, err := buf.ReadFrom(io.LimitReader(r, MaxKeyFile+1)); err != nil {
		clear(buf.Bytes())
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	p := buf.Bytes()
	switch {
	case len(p) > MaxKeyFile:
		clear(p)
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrKeyFile, name, MaxKeyFile)
	case len(p) == 0:
		return nil, fmt.Errorf("%w: %s is empty", ErrKeyFile, name)
	}
	return p, nil
}

// ReadKeyFile reads the passphrase held in the key file at path.
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	return ReadPassphrase(f, path)
}
