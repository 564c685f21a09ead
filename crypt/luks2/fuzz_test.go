package luks2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// fuzzStorage serves data followed by zeros up to size, so a small header
// image can describe a volume whose data offset lies beyond it.
type fuzzStorage struct {
	b    []byte
	size int64
}

func (s *fuzzStorage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.size {
		return 0, io.EOF
	}
	n := 0
	if off < int64(len(s.b)) {
		n = copy(p, s.b[off:])
	}
	end := min(int64(len(p)), s.size-off)
	clear(p[n:end])
	if end < int64(len(p)) {
		return int(end), io.EOF
	}
	return len(p), nil
}
func (s *fuzzStorage) WriteAt(p []byte, off int64) (int, error) { return 0, errors.New("read-only") }
func (s *fuzzStorage) Size() (int64, error)                     { return s.size, nil }
func (s *fuzzStorage) Sync() error                              { return nil }

// FuzzOpen feeds arbitrary header images to Open: it must never panic,
// and every error must be one of the package's sentinels.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("LUKS\xba\xbe\x00\x02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data)%2 == 1 {
			// Odd lengths get valid checksums so mutations reach the
			// metadata parser instead of stopping at the checksum.
			data = fixChecksums(data)
		}
		st := &fuzzStorage{b: data, size: max(int64(len(data)), 17<<20)}
		if len(data) > 0 && data[0]&1 == 1 {
			st.size = int64(len(data)) // also try the image as the whole device
		}
		v, err := Open(st)
		if err != nil {
			for _, s := range []error{ErrNotLUKS2, ErrCorrupt, ErrTruncated, ErrUnsupported} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("Open error wraps no sentinel: %v", err)
		}
		_ = v.Dump(io.Discard)
		_, _ = v.DataSize()
		_ = v.KeyBits()
		_ = v.Keyslots()
		_ = v.Warnings()
	})
}

// fixChecksums returns a copy of img with the sha256 checksum of each
// header copy recomputed (for copies whose hdr_size field is plausible).
func fixChecksums(img []byte) []byte {
	img = bytes.Clone(img)
	if len(img) < binHeaderSize {
		return img
	}
	n := binary.BigEndian.Uint64(img[offHdrSize:])
	if !validHdrSize(n) {
		return img
	}
	for _, off := range []uint64{0, n} {
		if off+n <= uint64(len(img)) {
			_ = setChecksum("sha256", img[off:off+n])
		}
	}
	return img
}

// FuzzParseMetadata feeds arbitrary JSON to the metadata parser. Accepted
// metadata must encode and parse back to the same text.
func FuzzParseMetadata(f *testing.F) {
	f.Add([]byte(sampleJSON))
	f.Add([]byte(`{"keyslots":{},"tokens":{},"segments":{},"digests":{},"config":{"json_size":"12288","keyslots_size":"0"}}`))
	f.Fuzz(func(t *testing.T, text []byte) {
		md, err := parseMetadata(text, defaultHdrSize)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if md.unsupported != nil {
			if !errors.Is(md.unsupported, ErrUnsupported) {
				t.Fatalf("unsupported wraps no sentinel: %v", md.unsupported)
			}
			return // writes refuse such metadata
		}
		out, err := md.encode()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		md2, err := parseMetadata(out, defaultHdrSize)
		if err != nil {
			t.Fatalf("re-parse of encoded metadata: %v\n%s", err, out)
		}
		out2, err := md2.encode()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encode not stable:\n%s\n%s", out, out2)
		}
		n := md.cloneObjects()
		for _, id := range md.sortedSlots() {
			if err := n.dropKeyslot(id); err != nil {
				t.Fatalf("dropKeyslot: %v", err)
			}
		}
		if out, err := n.encode(); err == nil {
			if _, err := parseMetadata(out, defaultHdrSize); err != nil {
				t.Fatalf("metadata without keyslots invalid: %v\n%s", err, out)
			}
		}
	})
}
