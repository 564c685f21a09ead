package luks2

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"sync"
)

// Volume is an opened LUKS2 header. Methods are safe for concurrent use;
// they serialize on an internal mutex. A Volume does not own its Storage:
// the caller closes it.
type Volume struct {
	st   Storage
	rand io.Reader

	mu struct {
		sync.Mutex
		hs *headerState
	}
}

// Open reads both header copies from st, verifies their checksums and
// metadata, and uses the valid copy with the highest seqid. If one copy is
// damaged or outdated, Warnings says so; the next write operation repairs
// it. Open never writes.
//
// Errors: ErrNotLUKS2, ErrCorrupt (no valid copy), ErrTruncated (device
// smaller than the header areas or the data offset), ErrUnsupported.
func Open(st Storage) (*Volume, error) {
	hs, err := load(st)
	if err != nil {
		return nil, err
	}
	v := &Volume{st: st, rand: rand.Reader}
	v.mu.hs = hs
	return v, nil
}

func (v *Volume) state() *headerState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mu.hs
}

// Warnings lists problems found when the header was last read (a damaged
// or outdated copy). Empty when both copies are valid and agree.
func (v *Volume) Warnings() []string { return slices.Clone(v.state().warnings) }

// DataOffset is the byte offset of the encrypted data on the device.
func (v *Volume) DataOffset() int64 { return v.state().md.segOffset }

// DataSize is the size of the encrypted data in bytes: the fixed segment
// size, or (for "dynamic") the device size minus the data offset.
func (v *Volume) DataSize() (int64, error) {
	md := v.state().md
	if md.segSize >= 0 {
		return md.segSize, nil
	}
	n, err := v.st.Size()
	if err != nil {
		return 0, fmt.Errorf("luks2: device size: %w", err)
	}
	if n < md.segOffset {
		return 0, fmt.Errorf("%w: device is %d bytes, data offset is %d", ErrTruncated, n, md.segOffset)
	}
	n -= md.segOffset
	return n - n%int64(md.sectorSize), nil
}

// SectorSize is the data encryption sector size (512 or 4096).
func (v *Volume) SectorSize() int { return v.state().md.sectorSize }

// KeyBits is the volume key size in bits (256 or 512 for aes-xts), or 0
// when no keyslot is left to tell (after Erase).
func (v *Volume) KeyBits() int { return 8 * v.state().md.keyBytes() }

// Cipher is the data cipher, "aes-xts-plain64".
func (v *Volume) Cipher() string { return v.state().md.encryption }

// UUID is the volume UUID.
func (v *Volume) UUID() string { return v.state().hdr.uuid }

// Label is the volume label (may be empty).
func (v *Volume) Label() string { return v.state().hdr.label }

// Keyslots lists the used keyslot numbers in ascending order.
func (v *Volume) Keyslots() []int { return v.state().md.sortedSlots() }

// unlockOrder lists the segment's keyslots to try: high priority first,
// then normal; priority-ignore slots are skipped.
func (md *metadata) unlockOrder() []*keyslot {
	d := md.segmentDigest()
	if d == nil {
		return nil
	}
	var out []*keyslot
	for _, p := range []int{PriorityHigh, PriorityNormal} {
		for _, id := range md.sortedSlots() {
			ks := md.slots[id]
			if ks.priority == p && ks.digest == d.id {
				out = append(out, ks)
			}
		}
	}
	return out
}

// Unlock tries the keyslots (by priority, then number) with passphrase and
// returns the volume key and the keyslot that opened. The caller owns the
// key and should zero it when done. Unlock never writes.
func (v *Volume) Unlock(passphrase []byte) (key []byte, slot int, err error) {
	hs := v.state()
	d := hs.md.segmentDigest()
	order := hs.md.unlockOrder()
	if d == nil || len(order) == 0 {
		return nil, -1, fmt.Errorf("%w: the volume has no usable keyslot", ErrWrongPassphrase)
	}
	for _, ks := range order {
		key, err := tryKeyslot(v.st, ks, d, passphrase)
		if err != nil {
			return nil, -1, err
		}
		if key != nil {
			return key, ks.id, nil
		}
	}
	return nil, -1, fmt.Errorf("%w (tried %d keyslots)", ErrWrongPassphrase, len(order))
}

