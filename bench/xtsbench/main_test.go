package main

import (
	"strings"
	"testing"
)

func TestParseOpenSSL(t *testing.T) {
	out := `version: 3.0.19
built on: Tue Jan 27 2026
options: bn(64,64)
CPUINFO: OPENSSL_ia32cap=0xfffa3203078bffff:0x405fc6f1bf07ab
The 'numbers' are in 1000s of bytes per second processed.
type           4096 bytes
AES-256-XTS    7369969.66k
`
	got, err := parseOpenSSL(strings.NewReader(out), "AES-256-XTS")
	if err != nil {
		t.Fatal(err)
	}
	if want := 7369.96966; got < want-1e-6 || got > want+1e-6 {
		t.Errorf("parseOpenSSL = %v MB/s, want %v", got, want)
	}
	if _, err := parseOpenSSL(strings.NewReader(out), "AES-128-XTS"); err == nil {
		t.Error("parseOpenSSL found a line for the wrong cipher")
	}
}
