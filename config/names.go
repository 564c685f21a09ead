package config

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxISCSINameLen is the longest iSCSI name in bytes (RFC 7143 §4.2.7.1).
const MaxISCSINameLen = 223

// ValidateISCSIName reports whether name is a valid iSCSI name in normalised
// form (RFC 7143 §4.2.7, RFC 3722). The three forms are:
//
//	iqn.YYYY-MM.reversed.domain[:anything]  e.g. iqn.2026-11.dev.hastor:quickstart
//	eui.<16 hex digits>                     e.g. eui.02004567a425678d
//	naa.<16 or 32 hex digits>               e.g. naa.52004567ba64678d
//
// The name must be lower case and at most 223 bytes long. Allowed characters
// are a-z, 0-9, '-', '.' and ':', plus non-ASCII letters and digits that
// are not upper case. The error matches ErrInvalid, and its text suits a
// Problem message.
func ValidateISCSIName(name string) error {
	if err := checkISCSIName(name); err != nil {
		return fmt.Errorf("%w: %s", errValue, err.Error())
	}
	return nil
}

type nameError string

func (e nameError) Error() string { return string(e) }

func nameErrorf(format string, args ...any) error { return nameError(fmt.Sprintf(format, args...)) }

func checkISCSIName(name string) error {
	if name == "" {
		return nameError("required")
	}
	if len(name) > MaxISCSINameLen {
		return nameErrorf("an iSCSI name is at most %d bytes (RFC 7143 §4.2.7.1), this one has %d", MaxISCSINameLen, len(name))
	}
	if !utf8.ValidString(name) {
		return nameError("not valid UTF-8")
	}
	if lower := strings.ToLower(name); lower != name {
		return nameErrorf("iSCSI names must be lower case (RFC 3722 normalisation): write %q", lower)
	}
	for _, r := range name {
		if r < utf8.RuneSelf {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == ':') {
				return nameErrorf("character %q is not allowed in an iSCSI name (use a-z, 0-9, '-', '.' and ':')", r)
			}
		} else if !(unicode.IsLetter(r) || unicode.IsDigit(r)) || unicode.IsUpper(r) {
			return nameErrorf("character %q is not allowed in an iSCSI name", r)
		}
	}
	switch {
	case strings.HasPrefix(name, "iqn."):
		return checkIQN(name)
	case strings.HasPrefix(name, "eui."):
		if !isHex(name[4:], 16) {
			return nameErrorf("an eui. name needs exactly 16 hex digits after \"eui.\", like eui.02004567a425678d, got %q", name)
		}
		return nil
	case strings.HasPrefix(name, "naa."):
		if !isHex(name[4:], 16) && !isHex(name[4:], 32) {
			return nameErrorf("a naa. name needs 16 or 32 hex digits after \"naa.\", like naa.52004567ba64678d, got %q", name)
		}
		return nil
	}
	return nameErrorf("an iSCSI name starts with iqn., eui. or naa. (e.g. iqn.2026-11.com.example:target1), got %q", name)
}

// checkIQN checks the iqn. form: "iqn." year "-" month "." naming authority,
// optionally followed by ":" and a string chosen by that authority
// (RFC 7143 §4.2.7.4).
func checkIQN(name string) error {
	const usage = "iqn.YYYY-MM.reversed.domain[:unique], like iqn.2026-11.com.example:target1"
	rest := name[len("iqn."):]
	if len(rest) < 8 || !isDigits(rest[0:4]) || rest[4] != '-' || !isDigits(rest[5:7]) || rest[7] != '.' {
		return nameErrorf("an iqn. name needs a date YYYY-MM and a reversed domain name: %s; got %q", usage, name)
	}
	if m := rest[5:7]; m < "01" || m > "12" {
		return nameErrorf("month %s in %q is not 01..12", m, name)
	}
	authority, unique, hasUnique := strings.Cut(rest[8:], ":")
	if authority == "" {
		return nameErrorf("an iqn. name needs a reversed domain name after the date: %s; got %q", usage, name)
	}
	for label := range strings.SplitSeq(authority, ".") {
		if label == "" || strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return nameErrorf("%q is not a reversed domain name (labels of a-z, 0-9 and '-' joined by '.'): %s", authority, usage)
		}
	}
	if hasUnique && unique == "" {
		return nameErrorf("nothing follows ':' in %q; drop the ':' or add a unique string after it", name)
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
