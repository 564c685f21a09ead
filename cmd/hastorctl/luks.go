package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"hastor/config"
	"hastor/crypt/luks2"
)

// kdfFlags adds the key-derivation options of format, add-key and
// change-key.
func kdfFlags(fs *flag.FlagSet) func() luks2.PBKDF {
	typ := fs.String("pbkdf", "", "key derivation: argon2id (default), argon2i or pbkdf2")
	mem := fs.Int("pbkdf-memory", 0, "argon2 memory cost in `KiB` (default: calibrated, at most 1 GiB)")
	tm := fs.Int("pbkdf-time", 0, "argon2 time cost (passes) (default: calibrated to about 2 s)")
	threads := fs.Int("pbkdf-parallel", 0, "argon2 threads (default: min(4, CPUs))")
	iter := fs.Int("iterations", 0, "pbkdf2 iterations (default: calibrated to about 2 s)")
	return func() luks2.PBKDF {
		return luks2.PBKDF{Type: *typ, MemoryKiB: *mem, Time: *tm, Threads: *threads, Iterations: *iter}
	}
}

func cmdFormat(_ context.Context, args []string, st stdio) error {
	fs := newFlagSet("format", st)
	var size config.ByteSize
	fs.Func("size", "create DEVICE as an image file of `SIZE` (e.g. 10GiB) if it does not exist", func(v string) error {
		return size.UnmarshalText([]byte(v))
	})
	keyFile := fs.String("key-file", "", "read the passphrase from `file` (\"-\": standard input)")
	sector := fs.Int("sector-size", 4096, "encryption sector size, 512 or 4096; the LUN's block_size must be at least this")
	keySize := fs.Int("key-size", 512, "volume key size in bits: 512 (AES-256-XTS) or 256 (AES-128-XTS)")
	label := fs.String("label", "", "volume label")
	yes := fs.Bool("yes", false, "format even if DEVICE already holds a LUKS volume (destroys its data)")
	kdf := kdfFlags(fs)
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	path := fs.Arg(0)
	if size != 0 {
		if err := createImage(path, int64(size)); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockHeader(f); err != nil {
		return err
	}
	if _, err := luks2.Open(luks2.File{File: f}); err == nil && !*yes {
		return fmt.Errorf("%s already holds a LUKS2 volume; formatting destroys its keys and so its data: add --yes if you mean it", path)
	}
	pass, err := passphrase(st, *keyFile, "Passphrase for "+path, true)
	if err != nil {
		return err
	}
	defer clear(pass)
	v, key, err := luks2.Format(luks2.File{File: f}, pass, luks2.FormatOptions{
		KeyBits: *keySize, SectorSize: *sector, PBKDF: kdf(), Label: *label})
	clear(key)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ds, _ := v.DataSize()
	fmt.Fprintf(st.out, "%s: LUKS2 volume %s, %s with %d-byte sectors, data at offset %d, %s usable (keyslot 0)\n",
		path, v.UUID(), v.Cipher(), v.SectorSize(), v.DataOffset(), config.ByteSize(ds))
	return nil
}

// createImage creates a sparse image file of size bytes, or checks that
// an existing one has that size.
func createImage(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && fi.Size() != size {
			return fmt.Errorf("%s exists with size %d, not %d; leave out --size to format it as it is", path, fi.Size(), size)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

func cmdAddKey(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("add-key", st)
	hf := newHeaderFlags(fs)
	keyFile := fs.String("key-file", "", "read an existing passphrase from `file`")
	newKeyFile := fs.String("new-key-file", "", "read the new passphrase from `file`")
	slot := fs.Int("slot", -1, "keyslot `number` for the new passphrase (default: the first free one)")
	kdf := kdfFlags(fs)
	if err := hf.parse(fs, args, 0); err != nil {
		return err
	}
	hd, v, err := hf.openVolume(ctx, fs, true)
	if err != nil {
		return err
	}
	defer hd.close()
	path := hd.name
	old, err := passphrase(st, *keyFile, "Existing passphrase for "+path, false)
	if err != nil {
		return err
	}
	key, _, err := v.Unlock(old)
	clear(old)
	if err != nil {
		return err
	}
	defer clear(key)
	pass, err := passphrase(st, *newKeyFile, "New passphrase", true)
	if err != nil {
		return err
	}
	defer clear(pass)
	n, err := v.AddKey(key, pass, *slot, kdf())
	if err != nil {
		return err
	}
	fmt.Fprintf(st.out, "%s: passphrase added in keyslot %d\n", path, n)
	return nil
}

func cmdChangeKey(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("change-key", st)
	hf := newHeaderFlags(fs)
	keyFile := fs.String("key-file", "", "read the passphrase to change from `file`")
	newKeyFile := fs.String("new-key-file", "", "read the new passphrase from `file`")
	kdf := kdfFlags(fs)
	if err := hf.parse(fs, args, 0); err != nil {
		return err
	}
	hd, v, err := hf.openVolume(ctx, fs, true)
	if err != nil {
		return err
	}
	defer hd.close()
	path := hd.name
	old, err := passphrase(st, *keyFile, "Passphrase to change", false)
	if err != nil {
		return err
	}
	defer clear(old)
	pass, err := passphrase(st, *newKeyFile, "New passphrase", true)
	if err != nil {
		return err
	}
	defer clear(pass)
	n, err := v.ChangeKey(old, pass, kdf())
	if err != nil {
		return err
	}
	fmt.Fprintf(st.out, "%s: passphrase of keyslot %d changed\n", path, n)
	return nil
}

func cmdRemoveKey(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("remove-key", st)
	hf := newHeaderFlags(fs)
	keyFile := fs.String("key-file", "", "remove the keyslot that the passphrase in `file` opens")
	slot := fs.Int("slot", -1, "remove keyslot `number` (no passphrase needed)")
	if err := hf.parse(fs, args, 0); err != nil {
		return err
	}
	if *slot >= 0 && *keyFile != "" {
		return errUsage{msg: "give --slot or --key-file, not both"}
	}
	hd, v, err := hf.openVolume(ctx, fs, true)
	if err != nil {
		return err
	}
	defer hd.close()
	path := hd.name
	n := *slot
	if n < 0 {
		pass, err := passphrase(st, *keyFile, "Passphrase to remove", false)
		if err != nil {
			return err
		}
		key, s, err := v.Unlock(pass)
		clear(pass)
		clear(key)
		if err != nil {
			return err
		}
		n = s
	}
	if err := v.RemoveKey(n); err != nil {
		return err
	}
	fmt.Fprintf(st.out, "%s: keyslot %d removed\n", path, n)
	return nil
}

func cmdHeaderBackup(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("header-backup", st)
	hf := newHeaderFlags(fs)
	if err := hf.parse(fs, args, 1); err != nil {
		return err
	}
	file := hf.rest(fs)[0]
	hd, err := hf.open(ctx, fs, false)
	if err != nil {
		return err
	}
	defer hd.close()
	path := hd.name
	out, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup file: %w (it must not exist yet)", err)
	}
	if err := luks2.BackupHeader(hd.st, out); err != nil {
		out.Close()
		os.Remove(file)
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	fmt.Fprintf(st.out, "%s: header saved to %s; it holds the keyslots, so keep it as safe as the passphrases\n", path, file)
	return nil
}

func cmdHeaderRestore(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("header-restore", st)
	hf := newHeaderFlags(fs)
	yes := fs.Bool("yes", false, "confirm: the header on DEVICE is replaced")
	if err := hf.parse(fs, args, 1); err != nil {
		return err
	}
	path, file := *hf.volume, hf.rest(fs)[0]
	if path == "" {
		path = fs.Arg(0)
	}
	if !*yes {
		return fmt.Errorf("restoring replaces the header and every keyslot on %s: add --yes if you mean it", path)
	}
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	hd, err := hf.open(ctx, fs, true)
	if err != nil {
		return err
	}
	defer hd.close()
	if err := luks2.RestoreHeader(hd.st, in); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(st.out, "%s: header restored from %s\n", path, file)
	return nil
}

func cmdDump(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("dump", st)
	hf := newHeaderFlags(fs)
	if err := hf.parse(fs, args, 0); err != nil {
		return err
	}
	hd, v, err := hf.openVolume(ctx, fs, false)
	if err != nil {
		return err
	}
	defer hd.close()
	return v.Dump(st.out)
}

func cmdErase(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("erase", st)
	hf := newHeaderFlags(fs)
	yes := fs.Bool("yes", false, "confirm: every keyslot is destroyed and the data can never be decrypted again")
	if err := hf.parse(fs, args, 0); err != nil {
		return err
	}
	path := *hf.volume
	if path == "" {
		path = fs.Arg(0)
	}
	if !*yes {
		return fmt.Errorf("erase destroys every keyslot of %s, so its data can never be read again, unless you hold a header backup: add --yes if you mean it", path)
	}
	hd, v, err := hf.openVolume(ctx, fs, true)
	if err != nil {
		return err
	}
	defer hd.close()
	if err := v.Erase(); err != nil {
		return err
	}
	fmt.Fprintf(st.out, "%s: all keyslots destroyed\n", path)
	return nil
}

// lockHeader takes an open-file-description lock on the first byte of the
// device, so that two hastorctl commands never rewrite one header at once.
// It is independent of the flock hastord holds on a volume it serves:
// hastord only reads the header, and sees new keyslots at its next unlock.
func lockHeader(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("%s: another hastorctl is changing this header; try again when it is done", f.Name())
		}
		return fmt.Errorf("%s: lock header: %w", f.Name(), err)
	}
	return nil
}
