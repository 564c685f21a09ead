package luks2

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
)

const (
	// DefaultDataOffset is where cryptsetup puts the data: 16 MiB.
	DefaultDataOffset = 16 << 20
	// defaultKeyslotsEnd bounds the keyslots area like cryptsetup: the
	// area ends at 16 MiB even if the data starts later.
	defaultKeyslotsEnd = 16 << 20
)

// FormatOptions configures Format. Zero fields take the defaults noted.
type FormatOptions struct {
	// KeyBits is the volume key size for aes-xts-plain64: 512 (AES-256,
	// default) or 256 (AES-128).
	KeyBits int
	// SectorSize is the data encryption sector size, 512 or 4096. Default:
	// 4096 when the data area (device size - DataOffset) is a multiple of
	// 4096 bytes, else 512. An explicit 4096 on a device whose data area is
	// not a multiple of 4096 is an error.
	SectorSize int
	// DataOffset is the byte offset of the data, a multiple of 4096 and
	// large enough for both header copies and one keyslot area. Default
	// 16 MiB (cryptsetup's). The keyslots area spans from 32 KiB to
	// min(DataOffset, 16 MiB).
	DataOffset int64
	// PBKDF for keyslot 0; the zero value means argon2id with cryptsetup
	// defaults, benchmarked (about 2 s plus the benchmark itself).
	PBKDF PBKDF
	// DigestIterations is the pbkdf2-sha256 iteration count of the volume
	// key digest. Default: benchmarked to about 125 ms, at least 1000.
	DigestIterations int
	// Label and Subsystem are free-form strings of at most 47 bytes.
	Label, Subsystem string
	// UUID in the 8-4-4-4-12 hex form; default a random version 4 UUID.
	UUID string
	// Rand supplies the volume key, salts and AF stripes; default
	// crypto/rand.Reader.
	Rand io.Reader
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// resolve applies defaults and validates every field, reporting all
// problems at once.
func (o FormatOptions) resolve(devSize int64) (FormatOptions, error) {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...)))
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.KeyBits == 0 {
		o.KeyBits = 512
	}
	if o.KeyBits != 256 && o.KeyBits != 512 {
		bad("KeyBits %d: aes-xts-plain64 takes 256 or 512", o.KeyBits)
	}
	if o.DataOffset == 0 {
		o.DataOffset = DefaultDataOffset
	}
	minOff := 2*int64(defaultHdrSize) + areaSizeFor(o.KeyBits/8)
	if o.DataOffset%4096 != 0 || o.DataOffset < minOff {
		bad("DataOffset %d: must be a multiple of 4096 and at least %d", o.DataOffset, minOff)
	}
	dataArea := devSize - o.DataOffset
	switch o.SectorSize {
	case 0:
		o.SectorSize = 4096
		if dataArea%4096 != 0 {
			o.SectorSize = 512
		}
	case 512, 4096:
	default:
		bad("SectorSize %d: use 512 or 4096", o.SectorSize)
	}
	if len(o.Label) > lenLabel-1 {
		bad("Label is %d bytes, at most %d", len(o.Label), lenLabel-1)
	}
	if len(o.Subsystem) > lenSubsystem-1 {
		bad("Subsystem is %d bytes, at most %d", len(o.Subsystem), lenSubsystem-1)
	}
	if o.UUID != "" && !uuidRE.MatchString(o.UUID) {
		bad("UUID %q: want the 8-4-4-4-12 hex form", o.UUID)
	}
	if o.DigestIterations != 0 && (o.DigestIterations < minPBKDF2Iterations || o.DigestIterations > maxKDFIterations) {
		bad("DigestIterations %d: at least %d", o.DigestIterations, minPBKDF2Iterations)
	}
	if err := errors.Join(errs...); err != nil {
		return o, err
	}
	if o.SectorSize > 0 && dataArea >= 0 && dataArea%int64(o.SectorSize) != 0 {
		return o, fmt.Errorf("%w: data area of %d bytes is not a multiple of sector size %d", ErrInvalidOptions, dataArea, o.SectorSize)
	}
	if dataArea < int64(o.SectorSize) {
		return o, fmt.Errorf("%w: device is %d bytes, need more than the data offset %d", ErrTruncated, devSize, o.DataOffset)
	}
	return o, nil
}

