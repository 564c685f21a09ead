package luks2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// headerCopy is the outcome of reading one header copy.
type headerCopy struct {
	off   int64
	magic bool // a LUKS2 magic was seen at off
	h     binHeader
	md    *metadata
	text  []byte // JSON text (without the NUL padding)
	err   error  // nil if the copy is valid
}

// headerState is the verified header of a volume as read from the device.
type headerState struct {
	hdr      binHeader // from the chosen copy
	md       *metadata
	salts    [2][lenSalt]byte // per-copy salts to keep on rewrite
	haveSalt [2]bool
	devSize  int64
	warnings []string
}

// readAt reads len(b) bytes at off, treating a short read as an error.
func readAt(st Storage, b []byte, off int64) error {
	n, err := st.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readCopy reads and validates the header copy at off.
func readCopy(st Storage, off, devSize int64) headerCopy {
	c := headerCopy{off: off}
	if off >= devSize {
		c.err = fmt.Errorf("%w: device is %d bytes, no room for a header copy at %d", ErrTruncated, devSize, off)
		return c
	}
	bin := make([]byte, min(binHeaderSize, devSize-off))
	if err := readAt(st, bin, off); err != nil {
		c.err = fmt.Errorf("luks2: read header at %d: %w", off, err)
		return c
	}
	p, s := hasMagic(bin)
	c.magic = (off == 0 && p) || (off != 0 && s)
	if !c.magic {
		if off == 0 && s {
			c.err = corruptf("secondary magic at offset 0")
		} else {
			c.err = fmt.Errorf("%w: no LUKS2 magic at offset %d", ErrNotLUKS2, off)
		}
		return c
	}
	if len(bin) < binHeaderSize {
		c.err = fmt.Errorf("%w: device is %d bytes, header copy at %d needs %d", ErrTruncated, devSize, off, binHeaderSize)
		return c
	}
	h, err := decodeBinHeader(bin)
	c.h = h
	if err != nil {
		c.err = err
		return c
	}
	if h.hdrOffset != uint64(off) {
		c.err = corruptf("header copy at %d claims offset %d", off, h.hdrOffset)
		return c
	}
	if off != 0 && h.hdrSize != uint64(off) {
		c.err = corruptf("secondary header at %d has header size %d", off, h.hdrSize)
		return c
	}
	size := int64(h.hdrSize)
	if off+size > devSize {
		c.err = fmt.Errorf("%w: device is %d bytes, header copy at %d needs %d", ErrTruncated, devSize, off, off+size)
		return c
	}
	area := make([]byte, size)
	if err := readAt(st, area, off); err != nil {
		c.err = fmt.Errorf("luks2: read header area at %d: %w", off, err)
		return c
	}
	if err := verifyChecksum(h.checksumAlg, area); err != nil {
		c.err = fmt.Errorf("header copy at %d: %w", off, err)
		return c
	}
	jsonArea := area[binHeaderSize:]
	end := bytes.IndexByte(jsonArea, 0)
	if end < 0 {
		c.err = corruptf("header copy at %d: JSON area is not NUL-terminated", off)
		return c
	}
	c.text = jsonArea[:end:end]
	md, err := parseMetadata(c.text, size)
	if err != nil {
		c.err = fmt.Errorf("header copy at %d: %w", off, err)
		return c
	}
	c.md = md
	return c
}

// load reads both header copies, verifies them and picks the valid one
// with the highest seqid, and checks the device holds the data segment.
// It never writes.
func load(st Storage) (*headerState, error) {
	hs, err := loadHeaders(st)
	if err != nil {
		return nil, err
	}
	if err := hs.checkDeviceSize(); err != nil {
		return nil, err
	}
	return hs, nil
}

// loadHeaders is load without the data segment size check (for header
// backup images).
func loadHeaders(st Storage) (*headerState, error) {
	devSize, err := st.Size()
	if err != nil {
		return nil, fmt.Errorf("luks2: device size: %w", err)
	}
	prim := readCopy(st, 0, devSize)
	var sec headerCopy
	tried := map[int64]bool{}
	if prim.h.hdrSize != 0 && validHdrSize(prim.h.hdrSize) {
		sec = readCopy(st, int64(prim.h.hdrSize), devSize)
		tried[int64(prim.h.hdrSize)] = true
	}
	if prim.err != nil && (sec.err != nil || !tried[int64(prim.h.hdrSize)]) {
		// Primary unusable: search the secondary at every allowed offset.
		for _, off := range hdrSizes() {
			if tried[off] || off >= devSize {
				continue
			}
			c := readCopy(st, off, devSize)
			if c.err == nil || (c.magic && !sec.magic) {
				sec = c
			}
			if c.err == nil {
				break
			}
		}
	}
	hs := &headerState{devSize: devSize}
	if prim.err == nil {
		hs.salts[0], hs.haveSalt[0] = prim.h.salt, true
	}
	if sec.err == nil && sec.md != nil {
		hs.salts[1], hs.haveSalt[1] = sec.h.salt, true
	}
	var chosen headerCopy
	switch {
	case prim.err == nil && sec.err == nil && sec.md != nil:
		chosen = prim
		if sec.h.seqID > prim.h.seqID {
			chosen = sec
			hs.warnings = append(hs.warnings, fmt.Sprintf("primary header is outdated (seqid %d < %d); using the secondary", prim.h.seqID, sec.h.seqID))
		} else if sec.h.seqID < prim.h.seqID {
			hs.warnings = append(hs.warnings, fmt.Sprintf("secondary header is outdated (seqid %d < %d)", sec.h.seqID, prim.h.seqID))
		} else if sec.h.hdrSize != prim.h.hdrSize || sec.h.uuid != prim.h.uuid || !bytes.Equal(sec.text, prim.text) {
			hs.warnings = append(hs.warnings, "header copies have the same seqid but differ; using the primary")
		}
		if sec.h.uuid != prim.h.uuid && chosen.off == 0 {
			hs.haveSalt[1] = false
		}
	case prim.err == nil:
		chosen = prim
		hs.warnings = append(hs.warnings, fmt.Sprintf("secondary header unusable: %v", errOrMissing(sec)))
	case sec.err == nil && sec.md != nil:
		chosen = sec
		hs.warnings = append(hs.warnings, fmt.Sprintf("primary header unusable (%v); using the secondary header at offset %d", prim.err, sec.off))
	default:
		return nil, noHeaderError(prim, sec)
	}
	hs.hdr, hs.md = chosen.h, chosen.md
	if hs.md.unsupported != nil {
		return nil, hs.md.unsupported
	}
	return hs, nil
}

func errOrMissing(c headerCopy) error {
	if c.err != nil {
		return c.err
	}
	return errors.New("not found")
}

// noHeaderError classifies the failure when no copy is valid.
func noHeaderError(prim, sec headerCopy) error {
	err := errors.Join(prim.err, sec.err)
	switch {
	case errors.Is(prim.err, ErrTruncated) || errors.Is(sec.err, ErrTruncated):
		return fmt.Errorf("%w (%v)", ErrTruncated, err)
	case errors.Is(prim.err, ErrNotLUKS2) && !sec.magic:
		return prim.err // no LUKS2 anywhere (blank, LUKS1, other data)
	case !prim.magic && !sec.magic:
		return fmt.Errorf("%w: %v", ErrNotLUKS2, err)
	case errors.Is(prim.err, ErrCorrupt) || errors.Is(sec.err, ErrCorrupt) || errors.Is(prim.err, ErrNotLUKS2):
		return fmt.Errorf("%w: no valid header copy (%v); restore a header backup", ErrCorrupt, err)
	}
	return err // I/O errors
}

// checkDeviceSize checks that the device holds everything up to the end
// of the data segment.
func (hs *headerState) checkDeviceSize() error {
	md := hs.md
	need := md.segOffset
	if md.segSize > 0 {
		need += md.segSize
	}
	if hs.devSize < need {
		return fmt.Errorf("%w: device is %d bytes but the volume needs %d (data offset %d)", ErrTruncated, hs.devSize, need, md.segOffset)
	}
	return nil
}
