package luks2

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

const (
	// maxKeyslots is the LUKS2 keyslot limit (cryptsetup LUKS2_KEYSLOTS_MAX).
	maxKeyslots = 32
	// maxTokens is the LUKS2 token limit.
	maxTokens = 32
	// keyslotsAlign is the alignment of the keyslots area and of areas
	// this package allocates.
	keyslotsAlign = 4096
	// maxAreaSize bounds a keyslot area (cryptsetup's keyslots area is at
	// most 128 MiB), which bounds what Unlock reads and allocates.
	maxAreaSize = 128 << 20
	// Argon2 limits cryptsetup enforces; they also bound what a hostile
	// header can make Unlock allocate.
	maxArgonMemoryKiB = 4 << 20
	minArgonMemoryKiB = 32
	maxArgonThreads   = 16
	maxKDFIterations  = 1<<31 - 1
)

// JSON shapes of the metadata parts this package understands. Field order
// follows what cryptsetup writes.

type jsonAF struct {
	Type    string `json:"type"`
	Stripes int    `json:"stripes"`
	Hash    string `json:"hash"`
}

type jsonArea struct {
	Type       string `json:"type"`
	Offset     string `json:"offset"`
	Size       string `json:"size"`
	Encryption string `json:"encryption"`
	KeySize    int    `json:"key_size"`
}

type jsonKDF struct {
	Type       string `json:"type"`
	Hash       string `json:"hash,omitempty"`
	Iterations int64  `json:"iterations,omitempty"`
	Time       int64  `json:"time,omitempty"`
	Memory     int64  `json:"memory,omitempty"`
	CPUs       int64  `json:"cpus,omitempty"`
	Salt       string `json:"salt"`
}

type jsonKeyslot struct {
	Type     string   `json:"type"`
	KeySize  int      `json:"key_size"`
	AF       jsonAF   `json:"af"`
	Area     jsonArea `json:"area"`
	KDF      jsonKDF  `json:"kdf"`
	Priority *int     `json:"priority,omitempty"`
}

type jsonSegment struct {
	Type       string          `json:"type"`
	Offset     string          `json:"offset"`
	Size       string          `json:"size"`
	IVTweak    string          `json:"iv_tweak"`
	Encryption string          `json:"encryption"`
	SectorSize int             `json:"sector_size"`
	Integrity  json.RawMessage `json:"integrity,omitempty"`
	Flags      []string        `json:"flags,omitempty"`
}

type jsonDigest struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations int64    `json:"iterations"`
	Salt       string   `json:"salt"`
	Digest     string   `json:"digest"`
}

type jsonConfig struct {
	JSONSize     string   `json:"json_size"`
	KeyslotsSize string   `json:"keyslots_size"`
	Flags        []string `json:"flags,omitempty"`
	Requirements *struct {
		Mandatory []string `json:"mandatory"`
	} `json:"requirements,omitempty"`
}

// Priority of a keyslot (LUKS2 keyslot "priority").
const (
	PriorityIgnore = 0 // never tried by Unlock; only by UnlockSlot
	PriorityNormal = 1 // default
	PriorityHigh   = 2 // tried before normal keyslots
)

// keyslot is a validated luks2 keyslot.
type keyslot struct {
	id         int
	keySize    int // volume key bytes
	stripes    int
	afHash     string
	areaOffset int64
	areaSize   int64
	areaKey    int // keyslot-area cipher key bytes (aes-xts: 32 or 64)
	kdf        PBKDF
	salt       []byte
	priority   int
	digest     string // id of the digest this keyslot is assigned to
}

// digest is a validated pbkdf2 digest.
type digest struct {
	id         string
	keyslots   []int
	segments   []string
	hash       string
	iterations int
	salt       []byte
	digest     []byte
}

// metadata is one parsed and validated JSON area. The objects are the
// source of truth for writing; the decoded views are for reading.
type metadata struct {
	root, keyslots, tokens, segments, digests, config *object

	slots        map[int]*keyslot
	digs         map[string]*digest
	segID        string
	segOffset    int64
	segSize      int64 // -1 = dynamic
	sectorSize   int
	encryption   string
	jsonSize     int64
	keyslotsSize int64
	flags        []string

	// unsupported is set when the metadata is well-formed but uses a
	// feature this package does not implement.
	unsupported error
}

