package luks2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// memStorage is a read-only in-memory Storage over a header image.
type memStorage struct{ b []byte }

func (m *memStorage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (m *memStorage) WriteAt(p []byte, off int64) (int, error) {
	return 0, errors.New("luks2: header image is read-only")
}
func (m *memStorage) Size() (int64, error) { return int64(len(m.b)), nil }
func (m *memStorage) Sync() error          { return nil }

// BackupHeader writes everything below the data offset (both header copies
// and the keyslots area) to w, the same image cryptsetup luksHeaderBackup
// produces and luksHeaderRestore accepts. The header is verified first.
// The image holds the keyslots: protect it like the volume key.
func BackupHeader(st Storage, w io.Writer) error {
	hs, err := load(st)
	if err != nil {
		return err
	}
	n := hs.md.segOffset
	buf := make([]byte, 1<<20)
	for off := int64(0); off < n; {
		c := min(int64(len(buf)), n-off)
		if err := readAt(st, buf[:c], off); err != nil {
			return fmt.Errorf("luks2: read header area at %d: %w", off, err)
		}
		if _, err := w.Write(buf[:c]); err != nil {
			return fmt.Errorf("luks2: write backup: %w", err)
		}
		off += c
	}
	return nil
}

// maxBackupSize bounds what RestoreHeader reads (4 MiB headers plus a
// 128 MiB keyslots area fit with room).
const maxBackupSize = 256 << 20

// RestoreHeader writes a header backup (from BackupHeader or cryptsetup
// luksHeaderBackup) to st. It first validates the whole image: at least
// one valid header copy (checksums, metadata), the image covers the
// header and keyslots areas, the data offset fits the device and, if the
// device already has a valid LUKS2 header, both use the same header and
// keyslots area sizes (like cryptsetup; ErrLayoutMismatch). Only then it
// writes the image below the data offset and syncs. A header with another
// UUID is accepted: recovering from an accidental luksFormat is the point.
func RestoreHeader(st Storage, r io.Reader) error {
	img, err := io.ReadAll(io.LimitReader(r, maxBackupSize+1))
	if err != nil {
		return fmt.Errorf("luks2: read backup: %w", err)
	}
	if len(img) > maxBackupSize {
		return fmt.Errorf("%w: backup image larger than %d bytes", ErrInvalidOptions, maxBackupSize)
	}
	bhs, err := loadHeaders(&memStorage{b: img})
	if err != nil {
		return fmt.Errorf("luks2: header backup invalid: %w", err)
	}
	if len(bhs.warnings) > 0 {
		return fmt.Errorf("%w: header backup has a damaged or outdated copy: %s", ErrCorrupt, bhs.warnings[0])
	}
	bmd := bhs.md
	hdrSize := int64(bhs.hdr.hdrSize)
	areasEnd := 2*hdrSize + bmd.keyslotsSize
	if int64(len(img)) < areasEnd {
		return fmt.Errorf("%w: backup is %d bytes, its header and keyslots areas need %d", ErrTruncated, len(img), areasEnd)
	}
	devSize, err := st.Size()
	if err != nil {
		return fmt.Errorf("luks2: device size: %w", err)
	}
	if devSize < bmd.segOffset {
		return fmt.Errorf("%w: device is %d bytes, the backup's data offset is %d", ErrTruncated, devSize, bmd.segOffset)
	}
	if bmd.segSize > 0 && devSize < bmd.segOffset+bmd.segSize {
		return fmt.Errorf("%w: device is %d bytes, the backup's data segment ends at %d", ErrTruncated, devSize, bmd.segOffset+bmd.segSize)
	}
	if cur, err := loadHeaders(st); err == nil {
		ch := int64(cur.hdr.hdrSize)
		if ch != hdrSize || cur.md.keyslotsSize != bmd.keyslotsSize || cur.md.segOffset != bmd.segOffset {
			return fmt.Errorf("%w: device has header %d / keyslots %d / data offset %d, backup has %d / %d / %d",
				ErrLayoutMismatch, ch, cur.md.keyslotsSize, cur.md.segOffset, hdrSize, bmd.keyslotsSize, bmd.segOffset)
		}
	}
	n := min(int64(len(img)), bmd.segOffset)
	if _, err := st.WriteAt(img[:n], 0); err != nil {
		return fmt.Errorf("luks2: write header: %w", err)
	}
	if err := st.Sync(); err != nil {
		return fmt.Errorf("luks2: sync: %w", err)
	}
	got, err := load(st)
	if err != nil {
		return fmt.Errorf("luks2: restored header does not verify: %w", err)
	}
	if !bytes.Equal([]byte(got.hdr.uuid), []byte(bhs.hdr.uuid)) {
		return fmt.Errorf("%w: restored header reads back with UUID %s", ErrCorrupt, got.hdr.uuid)
	}
	return nil
}