// tryKeyslot returns the volume key if passphrase opens ks and the result
// matches d, nil if it does not, or an error (I/O).
func tryKeyslot(st Storage, ks *keyslot, d *digest, passphrase []byte) ([]byte, error) {
	key, err := openKeyslot(st, ks, passphrase)
	if err != nil {
		return nil, err
	}
	ok, err := verifyDigest(d, key)
	if err != nil || !ok {
		clear(key)
		return nil, err
	}
	return key, nil
}

// UnlockSlot is Unlock restricted to one keyslot (any priority).
func (v *Volume) UnlockSlot(passphrase []byte, slot int) ([]byte, error) {
	hs := v.state()
	ks, ok := hs.md.slots[slot]
	if !ok {
		return nil, fmt.Errorf("%w: keyslot %d is not in use", ErrNoSuchSlot, slot)
	}
	d := hs.md.digs[ks.digest]
	if d == nil {
		return nil, fmt.Errorf("%w: keyslot %d has no digest", ErrCorrupt, slot)
	}
	key, err := tryKeyslot(v.st, ks, d, passphrase)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("%w (keyslot %d)", ErrWrongPassphrase, slot)
	}
	return key, nil
}

// refreshLocked re-reads and verifies the header before a write.
func (v *Volume) refreshLocked() (*headerState, error) {
	hs, err := load(v.st)
	if err != nil {
		return nil, err
	}
	if hs.hdr.uuid != v.mu.hs.hdr.uuid {
		return nil, fmt.Errorf("%w: UUID is now %s, was %s", ErrChanged, hs.hdr.uuid, v.mu.hs.hdr.uuid)
	}
	v.mu.hs = hs
	return hs, nil
}

// checkKeyLocked verifies a volume key against the segment digest.
func checkKey(md *metadata, key []byte) (*digest, error) {
	d := md.segmentDigest()
	if d == nil {
		return nil, corruptf("no digest for the data segment")
	}
	if n := md.keyBytes(); (n != 0 && len(key) != n) || (len(key) != 32 && len(key) != 64) {
		return nil, fmt.Errorf("%w: key is %d bits, the volume uses %d", ErrWrongKey, 8*len(key), 8*n)
	}
	ok, err := verifyDigest(d, key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrWrongKey
	}
	return d, nil
}

// AddKey stores volumeKey in a new keyslot opened by newPassphrase. slot
// -1 picks the first free keyslot. A zero kdf means the defaults (see
// PBKDF). The key is checked against the volume digest first (ErrWrongKey).
// The keyslot area is written and synced before the metadata.
func (v *Volume) AddKey(volumeKey, newPassphrase []byte, slot int, kdf PBKDF) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	hs, err := v.refreshLocked()
	if err != nil {
		return -1, err
	}
	md := hs.md
	d, err := checkKey(md, volumeKey)
	if err != nil {
		return -1, err
	}
	if slot == -1 {
		if slot = md.freeSlot(); slot < 0 {
			return -1, fmt.Errorf("%w: all %d keyslots are used", ErrNoSpace, maxKeyslots)
		}
	} else if slot < 0 || slot >= maxKeyslots {
		return -1, fmt.Errorf("%w: keyslot %d out of range 0..%d", ErrNoSuchSlot, slot, maxKeyslots-1)
	} else if _, used := md.keyslots.get(strconv.Itoa(slot)); used {
		return -1, fmt.Errorf("%w: keyslot %d", ErrSlotInUse, slot)
	}
	sk, err := v.sealLocked(hs, volumeKey, newPassphrase, kdf, nil)
	if err != nil {
		return -1, err
	}
	nmd := md.cloneObjects()
	nmd.keyslots.set(strconv.Itoa(slot), mustRaw(sk.json))
	if err := nmd.assignKeyslot(d.id, slot); err != nil {
		return -1, err
	}
	return slot, v.commitLocked(hs, nmd)
}