// parseU64 parses a LUKS2 "string number": decimal digits only.
func parseU64(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return n, nil
}

// parseID parses an object id ("0", "1", ...) in [0, limit).
func parseID(s string, limit int) (int, error) {
	n, err := parseU64(s)
	if err != nil || n >= int64(limit) || strconv.FormatInt(n, 10) != s {
		return 0, fmt.Errorf("bad id %q", s)
	}
	return int(n), nil
}

func decodeB64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(s)
}

func corruptf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

func unsupportedf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, a...))
}

func getObject(parent *object, name string) (*object, error) {
	raw, ok := parent.get(name)
	if !ok {
		return nil, corruptf("metadata has no %q object", name)
	}
	o, err := parseObject(raw)
	if err != nil {
		return nil, corruptf("metadata %q: %v", name, err)
	}
	return o, nil
}

// decodeStrict decodes raw into v, reporting type mismatches as corruption.
func decodeStrict(raw json.RawMessage, v any, what string) error {
	if err := unmarshalExact(raw, v); err != nil {
		return corruptf("%s: %v", what, err)
	}
	return nil
}

// parseMetadata decodes and validates the JSON text of one header copy
// whose header size is hdrSize. Structural problems return ErrCorrupt;
// unsupported features are recorded in md.unsupported.
func parseMetadata(text []byte, hdrSize int64) (*metadata, error) {
	root, err := parseObject(text)
	if err != nil {
		return nil, corruptf("metadata JSON: %v", err)
	}
	md := &metadata{root: root, slots: map[int]*keyslot{}, digs: map[string]*digest{}}
	for _, p := range []struct {
		dst  **object
		name string
	}{{&md.keyslots, "keyslots"}, {&md.tokens, "tokens"}, {&md.segments, "segments"}, {&md.digests, "digests"}, {&md.config, "config"}} {
		if *p.dst, err = getObject(root, p.name); err != nil {
			return nil, err
		}
	}
	var unsup []error
	if err := md.parseConfig(hdrSize, &unsup); err != nil {
		return nil, err
	}
	if err := md.parseKeyslots(hdrSize, &unsup); err != nil {
		return nil, err
	}
	if err := md.parseSegments(hdrSize, &unsup); err != nil {
		return nil, err
	}
	if err := md.parseDigests(&unsup); err != nil {
		return nil, err
	}
	if err := md.parseTokens(); err != nil {
		return nil, err
	}
	if len(unsup) > 0 {
		md.unsupported = errors.Join(unsup...)
	}
	return md, nil
}

func (md *metadata) parseConfig(hdrSize int64, unsup *[]error) error {
	var c jsonConfig
	raw, _ := md.root.get("config")
	if err := decodeStrict(raw, &c, "config"); err != nil {
		return err
	}
	js, err := parseU64(c.JSONSize)
	if err != nil {
		return corruptf("config json_size: %v", err)
	}
	if js != hdrSize-binHeaderSize {
		return corruptf("config json_size %d does not match header size %d", js, hdrSize)
	}
	ks, err := parseU64(c.KeyslotsSize)
	if err != nil {
		return corruptf("config keyslots_size: %v", err)
	}
	if ks%keyslotsAlign != 0 || ks > 1<<40 {
		return corruptf("config keyslots_size %d is not a multiple of 4096", ks)
	}
	md.jsonSize, md.keyslotsSize, md.flags = js, ks, c.Flags
	if c.Requirements != nil && len(c.Requirements.Mandatory) > 0 {
		*unsup = append(*unsup, unsupportedf("volume has mandatory requirements %q (reencryption in progress or a newer LUKS2 feature); finish or handle it with cryptsetup", c.Requirements.Mandatory))
	}
	return nil
}

