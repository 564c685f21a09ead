package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// No way of printing or logging a loaded Config shows a secret.
func TestSecretsAreRedacted(t *testing.T) {
	const one, two = "one-way-secret-0123", "mutual-secret-4567"
	cfg := mustParse(t, withTarget(`{iqn: iqn.2026-11.dev.hastor:t, auth: {chap: {username: u, secret: `+one+`}, mutual_chap: {username: m, secret: `+two+`}}, luns: [`+lun0+`]}`), nil)
	auth := cfg.Targets[0].Auth
	if auth.CHAP.Secret != one || auth.MutualCHAP.Secret != two {
		t.Fatalf("secrets not loaded")
	}

	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		out = append(out,
			fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, *cfg), fmt.Sprintf(verb, auth),
			fmt.Sprintf(verb, auth.CHAP), fmt.Sprintf(verb, *auth.CHAP))
	}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		slog.New(h).Info("cfg", "chap", auth.CHAP, "cred", *auth.MutualCHAP, "auth", auth)
	}
	out = append(out, logs.String())
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(j), string(y))

	for _, s := range out {
		if strings.Contains(s, one) || strings.Contains(s, two) {
			t.Errorf("secret leaked in: %s", s)
		}
	}
	if got := auth.CHAP.String(); got != `{username:"u" secret:[REDACTED]}` {
		t.Errorf("String() = %s", got)
	}
	if !strings.Contains(logs.String(), `"username":"u"`) || !strings.Contains(logs.String(), `"secret":"[REDACTED]"`) {
		t.Errorf("slog output lacks the redacted group:\n%s", logs.String())
	}
}