// sealLocked seals volumeKey with passphrase into a newly allocated keyslot
// area and writes that area (synced) before any metadata refers to it. A
// non-nil replaced keyslot passes on its priority. The returned keyslot's
// area buffer is already zeroed.
func (v *Volume) sealLocked(hs *headerState, volumeKey, passphrase []byte, kdf PBKDF, replaced *keyslot) (*sealedKeyslot, error) {
	kdf, err := kdf.resolve()
	if err != nil {
		return nil, err
	}
	size := areaSizeFor(len(volumeKey))
	off, ok := hs.md.allocArea(int64(hs.hdr.hdrSize), size, -1)
	if !ok {
		return nil, fmt.Errorf("%w: keyslots area has no free %d bytes", ErrNoSpace, size)
	}
	sk, err := sealKeyslot(volumeKey, passphrase, kdf, off, size, v.rand)
	if err != nil {
		return nil, err
	}
	defer clear(sk.area)
	if replaced != nil && replaced.priority != PriorityNormal {
		p := replaced.priority
		sk.json.Priority = &p
	}
	if err := writeSync(v.st, sk.area, off); err != nil {
		return nil, err
	}
	return sk, nil
}

// ChangeKey replaces the passphrase of the keyslot oldPassphrase opens, as
// cryptsetup luksChangeKey does: the same keyslot number gets a new area
// and KDF salt (and kdf parameters; zero = defaults). The new area is
// written first, then the metadata, then the old area is wiped, so a crash
// leaves either the old or the new passphrase working.
func (v *Volume) ChangeKey(oldPassphrase, newPassphrase []byte, kdf PBKDF) (slot int, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	hs, err := v.refreshLocked()
	if err != nil {
		return -1, err
	}
	md := hs.md
	d := md.segmentDigest()
	var key []byte
	var old *keyslot
	for _, ks := range md.unlockOrder() {
		if key, err = tryKeyslot(v.st, ks, d, oldPassphrase); err != nil {
			return -1, err
		}
		if key != nil {
			old = ks
			break
		}
	}
	if old == nil {
		return -1, ErrWrongPassphrase
	}
	defer clear(key)
	sk, err := v.sealLocked(hs, key, newPassphrase, kdf, old)
	if err != nil {
		return -1, err
	}
	nmd := md.cloneObjects()
	nmd.keyslots.set(strconv.Itoa(old.id), mustRaw(sk.json))
	if err := v.commitLocked(hs, nmd); err != nil {
		return -1, err
	}
	if err := v.wipeArea(old.areaOffset, old.areaSize); err != nil {
		return old.id, fmt.Errorf("luks2: keyslot %d changed, but wiping its old area failed: %w", old.id, err)
	}
	return old.id, nil
}

// RemoveKey wipes keyslot slot's area (random overwrite, then sync) and
// removes it from the metadata (and from digests and tokens referring to
// it). It refuses to remove the last keyslot that opens the data segment
// (ErrLastKeyslot); use ForceRemoveKey or Erase for that.
func (v *Volume) RemoveKey(slot int) error { return v.removeKey(slot, false) }

// ForceRemoveKey is RemoveKey without the last-keyslot check. Removing the
// last keyslot makes the data unrecoverable without a header backup.
func (v *Volume) ForceRemoveKey(slot int) error { return v.removeKey(slot, true) }

func (v *Volume) removeKey(slot int, force bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	hs, err := v.refreshLocked()
	if err != nil {
		return err
	}
	md := hs.md
	ks, ok := md.slots[slot]
	if !ok {
		return fmt.Errorf("%w: keyslot %d is not in use", ErrNoSuchSlot, slot)
	}
	if !force {
		if d := md.segmentDigest(); d != nil && ks.digest == d.id && len(d.keyslots) == 1 {
			return fmt.Errorf("%w: keyslot %d is the only one that opens the volume", ErrLastKeyslot, slot)
		}
	}
	if err := v.wipeArea(ks.areaOffset, ks.areaSize); err != nil {
		return err
	}
	nmd := md.cloneObjects()
	if err := nmd.dropKeyslot(slot); err != nil {
		return err
	}
	return v.commitLocked(hs, nmd)
}

