package config

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// Auth holds the CHAP credentials for a target or for discovery sessions.
// The zero value asks for no authentication.
type Auth struct {
	// CHAP, when set, makes the initiator authenticate to the target with
	// CHAP using MD5 (RFC 7143 §12.1.3). Login fails without it.
	CHAP *Credential `yaml:"chap"`
	// MutualCHAP, when set, also makes the target authenticate to the
	// initiator. It requires CHAP, and its secret must differ from CHAP's
	// secret: RFC 7143 §12.1.3 forbids using one secret in both directions.
	MutualCHAP *Credential `yaml:"mutual_chap"`
}

// Credential is a CHAP name and secret.
//
// Formatting a Credential with fmt (any verb) or log/slog, or marshalling it
// as text, JSON or YAML, redacts the secret. Only read Secret to compute CHAP
// responses.
type Credential struct {
	// Username is the CHAP name (CHAP_N): 1..255 bytes of printable UTF-8.
	Username string `yaml:"username"`
	// Secret is the CHAP secret, 12..255 bytes. RFC 7143 §12.1.3 asks for at
	// least 96 bits, and a random secret reaches that in 12 bytes, so use a
	// long random string. Give exactly one of Secret and SecretFile. After
	// loading, Secret holds the secret even when it came from SecretFile.
	Secret string `yaml:"secret"`
	// SecretFile names a file that holds the secret; loading reads it.
	// One trailing newline ("\n" or "\r\n") is removed. The file must be a
	// regular file that other users cannot read (chmod o-r, e.g. mode 0600
	// or 0640). A relative path resolves like state_dir. Prefer it to
	// Secret, so the main file can be shared and kept under version control.
	SecretFile string `yaml:"secret_file"`
}

const redacted = "[REDACTED]"

// String describes c without its secret.
func (c Credential) String() string {
	s := "{username:" + strconv.Quote(c.Username)
	if c.SecretFile != "" {
		s += " secret_file:" + strconv.Quote(c.SecretFile)
	}
	return s + " secret:" + redacted + "}"
}

// Format implements fmt.Formatter, so no verb, not even %#v or %x, prints the
// secret.
func (c Credential) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// LogValue implements slog.LogValuer and redacts the secret.
func (c Credential) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("username", c.Username)}
	if c.SecretFile != "" {
		attrs = append(attrs, slog.String("secret_file", c.SecretFile))
	}
	return slog.GroupValue(append(attrs, slog.String("secret", redacted))...)
}

// MarshalText implements encoding.TextMarshaler with the redacted form, so
// encoding/json and yaml encoders cannot leak the secret either.
func (c Credential) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
