package luks2

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Interop 1: volumes made by cryptsetup open here with the same key.
func TestInteropCryptsetupFormat(t *testing.T) {
	needCryptsetup(t)
	for _, kdf := range []string{"argon2id", "pbkdf2"} {
		for _, sector := range []int{512, 4096} {
			for _, bits := range []int{256, 512} {
				t.Run(fmt.Sprintf("%s-%d-%d", kdf, sector, bits), func(t *testing.T) {
					img := newImage(t, 20<<20)
					args := []string{"luksFormat", "--type", "luks2", "--batch-mode", "--key-file", keyFile(t, "pass word"),
						"--sector-size", fmt.Sprint(sector), "--key-size", fmt.Sprint(bits), "--pbkdf", kdf}
					if kdf == "pbkdf2" {
						args = append(args, "--pbkdf-force-iterations", "1000")
					} else {
						args = append(args, "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4")
					}
					cs(t, append(args, img)...)
					want := dumpVolumeKey(t, img, "pass word")
					v, err := Open(openFile(t, img))
					if err != nil {
						t.Fatal(err)
					}
					if v.SectorSize() != sector || v.KeyBits() != bits || v.DataOffset() != 16<<20 || v.Cipher() != "aes-xts-plain64" {
						t.Fatalf("got sector %d bits %d offset %d cipher %s", v.SectorSize(), v.KeyBits(), v.DataOffset(), v.Cipher())
					}
					if n, err := v.DataSize(); err != nil || n != 4<<20 {
						t.Fatalf("DataSize = %d, %v", n, err)
					}
					key, slot, err := v.Unlock([]byte("pass word"))
					if err != nil {
						t.Fatal(err)
					}
					if slot != 0 || !bytes.Equal(key, want) {
						t.Fatalf("slot %d key mismatch", slot)
					}
					if len(v.Warnings()) != 0 {
						t.Fatalf("warnings: %v", v.Warnings())
					}
				})
			}
		}
	}
}

// Interop 2: volumes made here pass cryptsetup.
func TestInteropFormatHere(t *testing.T) {
	needCryptsetup(t)
	for _, tc := range []struct {
		name string
		opts FormatOptions
	}{
		{"argon2id-512-4096", FormatOptions{PBKDF: fastArgon, DigestIterations: 1000, Label: "hastor"}},
		{"pbkdf2-256-512", FormatOptions{PBKDF: fastPBKDF2, DigestIterations: 1000, KeyBits: 256, SectorSize: 512}},
		{"argon2i-512-512", FormatOptions{PBKDF: PBKDF{Type: "argon2i", Time: 4, MemoryKiB: 32 << 10, Threads: 1}, DigestIterations: 1000, SectorSize: 512}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := newImage(t, 20<<20)
			v, key, err := Format(openFile(t, img), []byte("pw1"), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			out := cs(t, "luksDump", img)
			wantSector := tc.opts.SectorSize
			if wantSector == 0 {
				wantSector = 4096
			}
			wantBits := tc.opts.KeyBits
			if wantBits == 0 {
				wantBits = 512
			}
			for _, want := range []string{
				"Version:       \t2", "UUID:          \t" + v.UUID(), "offset: 16777216 [bytes]",
				fmt.Sprintf("sector: %d [bytes]", wantSector), fmt.Sprintf("Key:        %d bits", wantBits),
				"PBKDF:      " + tc.opts.PBKDF.Type, "Area offset:32768 [bytes]",
			} {
				if !bytes.Contains([]byte(out), []byte(want)) {
					t.Errorf("luksDump lacks %q:\n%s", want, out)
				}
			}
			if tc.opts.Label != "" && !bytes.Contains([]byte(out), []byte("Label:         \t"+tc.opts.Label)) {
				t.Errorf("label missing:\n%s", out)
			}
			if !testPass(t, img, "pw1") {
				t.Fatal("cryptsetup rejects the passphrase")
			}
			if testPass(t, img, "wrong") {
				t.Fatal("cryptsetup accepts a wrong passphrase")
			}
			if got := dumpVolumeKey(t, img, "pw1"); !bytes.Equal(got, key) {
				t.Fatal("cryptsetup volume key differs from Format's")
			}
			var dump bytes.Buffer
			if err := v.Dump(&dump); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(dump.Bytes(), []byte(fmt.Sprintf("%02x %02x %02x", key[0], key[1], key[2]))) {
				t.Fatal("Dump seems to print key material")
			}
		})
	}
}

