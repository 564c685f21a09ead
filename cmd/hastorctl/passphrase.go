package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"hastor/crypt"
)

func newStdio() stdio {
	s := stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		s.term = func(prompt string) ([]byte, error) { return readNoEcho(fd, prompt) }
	}
	return s
}

// maxTyped bounds a passphrase typed at the terminal.
const maxTyped = 4096

// readNoEcho turns the terminal's echo off, then prints prompt on standard
// error and reads one line. Echo goes off before the prompt appears, so
// nothing typed after the prompt is ever shown (golang.org/x/term's
// ReadPassword prints the prompt first).
func readNoEcho(fd int, prompt string) ([]byte, error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ISIG
	t.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(os.Stderr, prompt)
	defer fmt.Fprintln(os.Stderr)
	line := make([]byte, 0, maxTyped) // never reallocated: no stray copies
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			clear(line)
			return nil, err
		case n == 0 || b[0] == '\n':
			return line, nil
		case len(line) >= maxTyped:
			clear(line)
			return nil, fmt.Errorf("passphrase longer than %d bytes: use --key-file", maxTyped)
		}
		line = append(line, b[0])
	}
}

// passphrase returns a passphrase: the whole content of keyFile ("-" for
// standard input) when it is set, else one typed at the terminal (twice
// when confirm is set). The caller zeroes the result.
func passphrase(st stdio, keyFile, prompt string, confirm bool) ([]byte, error) {
	if keyFile != "" {
		return readKeyFile(st, keyFile)
	}
	if st.term == nil {
		return nil, errors.New("standard input is not a terminal, so the passphrase cannot be asked for: give --key-file FILE (or --key-file - to read it from standard input)")
	}
	p, err := st.term(prompt + ": ")
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if confirm {
		again, err := st.term("Verify " + prompt + ": ")
		if err != nil {
			clear(p)
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		same := bytes.Equal(p, again)
		clear(again)
		if !same {
			clear(p)
			return nil, errors.New("passphrases do not match")
		}
	}
	return p, nil
}

func readKeyFile(st stdio, path string) ([]byte, error) {
	if path == "-" {
		return crypt.ReadPassphrase(st.in, "(standard input)")
	}
	return crypt.ReadKeyFile(path)
}