func (md *metadata) parseKeyslots(hdrSize int64, unsup *[]error) error {
	areaStart := 2 * hdrSize
	areaEnd := areaStart + md.keyslotsSize
	type span struct{ off, end int64 }
	var spans []span
	for _, m := range md.keyslots.m {
		id, err := parseID(m.key, maxKeyslots)
		if err != nil {
			return corruptf("keyslot: %v", err)
		}
		var typ struct {
			Type string `json:"type"`
		}
		if err := decodeStrict(m.val, &typ, "keyslot "+m.key); err != nil {
			return err
		}
		if typ.Type != "luks2" {
			*unsup = append(*unsup, unsupportedf("keyslot %d has type %q (only luks2 is supported)", id, typ.Type))
			continue
		}
		var j jsonKeyslot
		if err := decodeStrict(m.val, &j, "keyslot "+m.key); err != nil {
			return err
		}
		ks := &keyslot{id: id, keySize: j.KeySize, stripes: j.AF.Stripes, afHash: j.AF.Hash, areaKey: j.Area.KeySize, priority: PriorityNormal}
		if j.Priority != nil {
			if *j.Priority < PriorityIgnore || *j.Priority > PriorityHigh {
				return corruptf("keyslot %d priority %d", id, *j.Priority)
			}
			ks.priority = *j.Priority
		}
		if ks.keySize <= 0 || ks.keySize > 512 {
			return corruptf("keyslot %d key_size %d", id, ks.keySize)
		}
		if j.AF.Type != "luks1" {
			*unsup = append(*unsup, unsupportedf("keyslot %d af type %q", id, j.AF.Type))
		}
		if _, err := hashByName(j.AF.Hash); err != nil {
			*unsup = append(*unsup, unsupportedf("keyslot %d af hash %q", id, j.AF.Hash))
		}
		if ks.stripes <= 0 || ks.stripes > maxAreaSize {
			return corruptf("keyslot %d af stripes %d", id, ks.stripes)
		}
		if j.Area.Type != "raw" {
			*unsup = append(*unsup, unsupportedf("keyslot %d area type %q", id, j.Area.Type))
		}
		if j.Area.Encryption != "aes-xts-plain64" {
			*unsup = append(*unsup, unsupportedf("keyslot %d area encryption %q (only aes-xts-plain64)", id, j.Area.Encryption))
		} else if ks.areaKey != 32 && ks.areaKey != 64 {
			return corruptf("keyslot %d area key_size %d for aes-xts", id, ks.areaKey)
		}
		if ks.areaOffset, err = parseU64(j.Area.Offset); err != nil {
			return corruptf("keyslot %d area offset: %v", id, err)
		}
		if ks.areaSize, err = parseU64(j.Area.Size); err != nil {
			return corruptf("keyslot %d area size: %v", id, err)
		}
		if ks.areaSize > maxAreaSize || ks.areaOffset < areaStart || ks.areaOffset+ks.areaSize > areaEnd {
			return corruptf("keyslot %d area [%d,+%d) outside the keyslots area [%d,%d)", id, ks.areaOffset, ks.areaSize, areaStart, areaEnd)
		}
		if int64(ks.keySize)*int64(ks.stripes) > ks.areaSize {
			return corruptf("keyslot %d area size %d is smaller than key %d x %d stripes", id, ks.areaSize, ks.keySize, ks.stripes)
		}
		for _, s := range spans {
			if ks.areaOffset < s.end && s.off < ks.areaOffset+ks.areaSize {
				return corruptf("keyslot %d area overlaps another keyslot", id)
			}
		}
		spans = append(spans, span{ks.areaOffset, ks.areaOffset + ks.areaSize})
		if ks.salt, err = decodeB64(j.KDF.Salt); err != nil {
			return corruptf("keyslot %d kdf salt: %v", id, err)
		}
		if err := ks.parseKDF(j.KDF, unsup); err != nil {
			return err
		}
		md.slots[id] = ks
	}
	return nil
}