// Interop 3: keyslots added/changed/removed here are seen by cryptsetup,
// and keyslots added by cryptsetup work here.
func TestInteropKeyslots(t *testing.T) {
	needCryptsetup(t)
	img := newImage(t, 20<<20)
	st := openFile(t, img)
	v, key, err := Format(st, []byte("p0"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	if s, err := v.AddKey(key, []byte("p1"), -1, fastPBKDF2); err != nil || s != 1 {
		t.Fatalf("AddKey = %d, %v", s, err)
	}
	if s, err := v.AddKey(key, []byte("p5"), 5, fastArgon); err != nil || s != 5 {
		t.Fatalf("AddKey(5) = %d, %v", s, err)
	}
	if _, err := v.AddKey(key, []byte("x"), 5, fastPBKDF2); !errors.Is(err, ErrSlotInUse) {
		t.Fatalf("AddKey on used slot: %v", err)
	}
	dump := cs(t, "luksDump", img)
	for _, s := range []string{"  0: luks2", "  1: luks2", "  5: luks2"} {
		if !strings.Contains(dump, s) {
			t.Fatalf("luksDump lacks %q:\n%s", s, dump)
		}
	}
	for _, p := range []string{"p0", "p1", "p5"} {
		if !testPass(t, img, p) {
			t.Fatalf("cryptsetup rejects %s", p)
		}
	}
	if s, err := v.ChangeKey([]byte("p1"), []byte("p1new"), fastPBKDF2); err != nil || s != 1 {
		t.Fatalf("ChangeKey = %d, %v", s, err)
	}
	if !testPass(t, img, "p1new") || testPass(t, img, "p1") {
		t.Fatal("after ChangeKey cryptsetup still takes the old or rejects the new passphrase")
	}
	if !strings.Contains(cs(t, "luksDump", img), "  1: luks2") {
		t.Fatal("changed keyslot 1 is gone")
	}
	if err := v.RemoveKey(5); err != nil {
		t.Fatal(err)
	}
	dump = cs(t, "luksDump", img)
	if strings.Contains(dump, "  5: luks2") || testPass(t, img, "p5") {
		t.Fatalf("removed keyslot 5 still there:\n%s", dump)
	}
	if _, err := v.UnlockSlot([]byte("p5"), 5); !errors.Is(err, ErrNoSuchSlot) {
		t.Fatalf("UnlockSlot on removed slot: %v", err)
	}

	// cryptsetup adds, changes and kills keyslots; this package follows.
	cs(t, "luksAddKey", "--batch-mode", "--key-file", keyFile(t, "p0"), "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--key-slot", "7", img, keyFile(t, "cs7"))
	cs(t, "luksChangeKey", "--batch-mode", "--key-file", keyFile(t, "p1new"), "--pbkdf", "argon2id", "--pbkdf-memory", "32768",
		"--pbkdf-force-iterations", "4", img, keyFile(t, "cs1"))
	v2, err := Open(st)
	if err != nil {
		t.Fatal(err)
	}
	k7, err := v2.UnlockSlot([]byte("cs7"), 7)
	if err != nil || !bytes.Equal(k7, key) {
		t.Fatalf("cryptsetup-added slot 7: %v", err)
	}
	if k, _, err := v2.Unlock([]byte("cs1")); err != nil || !bytes.Equal(k, key) {
		t.Fatalf("cryptsetup-changed key: %v", err)
	}
	cs(t, "luksKillSlot", "--batch-mode", img, "0")
	v3, err := Open(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v3.Unlock([]byte("p0")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("killed slot still opens: %v", err)
	}
	if got := fmt.Sprint(v3.Keyslots()); got != "[1 7]" {
		t.Fatalf("keyslots %s", got)
	}
	// The existing volume object re-reads the header before writing.
	if s, err := v.AddKey(key, []byte("again"), -1, fastPBKDF2); err != nil || s != 0 {
		t.Fatalf("AddKey after cryptsetup changes = %d, %v", s, err)
	}
	if !testPass(t, img, "again") || !testPass(t, img, "cs7") {
		t.Fatal("cryptsetup rejects a passphrase")
	}
	// Last keyslot protection.
	for _, s := range []int{0, 1} {
		if err := v.RemoveKey(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.RemoveKey(7); !errors.Is(err, ErrLastKeyslot) {
		t.Fatalf("RemoveKey(last) = %v", err)
	}
	if err := v.ForceRemoveKey(7); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cs(t, "luksDump", img), ": luks2") {
		t.Fatal("keyslots left after removing all")
	}
}

// Interop 4: a token added by cryptsetup survives keyslot changes here.
func TestInteropTokenPreserved(t *testing.T) {
	needCryptsetup(t)
	img := newImage(t, 20<<20)
	cs(t, "luksFormat", "--type", "luks2", "--batch-mode", "--key-file", keyFile(t, "pw"), "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", img)
	tokFile := filepath.Join(t.TempDir(), "tok.json")
	tok := `{"type":"hastor-test","keyslots":["0"],"opaque":{"list":[1,2,3],"s":"x<y"},"n":12345678901234}`
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	cs(t, "token", "import", "--token-id", "3", "--json-file", tokFile, img)
	st := openFile(t, img)
	v, err := Open(st)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := v.Unlock([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddKey(key, []byte("pw2"), -1, fastPBKDF2); err != nil {
		t.Fatal(err)
	}
	tokens := func() map[string]any {
		var md map[string]map[string]any
		if err := json.Unmarshal([]byte(cs(t, "luksDump", "--dump-json-metadata", img)), &md); err != nil {
			t.Fatal(err)
		}
		return md["tokens"]
	}
	var want any
	if err := json.Unmarshal([]byte(tok), &want); err != nil {
		t.Fatal(err)
	}
	if got := tokens()["3"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("token after AddKey = %v, want %v", got, want)
	}
	// Removing the keyslot a token refers to unassigns it, as cryptsetup does.
	if err := v.RemoveKey(0); err != nil {
		t.Fatal(err)
	}
	got := tokens()["3"].(map[string]any)
	if ks := got["keyslots"].([]any); len(ks) != 0 || got["type"] != "hastor-test" || got["opaque"] == nil {
		t.Fatalf("token after RemoveKey(0) = %v", got)
	}
	if !testPass(t, img, "pw2") {
		t.Fatal("cryptsetup rejects pw2")
	}
}

func damage(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("garbage!"), off); err != nil {
		t.Fatal(err)
	}
}

// Interop 5: a damaged primary falls back to the secondary without
// writing; both damaged is ErrCorrupt; the next write repairs.
func TestInteropDamagedHeader(t *testing.T) {
	needCryptsetup(t)
	for _, where := range []struct {
		name string
		off  int64
	}{{"json", 4096 + 20}, {"magic", 0}, {"hdrsize", 8}} {
		t.Run(where.name, func(t *testing.T) {
			img := newImage(t, 20<<20)
			cs(t, "luksFormat", "--type", "luks2", "--batch-mode", "--key-file", keyFile(t, "pw"), "--pbkdf", "pbkdf2",
				"--pbkdf-force-iterations", "1000", img)
			want := dumpVolumeKey(t, img, "pw")
			damage(t, img, where.off)
			before := fileHash(t, img)
			st := openFile(t, img)
			v, err := Open(st)
			if err != nil {
				t.Fatal(err)
			}
			if w := v.Warnings(); len(w) == 0 || !strings.Contains(w[0], "primary header unusable") {
				t.Fatalf("warnings = %q", w)
			}
			key, _, err := v.Unlock([]byte("pw"))
			if err != nil || !bytes.Equal(key, want) {
				t.Fatalf("Unlock: %v", err)
			}
			if fileHash(t, img) != before {
				t.Fatal("Open/Unlock wrote to the device")
			}
			// A write repairs the primary copy.
			if _, err := v.AddKey(key, []byte("pw2"), -1, fastPBKDF2); err != nil {
				t.Fatal(err)
			}
			v2, err := Open(st)
			if err != nil || len(v2.Warnings()) != 0 {
				t.Fatalf("after repair: %v %q", err, v2.Warnings())
			}
			if !testPass(t, img, "pw2") {
				t.Fatal("cryptsetup rejects pw2 after repair")
			}
			out := cs(t, "--debug", "luksDump", img)
			if strings.Contains(out, "failed") || strings.Contains(out, "Checksum mismatch") {
				t.Fatalf("cryptsetup complains:\n%s", out)
			}
		})
	}
	t.Run("both", func(t *testing.T) {
		img := newImage(t, 20<<20)
		st := openFile(t, img)
		if _, _, err := Format(st, []byte("pw"), fastOpts()); err != nil {
			t.Fatal(err)
		}
		damage(t, img, 4096+30)
		damage(t, img, 16384+4096+30)
		before := fileHash(t, img)
		if _, err := Open(st); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open = %v, want ErrCorrupt", err)
		}
		if fileHash(t, img) != before {
			t.Fatal("Open wrote to the device")
		}
	})
}

// Interop 6: truncated device and wrong passphrase write nothing.
func TestTruncatedAndWrongPassphrase(t *testing.T) {
	img := newImage(t, 20<<20)
	st := openFile(t, img)
	v, key, err := Format(st, []byte("pw"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, img)
	if _, _, err := v.Unlock([]byte("nope")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Unlock = %v", err)
	}
	if _, err := v.UnlockSlot([]byte("nope"), 0); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("UnlockSlot = %v", err)
	}
	if _, err := v.ChangeKey([]byte("nope"), []byte("x"), fastPBKDF2); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("ChangeKey = %v", err)
	}
	bad := bytes.Clone(key)
	bad[0] ^= 1
	if _, err := v.AddKey(bad, []byte("x"), -1, fastPBKDF2); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("AddKey(bad key) = %v", err)
	}
	if fileHash(t, img) != before {
		t.Fatal("failed operations wrote to the device")
	}
	for _, size := range []int64{16<<20 - 4096, 20000, 5000, 100} {
		if err := os.Truncate(img, size); err != nil {
			t.Fatal(err)
		}
		h := fileHash(t, img)
		_, err := Open(st)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("size %d: Open = %v, want ErrTruncated", size, err)
		}
		if size == 16<<20-4096 && !strings.Contains(err.Error(), "16773120") {
			t.Fatalf("message lacks the size: %v", err)
		}
		if _, err := v.AddKey(key, []byte("x"), -1, fastPBKDF2); !errors.Is(err, ErrTruncated) {
			t.Fatalf("size %d: AddKey = %v", size, err)
		}
		if fileHash(t, img) != h {
			t.Fatal("truncated device was written")
		}
	}
	if _, _, err := Format(st, []byte("pw"), fastOpts()); !errors.Is(err, ErrTruncated) {
		t.Fatalf("Format on tiny device = %v", err)
	}
}

// Interop 7: header backups move between this package and cryptsetup.
func TestInteropBackupRestore(t *testing.T) {
	needCryptsetup(t)
	dir := t.TempDir()
	img := newImage(t, 20<<20)
	st := openFile(t, img)
	_, key, err := Format(st, []byte("orig"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	bk := filepath.Join(dir, "ours.bak")
	f, err := os.Create(bk)
	if err != nil {
		t.Fatal(err)
	}
	if err := BackupHeader(st, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, _ := os.Stat(bk); fi.Size() != 16<<20 {
		t.Fatalf("backup is %d bytes", fi.Size())
	}
	// Reformat, then let cryptsetup restore our backup.
	if _, _, err := Format(st, []byte("other"), fastOpts()); err != nil {
		t.Fatal(err)
	}
	cs(t, "luksHeaderRestore", "--batch-mode", "--header-backup-file", bk, img)
	if !testPass(t, img, "orig") || !bytes.Equal(dumpVolumeKey(t, img, "orig"), key) {
		t.Fatal("cryptsetup-restored backup does not open")
	}
	// cryptsetup's backup, restored here over a reformatted device.
	csbk := filepath.Join(dir, "cs.bak")
	cs(t, "luksHeaderBackup", "--header-backup-file", csbk, img)
	if _, _, err := Format(st, []byte("other"), fastOpts()); err != nil {
		t.Fatal(err)
	}
	rf, err := os.Open(csbk)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if err := RestoreHeader(st, rf); err != nil {
		t.Fatal(err)
	}
	v, err := Open(st)
	if err != nil {
		t.Fatal(err)
	}
	if k, _, err := v.Unlock([]byte("orig")); err != nil || !bytes.Equal(k, key) {
		t.Fatalf("restored header: %v", err)
	}
	// A backup with a larger data offset does not fit a 20 MiB device
	// with another layout, nor a 17 MiB blank one.
	big := newImage(t, 40<<20)
	bst := openFile(t, big)
	o := fastOpts()
	o.DataOffset = 32 << 20
	if _, _, err := Format(bst, []byte("big"), o); err != nil {
		t.Fatal(err)
	}
	if !testPass(t, big, "big") || !strings.Contains(cs(t, "luksDump", big), "offset: 33554432 [bytes]") {
		t.Fatal("cryptsetup rejects a 32 MiB data offset volume")
	}
	var bigBak bytes.Buffer
	if err := BackupHeader(bst, &bigBak); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, img)
	if err := RestoreHeader(st, bytes.NewReader(bigBak.Bytes())); !errors.Is(err, ErrTruncated) {
		t.Fatalf("restore of a larger layout = %v, want ErrTruncated", err)
	}
	if fileHash(t, img) != before {
		t.Fatal("refused restore wrote")
	}
	// Same size device, other layout: a 16 MiB-offset backup onto the
	// 32 MiB-offset volume.
	var smallBak bytes.Buffer
	if err := BackupHeader(st, &smallBak); err != nil {
		t.Fatal(err)
	}
	if err := RestoreHeader(bst, bytes.NewReader(smallBak.Bytes())); !errors.Is(err, ErrLayoutMismatch) {
		t.Fatalf("restore over another layout = %v, want ErrLayoutMismatch", err)
	}
	// A damaged backup is refused.
	dmg := bytes.Clone(smallBak.Bytes())
	copy(dmg[4096+40:], "garbage")
	if err := RestoreHeader(st, bytes.NewReader(dmg)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("restore of damaged backup = %v", err)
	}
	if err := RestoreHeader(st, bytes.NewReader(smallBak.Bytes()[:100000])); err == nil {
		t.Fatal("restore of a short backup succeeded")
	}
	if fileHash(t, img) != before {
		t.Fatal("refused restore wrote")
	}
}

// Interop 8: Erase removes every keyslot.
func TestInteropErase(t *testing.T) {
	needCryptsetup(t)
	img := newImage(t, 20<<20)
	st := openFile(t, img)
	v, key, err := Format(st, []byte("pw"), fastOpts())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddKey(key, []byte("pw2"), 3, fastPBKDF2); err != nil {
		t.Fatal(err)
	}
	area := make([]byte, 4096)
	if _, err := st.ReadAt(area, 32768); err != nil {
		t.Fatal(err)
	}
	if err := v.Erase(); err != nil {
		t.Fatal(err)
	}
	after := make([]byte, 4096)
	if _, err := st.ReadAt(after, 32768); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(area, after) {
		t.Fatal("keyslot area not overwritten")
	}
	dump := cs(t, "luksDump", img)
	if strings.Contains(dump, ": luks2") || !strings.Contains(dump, "Keyslots:\nTokens:") {
		t.Fatalf("luksDump after Erase:\n%s", dump)
	}
	if testPass(t, img, "pw") || testPass(t, img, "pw2") {
		t.Fatal("passphrase still opens after Erase")
	}
	v2, err := Open(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v2.Unlock([]byte("pw")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Unlock after Erase = %v", err)
	}
	// The volume key can still be re-enrolled (digest kept).
	if _, err := v2.AddKey(key, []byte("back"), -1, fastPBKDF2); err != nil {
		t.Fatal(err)
	}
	if !testPass(t, img, "back") {
		t.Fatal("re-enrolled key rejected by cryptsetup")
	}
}

// Larger metadata areas and small keyslots areas made by cryptsetup are
// read, written and (with a damaged primary) found through the secondary.
func TestInteropMetadataSizes(t *testing.T) {
	needCryptsetup(t)
	for _, size := range []string{"64k", "4m"} {
		t.Run(size, func(t *testing.T) {
			img := newImage(t, 24<<20)
			cs(t, "luksFormat", "--type", "luks2", "--batch-mode", "--key-file", keyFile(t, "pw"), "--pbkdf", "pbkdf2",
				"--pbkdf-force-iterations", "1000", "--luks2-metadata-size", size, "--luks2-keyslots-size", "1m", img)
			cs(t, "config", "--priority", "prefer", "--key-slot", "0", img)
			st := openFile(t, img)
			v, err := Open(st)
			if err != nil {
				t.Fatal(err)
			}
			key, _, err := v.Unlock([]byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, dumpVolumeKey(t, img, "pw")) {
				t.Fatal("key mismatch")
			}
			// 1 MiB keyslots area: 4 areas of 258048 bytes fit.
			for i := 1; i < 4; i++ {
				if _, err := v.AddKey(key, []byte(fmt.Sprint("pw", i)), -1, fastPBKDF2); err != nil {
					t.Fatalf("AddKey %d: %v", i, err)
				}
			}
			if _, err := v.AddKey(key, []byte("full"), -1, fastPBKDF2); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("AddKey into full keyslots area: %v", err)
			}
			if _, err := v.ChangeKey([]byte("pw1"), []byte("x"), fastPBKDF2); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("ChangeKey without space: %v", err)
			}
			if !testPass(t, img, "pw3") || !testPass(t, img, "pw1") {
				t.Fatal("cryptsetup rejects added keys")
			}
			if !strings.Contains(cs(t, "luksDump", img), "Priority:   preferred") {
				t.Fatal("priority lost")
			}
			damage(t, img, 0)
			v2, err := Open(st)
			if err != nil {
				t.Fatal(err)
			}
			if len(v2.Warnings()) == 0 {
				t.Fatal("no warning for damaged primary")
			}
			if _, s, err := v2.Unlock([]byte("pw2")); err != nil || s != 2 {
				t.Fatalf("Unlock via secondary: %d %v", s, err)
			}
		})
	}
}

// LUKS1 volumes and LUKS2 volumes in reencryption are refused clearly.
func TestInteropRefused(t *testing.T) {
	needCryptsetup(t)
	l1 := newImage(t, 20<<20)
	cs(t, "luksFormat", "--type", "luks1", "--batch-mode", "--key-file", keyFile(t, "pw"), "--pbkdf-force-iterations", "1000", l1)
	if _, err := Open(openFile(t, l1)); !errors.Is(err, ErrNotLUKS2) || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("LUKS1: %v", err)
	}
	re := newImage(t, 20<<20)
	cs(t, "luksFormat", "--type", "luks2", "--batch-mode", "--key-file", keyFile(t, "pw"), "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", re)
	cs(t, "reencrypt", "--init-only", "--batch-mode", "--key-file", keyFile(t, "pw"), "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", re)
	before := fileHash(t, re)
	_, err := Open(openFile(t, re))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "online-reencrypt") {
		t.Fatalf("reencryption: %v", err)
	}
	if fileHash(t, re) != before {
		t.Fatal("Open wrote")
	}
	if _, err := Open(openFile(t, newImage(t, 1<<20))); !errors.Is(err, ErrNotLUKS2) {
		t.Fatalf("blank device: %v", err)
	}
}
