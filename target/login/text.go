package login

import (
	"bytes"
	"errors"
	"fmt"
)

// Limits from RFC 7143 §6.1: key names are at most 63 bytes; values are
// accepted up to 8192 bytes, the bound for large binary items such as CHAP
// challenges and responses.
const (
	MaxKeyLen       = 63
	MaxLongValueLen = 8192
)

// Errors from ParseText.
var (
	ErrSyntax       = errors.New("login: malformed key=value text")
	ErrDuplicateKey = errors.New("login: key sent twice")
)

// KV is one key=value pair.
type KV struct {
	Key, Value string
}

// Text is an ordered list of key=value pairs.
type Text []KV

// Get returns the value of key and whether it is present.
func (t Text) Get(key string) (string, bool) {
	for _, kv := range t {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// ParseText decodes a data segment of NUL-terminated key=value pairs. A final
// pair without its NUL is accepted (some initiators omit it when text spans
// PDUs; callers concatenate continued segments first). Repeated keys are an
// error (RFC 7143 §6.2: a key must not be repeated within a negotiation).
func ParseText(data []byte) (Text, error) {
	var out Text
	for len(data) > 0 {
		var item []byte
		if i := bytes.IndexByte(data, 0); i >= 0 {
			item, data = data[:i], data[i+1:]
		} else {
			item, data = data, nil
		}
		if len(item) == 0 {
			continue // tolerate padding or doubled NULs
		}
		eq := bytes.IndexByte(item, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("%w: %q has no key=value form", ErrSyntax, truncate(item))
		}
		key, val := item[:eq], item[eq+1:]
		if len(key) > MaxKeyLen || !validKey(key) {
			return nil, fmt.Errorf("%w: invalid key %q", ErrSyntax, truncate(key))
		}
		if len(val) > MaxLongValueLen {
			return nil, fmt.Errorf("%w: value of %s is %d bytes", ErrSyntax, key, len(val))
		}
		for _, kv := range out {
			if kv.Key == string(key) {
				return nil, fmt.Errorf("%w: %s", ErrDuplicateKey, key)
			}
		}
		out = append(out, KV{string(key), string(val)})
	}
	return out, nil
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// validKey reports whether k uses only the characters RFC 7143 §6.1 allows
// in key names: letters, digits, '.', '-', '+', '@', '_'.
func validKey(k []byte) bool {
	for _, c := range k {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == '+' || c == '@' || c == '_':
		default:
			return false
		}
	}
	return true
}

// Append encodes pairs as NUL-terminated key=value text onto dst.
func (t Text) Append(dst []byte) []byte {
	for _, kv := range t {
		dst = append(dst, kv.Key...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
		dst = append(dst, 0)
	}
	return dst
}