func (ks *keyslot) parseKDF(k jsonKDF, unsup *[]error) error {
	switch k.Type {
	case "pbkdf2":
		if _, err := hashByName(k.Hash); err != nil {
			*unsup = append(*unsup, unsupportedf("keyslot %d pbkdf2 hash %q", ks.id, k.Hash))
		}
		if k.Iterations < 1 || k.Iterations > maxKDFIterations {
			return corruptf("keyslot %d pbkdf2 iterations %d", ks.id, k.Iterations)
		}
		ks.kdf = PBKDF{Type: "pbkdf2", Hash: k.Hash, Iterations: int(k.Iterations)}
	case "argon2i", "argon2id":
		if k.Time < 1 || k.Time > maxKDFIterations {
			return corruptf("keyslot %d %s time %d", ks.id, k.Type, k.Time)
		}
		if k.Memory < minArgonMemoryKiB || k.Memory > maxArgonMemoryKiB {
			return corruptf("keyslot %d %s memory %d KiB (allowed %d..%d)", ks.id, k.Type, k.Memory, minArgonMemoryKiB, maxArgonMemoryKiB)
		}
		if k.CPUs < 1 || k.CPUs > maxArgonThreads {
			return corruptf("keyslot %d %s cpus %d", ks.id, k.Type, k.CPUs)
		}
		ks.kdf = PBKDF{Type: k.Type, Time: int(k.Time), MemoryKiB: int(k.Memory), Threads: int(k.CPUs)}
	default:
		*unsup = append(*unsup, unsupportedf("keyslot %d kdf %q", ks.id, k.Type))
	}
	return nil
}

func (md *metadata) parseSegments(hdrSize int64, unsup *[]error) error {
	if len(md.segments.m) == 0 {
		*unsup = append(*unsup, unsupportedf("volume has no data segment"))
		return nil
	}
	for _, m := range md.segments.m {
		if _, err := parseID(m.key, 1<<16); err != nil {
			return corruptf("segment: %v", err)
		}
	}
	if len(md.segments.m) > 1 {
		*unsup = append(*unsup, unsupportedf("volume has %d segments (reencryption?); only one is supported", len(md.segments.m)))
		return nil
	}
	m := md.segments.m[0]
	var s jsonSegment
	if err := decodeStrict(m.val, &s, "segment "+m.key); err != nil {
		return err
	}
	md.segID = m.key
	if s.Type != "crypt" {
		*unsup = append(*unsup, unsupportedf("segment type %q (only crypt)", s.Type))
		return nil
	}
	var err error
	if md.segOffset, err = parseU64(s.Offset); err != nil {
		return corruptf("segment offset: %v", err)
	}
	if s.Size == "dynamic" {
		md.segSize = -1
	} else if md.segSize, err = parseU64(s.Size); err != nil {
		return corruptf("segment size: %v", err)
	}
	if _, err := parseU64(s.IVTweak); err != nil {
		return corruptf("segment iv_tweak: %v", err)
	}
	md.encryption, md.sectorSize = s.Encryption, s.SectorSize
	switch {
	case s.Encryption != "aes-xts-plain64":
		*unsup = append(*unsup, unsupportedf("segment encryption %q (only aes-xts-plain64)", s.Encryption))
	case s.SectorSize != 512 && s.SectorSize != 4096:
		*unsup = append(*unsup, unsupportedf("segment sector size %d (only 512 and 4096)", s.SectorSize))
	case len(s.Integrity) > 0:
		*unsup = append(*unsup, unsupportedf("segment uses integrity protection"))
	case len(s.Flags) > 0:
		*unsup = append(*unsup, unsupportedf("segment flags %q (reencryption?)", s.Flags))
	case s.IVTweak != "0":
		*unsup = append(*unsup, unsupportedf("segment iv_tweak %s (only 0)", s.IVTweak))
	case md.segOffset < 2*hdrSize+md.keyslotsSize:
		*unsup = append(*unsup, unsupportedf("data offset %d lies inside the header/keyslots area ending at %d (detached header?)", md.segOffset, 2*hdrSize+md.keyslotsSize))
	case md.segOffset%int64(s.SectorSize) != 0 || (md.segSize > 0 && md.segSize%int64(s.SectorSize) != 0):
		*unsup = append(*unsup, unsupportedf("segment offset %d / size %s not aligned to sector size %d", md.segOffset, s.Size, s.SectorSize))
	}
	return nil
}