// newUUID returns a random version 4 UUID.
func newUUID(r io.Reader) (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(r, u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}

// Format writes a new LUKS2 header to st (everything below the data offset
// is overwritten; data after it is left alone) with one keyslot (0) opened
// by passphrase, and returns the opened volume and the new volume key. The
// caller owns the key and should zero it after use. Format does not check
// for an existing header: the caller must.
func Format(st Storage, passphrase []byte, opts FormatOptions) (*Volume, []byte, error) {
	devSize, err := st.Size()
	if err != nil {
		return nil, nil, fmt.Errorf("luks2: device size: %w", err)
	}
	if opts, err = opts.resolve(devSize); err != nil {
		return nil, nil, err
	}
	kdf, err := opts.PBKDF.resolve()
	if err != nil {
		return nil, nil, err
	}
	if opts.UUID == "" {
		if opts.UUID, err = newUUID(opts.Rand); err != nil {
			return nil, nil, fmt.Errorf("luks2: random UUID: %w", err)
		}
	}
	if opts.DigestIterations == 0 {
		p, err := Benchmark(PBKDF{Type: "pbkdf2", Hash: "sha256"}, digestIterTime)
		if err != nil {
			return nil, nil, err
		}
		opts.DigestIterations = p.Iterations
	}
	key := make([]byte, opts.KeyBits/8)
	if _, err := io.ReadFull(opts.Rand, key); err != nil {
		return nil, nil, fmt.Errorf("luks2: random volume key: %w", err)
	}
	v, err := format(st, devSize, key, passphrase, kdf, opts)
	if err != nil {
		clear(key)
		return nil, nil, err
	}
	return v, key, nil
}

func format(st Storage, devSize int64, key, passphrase []byte, kdf PBKDF, opts FormatOptions) (*Volume, error) {
	const hdrSize = defaultHdrSize
	keyslotsSize := min(opts.DataOffset, defaultKeyslotsEnd) - 2*hdrSize
	if keyslotsSize < areaSizeFor(len(key)) {
		keyslotsSize = opts.DataOffset - 2*hdrSize
	}
	dsalt := make([]byte, saltSize)
	if _, err := io.ReadFull(opts.Rand, dsalt); err != nil {
		return nil, fmt.Errorf("luks2: random digest salt: %w", err)
	}
	d := &digest{hash: "sha256", iterations: opts.DigestIterations, salt: dsalt, digest: make([]byte, 32)}
	dv, err := computeDigest(d, key)
	if err != nil {
		return nil, err
	}
	areaOff := int64(2 * hdrSize)
	sk, err := sealKeyslot(key, passphrase, kdf, areaOff, areaSizeFor(len(key)), opts.Rand)
	if err != nil {
		return nil, err
	}
	defer clear(sk.area)

	md := &metadata{root: &object{}, keyslots: &object{}, tokens: &object{}, segments: &object{}, digests: &object{}, config: &object{}}
	md.keyslots.set("0", mustRaw(sk.json))
	md.segments.set("0", mustRaw(jsonSegment{Type: "crypt", Offset: strconv.FormatInt(opts.DataOffset, 10), Size: "dynamic",
		IVTweak: "0", Encryption: "aes-xts-plain64", SectorSize: opts.SectorSize}))
	md.digests.set("0", mustRaw(jsonDigest{Type: "pbkdf2", Keyslots: []string{"0"}, Segments: []string{"0"}, Hash: "sha256",
		Iterations: int64(opts.DigestIterations), Salt: base64.StdEncoding.EncodeToString(dsalt), Digest: base64.StdEncoding.EncodeToString(dv)}))
	md.config.set("json_size", mustRaw(strconv.Itoa(hdrSize-binHeaderSize)))
	md.config.set("keyslots_size", mustRaw(strconv.FormatInt(keyslotsSize, 10)))
	for _, k := range []string{"keyslots", "tokens", "segments", "digests", "config"} {
		md.root.set(k, []byte("{}"))
	}

	// Wipe the header and keyslots areas, then write the keyslot, then
	// the headers (seqid 1).
	zero := make([]byte, 1<<20)
	for off := int64(0); off < opts.DataOffset; off += int64(len(zero)) {
		n := min(int64(len(zero)), opts.DataOffset-off)
		if _, err := st.WriteAt(zero[:n], off); err != nil {
			return nil, fmt.Errorf("luks2: wipe header area at %d: %w", off, err)
		}
	}
	if _, err := st.WriteAt(sk.area, areaOff); err != nil {
		return nil, fmt.Errorf("luks2: write keyslot 0: %w", err)
	}
	if err := st.Sync(); err != nil {
		return nil, fmt.Errorf("luks2: sync: %w", err)
	}
	hs := &headerState{
		hdr:     binHeader{hdrSize: hdrSize, label: opts.Label, checksumAlg: "sha256", uuid: opts.UUID, subsystem: opts.Subsystem},
		devSize: devSize,
	}
	if _, err := writeHeaders(st, hs, md, opts.Rand); err != nil {
		return nil, err
	}
	v, err := Open(st)
	if err != nil {
		return nil, fmt.Errorf("luks2: reading back the new header: %w", err)
	}
	v.rand = opts.Rand
	return v, nil
}
