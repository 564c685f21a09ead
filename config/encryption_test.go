package config

import (
	"strings"
	"testing"
	"testing/fstest"
)

const encryptedDoc = `
state_dir: /var/lib/hastor
targets:
  - iqn: iqn.2026-11.dev.hastor:t
    luns:
      - lun: 0
        volume_id: vault
        path: vault.img
        size: 64MiB
        block_size: 4096
        encryption:
          key_file: vault.key
`

func TestEncryptedLUN(t *testing.T) {
	files := fstest.MapFS{
		"var/lib/hastor/vault.img": &fstest.MapFile{Mode: 0o600},
		"etc/hastor/vault.key":     secretFile("pass"),
	}
	cfg := mustParse(t, encryptedDoc, files)
	l := cfg.Targets[0].LUNs[0]
	if !l.Encrypted() || l.Encryption.KeyFile != "/etc/hastor/vault.key" {
		t.Errorf("Encryption = %+v, want key file resolved against the config directory", l.Encryption)
	}
	if cfg.ControlSocket != "/var/lib/hastor/hastord.sock" {
		t.Errorf("ControlSocket = %q, want the default under state_dir", cfg.ControlSocket)
	}
}

func TestEncryptedLUNProblems(t *testing.T) {
	t.Run("image missing", func(t *testing.T) {
		_, err := parseFake(encryptedDoc, fstest.MapFS{"etc/hastor/vault.key": secretFile("pass")})
		wantProblems(t, err, "targets[0].luns[0].path: hastorctl format --size 64MiB /var/lib/hastor/vault.img")
	})
	t.Run("key file readable by others", func(t *testing.T) {
		_, err := parseFake(encryptedDoc, fstest.MapFS{
			"var/lib/hastor/vault.img": &fstest.MapFile{Mode: 0o600},
			"etc/hastor/vault.key":     &fstest.MapFile{Data: []byte("pass"), Mode: 0o640},
		})
		wantProblems(t, err, "targets[0].luns[0].encryption.key_file: chmod go-r /etc/hastor/vault.key")
	})
	t.Run("key file missing and empty", func(t *testing.T) {
		_, err := parseFake(encryptedDoc, fstest.MapFS{"var/lib/hastor/vault.img": &fstest.MapFile{Mode: 0o600}})
		wantProblems(t, err, "targets[0].luns[0].encryption.key_file: cannot read /etc/hastor/vault.key")
		_, err = parseFake(encryptedDoc, fstest.MapFS{
			"var/lib/hastor/vault.img": &fstest.MapFile{Mode: 0o600},
			"etc/hastor/vault.key":     secretFile(""),
		})
		wantProblems(t, err, "targets[0].luns[0].encryption.key_file: is empty")
	})
	t.Run("thin provisioning", func(t *testing.T) {
		doc := strings.Replace(encryptedDoc, "block_size: 4096\n", "block_size: 4096\n        thin_provisioning: true\n", 1)
		_, err := parseFake(doc, fstest.MapFS{
			"var/lib/hastor/vault.img": &fstest.MapFile{Mode: 0o600},
			"etc/hastor/vault.key":     secretFile("pass"),
		})
		wantProblems(t, err, "targets[0].luns[0].thin_provisioning: an encrypted LUN is always fully provisioned")
	})
	t.Run("socket path too long", func(t *testing.T) {
		doc := encryptedDoc + "control_socket: /run/" + strings.Repeat("x", 120) + "\n"
		_, err := parseFake(doc, fstest.MapFS{
			"var/lib/hastor/vault.img": &fstest.MapFile{Mode: 0o600},
			"etc/hastor/vault.key":     secretFile("pass"),
		})
		wantProblems(t, err, "control_socket: a unix socket path may have at most 107")
	})
}