func (md *metadata) parseDigests(unsup *[]error) error {
	for _, m := range md.digests.m {
		if _, err := parseID(m.key, 1<<16); err != nil {
			return corruptf("digest: %v", err)
		}
		var j jsonDigest
		if err := decodeStrict(m.val, &j, "digest "+m.key); err != nil {
			return err
		}
		d := &digest{id: m.key, hash: j.Hash, segments: j.Segments}
		for _, k := range j.Keyslots {
			id, err := parseID(k, maxKeyslots)
			if err != nil {
				return corruptf("digest %s keyslot reference: %v", m.key, err)
			}
			ks, ok := md.slots[id]
			if !ok {
				if _, raw := md.keyslots.get(k); !raw {
					return corruptf("digest %s references missing keyslot %s", m.key, k)
				}
				continue // keyslot of an unsupported type
			}
			if ks.digest != "" {
				return corruptf("keyslot %d is assigned to two digests", id)
			}
			ks.digest = m.key
			d.keyslots = append(d.keyslots, id)
		}
		for _, s := range j.Segments {
			if _, ok := md.segments.get(s); !ok {
				return corruptf("digest %s references missing segment %s", m.key, s)
			}
		}
		if j.Type != "pbkdf2" {
			*unsup = append(*unsup, unsupportedf("digest %s type %q", m.key, j.Type))
			continue
		}
		if _, err := hashByName(j.Hash); err != nil {
			*unsup = append(*unsup, unsupportedf("digest %s hash %q", m.key, j.Hash))
		}
		if j.Iterations < 1 || j.Iterations > maxKDFIterations {
			return corruptf("digest %s iterations %d", m.key, j.Iterations)
		}
		d.iterations = int(j.Iterations)
		var err error
		if d.salt, err = decodeB64(j.Salt); err != nil {
			return corruptf("digest %s salt: %v", m.key, err)
		}
		if d.digest, err = decodeB64(j.Digest); err != nil || len(d.digest) == 0 || len(d.digest) > 64 {
			return corruptf("digest %s value is not base64 of 1..64 bytes", m.key)
		}
		md.digs[m.key] = d
	}
	if md.segID != "" && md.segmentDigest() == nil && len(*unsup) == 0 {
		return corruptf("segment %s has no digest", md.segID)
	}
	return nil
}

// segmentDigest returns the digest assigned to the data segment.
func (md *metadata) segmentDigest() *digest {
	ids := make([]string, 0, len(md.digs))
	for id := range md.digs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		for _, s := range md.digs[id].segments {
			if s == md.segID {
				return md.digs[id]
			}
		}
	}
	return nil
}

func (md *metadata) parseTokens() error {
	if len(md.tokens.m) > maxTokens {
		return corruptf("%d tokens (limit %d)", len(md.tokens.m), maxTokens)
	}
	for _, m := range md.tokens.m {
		if _, err := parseID(m.key, maxTokens); err != nil {
			return corruptf("token: %v", err)
		}
		var t struct {
			Type     string   `json:"type"`
			Keyslots []string `json:"keyslots"`
		}
		if err := decodeStrict(m.val, &t, "token "+m.key); err != nil {
			return err
		}
		if t.Type == "" {
			return corruptf("token %s has no type", m.key)
		}
		for _, k := range t.Keyslots {
			if _, ok := md.keyslots.get(k); !ok {
				return corruptf("token %s references missing keyslot %s", m.key, k)
			}
		}
	}
	return nil
}

// keyBytes returns the volume key size in bytes, from the keyslots of the
// segment's digest, or 0 if no keyslot is left.
func (md *metadata) keyBytes() int {
	d := md.segmentDigest()
	if d == nil {
		return 0
	}
	for _, id := range d.keyslots {
		return md.slots[id].keySize
	}
	return 0
}

// sortedSlots returns keyslot ids in ascending order.
func (md *metadata) sortedSlots() []int {
	ids := make([]int, 0, len(md.slots))
	for id := range md.slots {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// encode returns the JSON text of md's objects.
func (md *metadata) encode() ([]byte, error) {
	root := md.root.clone()
	for _, p := range []struct {
		o    *object
		name string
	}{{md.keyslots, "keyslots"}, {md.tokens, "tokens"}, {md.segments, "segments"}, {md.digests, "digests"}, {md.config, "config"}} {
		raw, err := p.o.MarshalJSON()
		if err != nil {
			return nil, err
		}
		root.set(p.name, raw)
	}
	return root.MarshalJSON()
}