// Erase destroys every keyslot (cryptsetup erase): each area is
// overwritten with random data and synced, then the metadata is rewritten
// without keyslots. Digests, segment and tokens stay. The data can no
// longer be decrypted unless a header backup or the volume key exists.
func (v *Volume) Erase() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	hs, err := v.refreshLocked()
	if err != nil {
		return err
	}
	md := hs.md
	nmd := md.cloneObjects()
	for _, id := range md.sortedSlots() {
		ks := md.slots[id]
		if err := v.wipeArea(ks.areaOffset, ks.areaSize); err != nil {
			return err
		}
		if err := nmd.dropKeyslot(id); err != nil {
			return err
		}
	}
	return v.commitLocked(hs, nmd)
}

// wipeArea overwrites [off, off+size) with random data and syncs.
func (v *Volume) wipeArea(off, size int64) error {
	buf := make([]byte, min(size, 1<<20))
	for done := int64(0); done < size; {
		n := min(int64(len(buf)), size-done)
		if _, err := io.ReadFull(v.rand, buf[:n]); err != nil {
			return fmt.Errorf("luks2: random wipe data: %w", err)
		}
		if _, err := v.st.WriteAt(buf[:n], off+done); err != nil {
			return fmt.Errorf("luks2: wipe keyslot area at %d: %w", off+done, err)
		}
		done += n
	}
	if err := v.st.Sync(); err != nil {
		return fmt.Errorf("luks2: sync after wipe: %w", err)
	}
	return nil
}

func writeSync(st Storage, b []byte, off int64) error {
	if _, err := st.WriteAt(b, off); err != nil {
		return fmt.Errorf("luks2: write at %d: %w", off, err)
	}
	if err := st.Sync(); err != nil {
		return fmt.Errorf("luks2: sync: %w", err)
	}
	return nil
}

// commitLocked validates nmd, writes both header copies with seqid+1 and
// makes the result the volume's state.
func (v *Volume) commitLocked(hs *headerState, nmd *metadata) error {
	nhs, err := writeHeaders(v.st, hs, nmd, v.rand)
	if err != nil {
		return err
	}
	v.mu.hs = nhs
	return nil
}

// writeHeaders encodes nmd, checks it parses back, and writes the primary
// copy, syncs, then the secondary copy, syncs (crash-safe order: the
// previous state survives in at least one copy). A copy that was damaged
// gets a fresh salt.
func writeHeaders(st Storage, hs *headerState, nmd *metadata, rnd io.Reader) (*headerState, error) {
	text, err := nmd.encode()
	if err != nil {
		return nil, fmt.Errorf("luks2: encode metadata: %w", err)
	}
	hdrSize := int64(hs.hdr.hdrSize)
	if int64(len(text))+1 > hdrSize-binHeaderSize {
		return nil, fmt.Errorf("%w: metadata JSON is %d bytes, the area holds %d", ErrNoSpace, len(text), hdrSize-binHeaderSize-1)
	}
	md, err := parseMetadata(text, hdrSize)
	if err != nil {
		return nil, fmt.Errorf("luks2: internal error, new metadata invalid: %w", err)
	}
	if md.unsupported != nil {
		return nil, md.unsupported
	}
	nhs := &headerState{hdr: hs.hdr, md: md, salts: hs.salts, haveSalt: hs.haveSalt, devSize: hs.devSize}
	nhs.hdr.seqID++
	if nhs.hdr.checksumAlg == "" {
		nhs.hdr.checksumAlg = "sha256"
	}
	area := make([]byte, hdrSize)
	for i := range 2 {
		if !nhs.haveSalt[i] {
			if _, err := io.ReadFull(rnd, nhs.salts[i][:]); err != nil {
				return nil, fmt.Errorf("luks2: random header salt: %w", err)
			}
			nhs.haveSalt[i] = true
		}
		h := nhs.hdr
		h.secondary = i == 1
		h.hdrOffset = uint64(i) * uint64(hdrSize)
		h.salt = nhs.salts[i]
		clear(area)
		encodeBinHeader(area, h)
		copy(area[binHeaderSize:], text)
		if err := setChecksum(h.checksumAlg, area); err != nil {
			return nil, err
		}
		if err := writeSync(st, area, int64(h.hdrOffset)); err != nil {
			return nil, fmt.Errorf("luks2: write header copy %d: %w", i, err)
		}
	}
	return nhs, nil
}

// cloneObjects returns a metadata whose objects can be edited without
// changing md (decoded views are not copied; writeHeaders re-parses).
func (md *metadata) cloneObjects() *metadata {
	return &metadata{
		root: md.root.clone(), keyslots: md.keyslots.clone(), tokens: md.tokens.clone(),
		segments: md.segments.clone(), digests: md.digests.clone(), config: md.config.clone(),
	}
}

// freeSlot returns the lowest unused keyslot number, or -1.
func (md *metadata) freeSlot() int {
	for i := range maxKeyslots {
		if _, used := md.keyslots.get(strconv.Itoa(i)); !used {
			return i
		}
	}
	return -1
}

// allocArea finds the first gap of size bytes (4096-aligned) in the
// keyslots area, ignoring keyslot skip.
func (md *metadata) allocArea(hdrSize, size int64, skip int) (int64, bool) {
	start, end := 2*hdrSize, 2*hdrSize+md.keyslotsSize
	type span struct{ off, end int64 }
	var used []span
	for id, ks := range md.slots {
		if id != skip {
			used = append(used, span{ks.areaOffset, ks.areaOffset + ks.areaSize})
		}
	}
	sort.Slice(used, func(i, j int) bool { return used[i].off < used[j].off })
	cand := start
	for _, u := range used {
		if cand+size <= u.off {
			break
		}
		cand = max(cand, (u.end+keyslotsAlign-1)/keyslotsAlign*keyslotsAlign)
	}
	if cand+size > end {
		return 0, false
	}
	return cand, true
}

// editList rewrites the string-array member name of JSON object raw.
func editList(raw json.RawMessage, name string, f func([]string) []string) (json.RawMessage, error) {
	o, err := parseObject(raw)
	if err != nil {
		return nil, err
	}
	var list []string
	if r, ok := o.get(name); ok {
		if err := json.Unmarshal(r, &list); err != nil {
			return nil, err
		}
	} else {
		return raw, nil
	}
	list = f(list)
	if list == nil {
		list = []string{}
	}
	o.set(name, mustRaw(list))
	return o.MarshalJSON()
}

// assignKeyslot adds keyslot slot to digest id.
func (md *metadata) assignKeyslot(id string, slot int) error {
	raw, ok := md.digests.get(id)
	if !ok {
		return corruptf("digest %s missing", id)
	}
	s := strconv.Itoa(slot)
	nraw, err := editList(raw, "keyslots", func(l []string) []string {
		l = append(l, s)
		sort.Slice(l, func(i, j int) bool { a, _ := strconv.Atoi(l[i]); b, _ := strconv.Atoi(l[j]); return a < b })
		return l
	})
	if err != nil {
		return corruptf("digest %s: %v", id, err)
	}
	md.digests.set(id, nraw)
	return nil
}

// dropKeyslot removes keyslot slot and every digest or token reference to
// it (as cryptsetup does, so the header stays valid for it).
func (md *metadata) dropKeyslot(slot int) error {
	s := strconv.Itoa(slot)
	md.keyslots.del(s)
	drop := func(l []string) []string {
		return slices.DeleteFunc(l, func(x string) bool { return x == s })
	}
	for _, obj := range []*object{md.digests, md.tokens} {
		for i := range obj.m {
			nraw, err := editList(obj.m[i].val, "keyslots", drop)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, obj.m[i].key, err)
			}
			obj.m[i].val = nraw
		}
	}
	return nil
}
