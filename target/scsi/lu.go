package scsi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"hastor/blockdev"
)

// Sentinel errors returned (wrapped) by NewLU and NewTarget.
var (
	// ErrInvalidConfig: an LUConfig or NewTarget argument failed
	// validation; the message names every bad field.
	ErrInvalidConfig = errors.New("invalid SCSI configuration")
	// ErrLUInUse: an LU passed to NewTarget already belongs to a target
	// (or appears twice).
	ErrLUInUse = errors.New("logical unit already belongs to a target")
)

// Defaults applied by NewLU.
const (
	DefaultVendor           = "HASTOR"
	DefaultProduct          = "hastor"
	DefaultRevision         = "0001"
	DefaultMaxTransferBytes = 8 << 20
	// maxMaxTransferBytes bounds LUConfig.MaxTransferBytes: 1 GiB keeps
	// every transfer's byte count within uint32 and buffers sane.
	maxMaxTransferBytes = 1 << 30
)

// LUConfig configures a logical unit. NewLU applies defaults and validates
// it; afterwards it is read-only.
type LUConfig struct {
	// Dev is the backing store. The LU does not own it: the caller closes
	// it once no Execute call can run any more.
	Dev blockdev.Device
	// BlockSize is the logical block length in bytes, 512 or 4096;
	// 0 means 512. Dev.Size() must be a positive multiple of it, and Dev
	// must accept I/O in units of it (blockdev.Options.BlockSize).
	BlockSize int
	// ReadOnly makes every write fail with DATA PROTECT, WRITE PROTECTED
	// (and sets WP in mode sense data).
	ReadOnly bool
	// WriteCache is the default (and initial) value of the Caching mode
	// page's WCE bit. With WCE=0 every write is durable before GOOD; with
	// WCE=1 only FUA writes are, and SYNCHRONIZE CACHE flushes the rest.
	// WCE=1 is faster but relies on the initiator issuing SYNCHRONIZE
	// CACHE (Linux does, when it sees WCE=1).
	WriteCache bool
	// FullyProvisioned turns thin provisioning off: the LU reports LBPME=0
	// and does not support UNMAP even if Dev can deallocate
	// (blockdev.Discarder), so nothing is ever deallocated.
	FullyProvisioned bool
	// PRStore, when set, keeps the persistent reservation state beyond
	// the LU (prcodec.go); otherwise Dev does if it is a PRStore, and
	// else the state lives in the LU's memory only.
	PRStore PRStore
	// VolumeID identifies the volume cluster-wide. The LU's NAA identifier
	// and unit serial number derive from it alone (DeriveIdentity), so
	// every node serving the volume reports the same identity. Required.
	VolumeID string
	// Vendor (≤ 8 bytes), Product (≤ 16) and Revision (≤ 4) fill the
	// standard INQUIRY data; printable ASCII. Defaults DefaultVendor,
	// DefaultProduct, DefaultRevision.
	Vendor, Product, Revision string
	// MaxTransferBytes is the largest data transfer, in bytes, of one
	// READ, WRITE, VERIFY or WRITE AND VERIFY command; longer ones fail
	// with INVALID FIELD IN CDB. It is reported in the Block Limits VPD
	// page, so it must not exceed what the transport can buffer per
	// command. A multiple of BlockSize from 4096 to 1 GiB; default 8 MiB.
	MaxTransferBytes int
	// Logger receives I/O errors and internal faults; default
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with defaults applied, or an error naming every
// invalid field.
func (c LUConfig) withDefaults() (LUConfig, error) {
	if c.BlockSize == 0 {
		c.BlockSize = 512
	}
	if c.Vendor == "" {
		c.Vendor = DefaultVendor
	}
	if c.Product == "" {
		c.Product = DefaultProduct
	}
	if c.Revision == "" {
		c.Revision = DefaultRevision
	}
	if c.MaxTransferBytes == 0 {
		c.MaxTransferBytes = DefaultMaxTransferBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	if c.Dev == nil {
		errs = append(errs, errors.New("field Dev: required"))
	}
	if c.BlockSize != 512 && c.BlockSize != 4096 {
		errs = append(errs, fmt.Errorf("field BlockSize %d: must be 512 or 4096", c.BlockSize))
	} else if c.Dev != nil {
		size := c.Dev.Size()
		if size <= 0 || size%int64(c.BlockSize) != 0 {
			errs = append(errs, fmt.Errorf("field Dev: size %d is not a positive multiple of BlockSize %d", size, c.BlockSize))
		}
		if bs, ok := c.Dev.(interface{ BlockSize() int }); ok && bs.BlockSize() > c.BlockSize {
			errs = append(errs, fmt.Errorf("field BlockSize %d: smaller than the device's block size %d", c.BlockSize, bs.BlockSize()))
		}
	}
	if c.VolumeID == "" {
		errs = append(errs, errors.New("field VolumeID: required"))
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"Vendor", c.Vendor, 8}, {"Product", c.Product, 16}, {"Revision", c.Revision, 4}} {
		if len(f.v) > f.max {
			errs = append(errs, fmt.Errorf("field %s %q: longer than %d bytes", f.name, f.v, f.max))
		}
		if !printableASCII(f.v) {
			errs = append(errs, fmt.Errorf("field %s %q: not printable ASCII", f.name, f.v))
		}
	}
	switch {
	case c.MaxTransferBytes < 4096 || c.MaxTransferBytes > maxMaxTransferBytes:
		errs = append(errs, fmt.Errorf("field MaxTransferBytes %d: must be from 4096 to %d", c.MaxTransferBytes, maxMaxTransferBytes))
	case c.BlockSize > 0 && c.MaxTransferBytes%c.BlockSize != 0:
		errs = append(errs, fmt.Errorf("field MaxTransferBytes %d: not a multiple of BlockSize %d", c.MaxTransferBytes, c.BlockSize))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return c, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// LU is a logical unit: a direct-access block device (SBC-3) backed by a
// blockdev.Device. All methods are safe for concurrent use.
type LU struct {
	cfg     LUConfig // validated, read-only
	dev     blockdev.Device
	fua     blockdev.FUAWriter // nil if dev cannot write with FUA
	disc    blockdev.Discarder // nil if dev cannot deallocate (not thin provisioned)
	mapper  blockdev.Mapper    // nil unless thin provisioned and dev can tell what is mapped
	medium  Medium             // nil if dev is always ready
	bs      int                // logical block length
	bshift  uint               // log2(bs)
	nblocks atomic.Uint64      // capacity in logical blocks
	maxXfer Blocks             // MAXIMUM TRANSFER LENGTH
	// MAXIMUM COMPARE AND WRITE LENGTH, MAXIMUM WRITE SAME LENGTH and
	// MAXIMUM UNMAP LBA COUNT (caw.go, provisioning.go).
	maxCAW, maxWriteSame, maxUnmap Blocks
	id                             Identity
	log                            *slog.Logger
	absent                         bool // the stand-in for LUNs a target does not have
	tgt                            atomic.Pointer[Target]
	pool                           *blockdev.Pool // scratch buffers for VERIFY and WRITE AND VERIFY

	defMode modeState
	// mode is the current mode state, read lock-free by every command;
	// replaced only under mu.
	mode atomic.Pointer[modeState]
	// res is the SPC-2 reservation state (reservation.go), nil when the
	// LU is not reserved; read lock-free by every command, replaced only
	// under mu.
	res atomic.Pointer[resState]
	// pr is the persistent reservation state (pr.go), nil until the first
	// PERSISTENT RESERVE OUT; read lock-free, replaced only under mu.
	pr atomic.Pointer[prState]
	// prStore keeps pr beyond the LU (nil: memory only); prEpoch is the
	// store's epoch that pr was loaded from. prMu serializes PERSISTENT
	// RESERVE OUT and reloads, so that each change is stored in order.
	prStore PRStore
	prEpoch atomic.Uint64
	prMu    sync.Mutex

	// stripes serializes read-modify-write commands (ORWRITE) against
	// overlapping writes (stripes.go).
	stripes stripeLocks

	// stdInquiry is the standard INQUIRY data (SPC-4 "standard INQUIRY
	// data"), built once.
	stdInquiry []byte

	mu struct {
		sync.Mutex
		// itls holds the I_T_L state of every attached I_T nexus.
		itls map[*Nexus]*itl
		// departed keeps the pending unit attentions of I_T nexuses that
		// ended (I_T NEXUS LOSS OCCURRED), for when the same initiator
		// port logs in again; bounded, oldest dropped first.
		departed      map[nexusKey]uaQueue
		departedOrder []nexusKey
	}
}

// maxDeparted bounds LU.mu.departed.
const maxDeparted = 256

// NewLU validates cfg and returns a logical unit serving cfg.Dev.
func NewLU(cfg LUConfig) (*LU, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	lu := &LU{
		cfg:     cfg,
		dev:     cfg.Dev,
		bs:      cfg.BlockSize,
		maxXfer: Blocks(cfg.MaxTransferBytes / cfg.BlockSize),
		id:      DeriveIdentity(cfg.VolumeID),
		log:     cfg.Logger,
		pool:    blockdev.NewPool(),
		defMode: modeState{WCE: cfg.WriteCache},
	}
	lu.nblocks.Store(uint64(cfg.Dev.Size()) / uint64(cfg.BlockSize))
	for 1<<lu.bshift < lu.bs {
		lu.bshift++
	}
	lu.stripes.init(lu.bshift)
	if f, ok := cfg.Dev.(blockdev.FUAWriter); ok {
		lu.fua = f
	}
	if d, ok := cfg.Dev.(blockdev.Discarder); ok && !cfg.FullyProvisioned {
		lu.disc = d
		if m, ok := cfg.Dev.(blockdev.Mapper); ok {
			lu.mapper = m
		}
	}
	lu.maxCAW = min(maxCompareAndWrite, lu.maxXfer/2)
	lu.maxWriteSame = Blocks(maxWriteSameBytes >> lu.bshift)
	lu.maxUnmap = Blocks(maxUnmapBytes >> lu.bshift)
	if m, ok := cfg.Dev.(Medium); ok {
		lu.medium = m
	}
	lu.prStore = cfg.PRStore
	if s, ok := cfg.Dev.(PRStore); ok && lu.prStore == nil {
		lu.prStore = s
	}
	lu.initCommon()
	lu.stdInquiry = lu.buildStdInquiry(0x00)
	return lu, nil
}

// newAbsentLU returns the stand-in LU of target t for LUNs it does not have
// (SAM-5 "incorrect logical unit selection"): INQUIRY reports peripheral
// qualifier 011b and device type 1Fh (SPC-4 "standard INQUIRY data").
func newAbsentLU(t *Target) *LU {
	lu := &LU{absent: true, log: slog.Default(), cfg: LUConfig{
		Vendor: DefaultVendor, Product: DefaultProduct, Revision: DefaultRevision}}
	lu.tgt.Store(t)
	lu.initCommon()
	lu.stdInquiry = lu.buildStdInquiry(0x7F)
	return lu
}

func (lu *LU) initCommon() {
	st := lu.defMode
	lu.mode.Store(&st)
	lu.mu.itls = make(map[*Nexus]*itl)
	lu.mu.departed = make(map[nexusKey]uaQueue)
}

// Identity is the identity an LU reports: in VPD page 83h (NAA designator)
// and 80h (unit serial number).
type Identity struct {
	// NAA is an NAA 6 (IEEE Registered Extended) designator, 16 bytes
	// (SPC-4 "NAA IEEE Registered Extended designator").
	NAA [16]byte
	// Serial is the PRODUCT SERIAL NUMBER of VPD page 80h: 16 uppercase
	// hexadecimal characters.
	Serial string
}

// identityCompanyID is the 24-bit IEEE company ID in our NAA designators.
// hastor has no IEEE-assigned OUI, so it uses a value shaped like a CID
// (Company ID): the low nibble of the first octet is 1010b (Z=1, Y=0,
// X=1 "locally administered", M=0), which puts it in the CID space that can
// never collide with a universally administered MA-L/OUI. 0x0AC0DE is not
// registered to anyone we know of; deployments that need guaranteed global
// uniqueness against other vendors' CIDs should buy one.
const identityCompanyID = 0x0AC0DE

// DeriveIdentity returns the identity of the volume named volumeID. It
// depends only on volumeID (through SHA-256), so every node reports
// byte-identical identities for a volume, which multipath initiators need.
// The NAA designator holds NAA=6, identityCompanyID and the first 100 bits
// of the hash (36-bit VENDOR SPECIFIC IDENTIFIER and 64-bit extension);
// the serial number is hash bytes 16..23 in hexadecimal.
func DeriveIdentity(volumeID string) Identity {
	h := sha256.Sum256([]byte("hastor/scsi/identity\x00" + volumeID))
	var id Identity
	cid := uint32(identityCompanyID)
	id.NAA[0] = 0x60 | byte(cid>>20)&0x0F // NAA 6, company ID bits 23-20
	id.NAA[1] = byte(cid >> 12)
	id.NAA[2] = byte(cid >> 4)
	id.NAA[3] = byte(cid<<4) | h[0]>>4
	for i := 4; i < 16; i++ {
		id.NAA[i] = h[i-4]<<4 | h[i-3]>>4
	}
	id.Serial = strings.ToUpper(hex.EncodeToString(h[16:24]))
	return id
}

// Identity returns the LU's identity, as reported in VPD pages 80h and 83h.
func (lu *LU) Identity() Identity { return lu.id }

// BlockSize returns the logical block length in bytes.
func (lu *LU) BlockSize() int { return lu.bs }

// Capacity returns the number of logical blocks.
func (lu *LU) Capacity() uint64 { return lu.capacity() }

func (lu *LU) capacity() uint64 { return lu.nblocks.Load() }

// SetCapacity changes the capacity to the Dev's current size, which its
// owner has changed (an encrypted replicated volume learns its size from
// a header it can read only once primary). If the capacity changed, every
// attached I_T nexus gets UNIT ATTENTION 2Ah/09h, CAPACITY DATA HAS
// CHANGED (SBC-3 "Capacity changes"). Call it while the Medium is not
// ready, so no command is using the old capacity.
func (lu *LU) SetCapacity() {
	if lu.absent {
		return
	}
	n := uint64(lu.dev.Size()) / uint64(lu.bs)
	if lu.nblocks.Swap(n) == n {
		return
	}
	lu.mu.Lock()
	lu.establishOthersLocked(nil, ascCapacityChanged)
	lu.mu.Unlock()
}

// Target returns the target the LU belongs to, or nil.
func (lu *LU) Target() *Target { return lu.tgt.Load() }

// Attach attaches the I_T nexus n to lu. The transport calls it (through
// Target.Attach) at login, before any command of n. A nexus that has not
// been seen before gets UNIT ATTENTION 29h/00h (POWER ON, RESET, OR BUS
// DEVICE RESET OCCURRED); one that re-forms an I_T nexus that ended gets
// the conditions still pending from it, e.g. 29h/07h (I_T NEXUS LOSS
// OCCURRED). Attaching twice is a no-op.
func (lu *LU) Attach(n *Nexus) { lu.attach(n) }

// attach attaches n and publishes the I_T_L state in n.
func (lu *LU) attach(n *Nexus) *itl {
	it := lu.register(n)
	if it != nil {
		n.setITL(lu, it)
	}
	return it
}

// register records n as attached to lu, without publishing the I_T_L state
// in n (the caller does, possibly in a batch). A command that arrives in
// between finds no state in n and attaches again, which returns the same
// state.
func (lu *LU) register(n *Nexus) *itl {
	if lu.absent || n == nil {
		return nil
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if it, ok := lu.mu.itls[n]; ok {
		return it
	}
	it := &itl{nexus: n}
	k := n.key()
	if q, ok := lu.mu.departed[k]; ok {
		it.mu.q = q
		delete(lu.mu.departed, k)
		for i, o := range lu.mu.departedOrder {
			if o == k {
				lu.mu.departedOrder = append(lu.mu.departedOrder[:i], lu.mu.departedOrder[i+1:]...)
				break
			}
		}
	} else {
		it.mu.q.add(ascPowerOnResetOccurred)
	}
	it.pending.Store(it.mu.q.n > 0)
	lu.mu.itls[n] = it
	return it
}

// Detach ends the I_T nexus n on lu (logout, session failure): SAM-5
// "I_T nexus loss". Its pending unit attentions, plus I_T NEXUS LOSS
// OCCURRED, are kept for the next session of the same initiator port; an
// SPC-2 reservation it holds is released. The transport calls it after the
// last command of n has completed.
func (lu *LU) Detach(n *Nexus) {
	if lu.unregister(n) {
		n.setITL(lu, nil)
	}
}

// unregister records the end of n on lu, without updating n's own map
// (the caller does, possibly in a batch). It reports whether n was
// attached.
func (lu *LU) unregister(n *Nexus) bool {
	if lu.absent || n == nil {
		return false
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	it, ok := lu.mu.itls[n]
	if !ok {
		return false
	}
	delete(lu.mu.itls, n)
	k := n.key()
	// SPC-2 reservations do not survive the I_T nexus (reservation.go).
	lu.stepReservationLocked(resEvent{kind: resNexusLoss, from: k})
	// Session reinstatement: a new session of the same I_T nexus may
	// already be attached; it inherits the condition.
	for other, oit := range lu.mu.itls {
		if other.key() == k {
			oit.establish(ascITNexusLoss)
			return true
		}
	}
	q := it.snapshot()
	q.add(ascITNexusLoss)
	if _, dup := lu.mu.departed[k]; !dup {
		if len(lu.mu.departedOrder) >= maxDeparted {
			old := lu.mu.departedOrder[0]
			lu.mu.departedOrder = lu.mu.departedOrder[1:]
			delete(lu.mu.departed, old)
		}
		lu.mu.departedOrder = append(lu.mu.departedOrder, k)
	}
	lu.mu.departed[k] = q
	return true
}

// Medium is implemented by backing devices that can be present but not
// usable, such as an encrypted volume whose key has not been supplied yet.
// While Ready returns an error, commands that access the medium (TEST UNIT
// READY, READ CAPACITY, READ, WRITE, VERIFY, SYNCHRONIZE CACHE, ...) end
// with NOT READY, LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED
// (SPC-4 "TEST UNIT READY"), and REQUEST SENSE reports that condition;
// INQUIRY, REPORT LUNS, MODE SENSE and the other commands work as usual.
// Once the device becomes ready its owner calls LU.MediumReady.
//
// A Ready error that wraps ErrStandby reports the ALUA standby state
// instead (a replicated LUN on its secondary node): NOT READY, LOGICAL UNIT
// NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE (SPC-4 "Asymmetric logical
// unit access"), which multipath initiators treat as a path to use later,
// not as a lost device.
type Medium interface {
	Ready() error
}

// ErrStandby is the error a Medium's Ready wraps while its LU is in the
// ALUA standby state.
var ErrStandby = errors.New("logical unit in standby state")

// mediumSense returns the sense for a Medium that is not ready.
func mediumSense(err error) senseErr {
	if errors.Is(err, ErrStandby) {
		return errStandby
	}
	return errNeedsUnlock
}

// MediumReady tells the LU that its Medium has become ready: every attached
// I_T nexus that was told NOT READY gets UNIT ATTENTION 28h/00h, NOT READY
// TO READY CHANGE, MEDIUM MAY HAVE CHANGED (SPC-4 "unit attention
// condition"), so it re-reads the capacity. Execute does the same on such a
// nexus's next command if it comes first, so the condition is established
// exactly once, before the nexus sees the Medium ready, and never for a
// nexus that only saw it ready (one that logged in after the change).
func (lu *LU) MediumReady() {
	if lu.absent || lu.medium == nil {
		return
	}
	lu.mu.Lock()
	for _, it := range lu.mu.itls {
		lu.noteReady(it)
	}
	lu.mu.Unlock()
}

// noteReady establishes 28h/00h for it if it was told NOT READY and the
// Medium is ready now.
func (lu *LU) noteReady(it *itl) {
	if it.toldNotReady.Load() && lu.medium.Ready() == nil && it.toldNotReady.CompareAndSwap(true, false) {
		it.establish(ascNotReadyToReady)
	}
}

// mediumNotReady returns the sense for the Medium's Ready error err and
// records that it's nexus was told.
func mediumNotReady(it *itl, err error) senseErr {
	if it != nil {
		it.toldNotReady.Store(true)
	}
	return mediumSense(err)
}

// CommandsCleared establishes UNIT ATTENTION 2Fh/00h, COMMANDS CLEARED BY
// ANOTHER INITIATOR, for I_T nexus n: the transport calls it when another
// I_T nexus's CLEAR TASK SET aborted commands of n (SAM-5 "CLEAR TASK SET",
// with TAS 0 in the Control mode page, as this LU reports).
func (lu *LU) CommandsCleared(n *Nexus) {
	if lu.absent || n == nil {
		return
	}
	if it := n.itlFor(lu); it != nil {
		it.establish(ascCommandsCleared)
	}
}

// Reset performs the LU-state effects of LOGICAL UNIT RESET (SAM-5 "logical
// unit reset"): mode parameters return to their defaults, an SPC-2
// reservation is released, and every attached I_T nexus, including from, gets
// UNIT ATTENTION 29h/03h (BUS DEVICE RESET FUNCTION OCCURRED). Aborting the LU's tasks is the transport's job; it calls Reset
// once they are gone. from may be nil.
func (lu *LU) Reset(from *Nexus) { lu.reset(ascBusDeviceReset) }

func (lu *LU) reset(ua ascCode) {
	if lu.absent {
		return
	}
	lu.mu.Lock()
	old := *lu.mode.Load()
	lu.commitModeLocked(old.next(modeEvent{kind: modeReset}, lu.defMode))
	lu.stepReservationLocked(resEvent{kind: resReset})
	for _, it := range lu.mu.itls {
		it.establish(ua)
	}
	lu.mu.Unlock()
	lu.afterModeChange(old)
}

// commitModeLocked installs st as the current mode state.
func (lu *LU) commitModeLocked(st modeState) {
	lu.mode.Store(&st)
}

// afterModeChange performs the side effects of leaving mode state old: when the
// write cache was just disabled, data it acknowledged is flushed so that every
// acknowledged write is durable from now on (SBC-3 "write caching").
func (lu *LU) afterModeChange(old modeState) error {
	if !old.WCE || lu.mode.Load().WCE {
		return nil
	}
	if err := lu.dev.Flush(); err != nil {
		lu.log.Error("scsi: flush after disabling the write cache failed", "volume", lu.cfg.VolumeID, "err", err)
		return err
	}
	return nil
}

// establishOthersLocked establishes UA a for every attached I_T nexus but from.
func (lu *LU) establishOthersLocked(from *Nexus, a ascCode) {
	for n, it := range lu.mu.itls {
		if n != from {
			it.establish(a)
		}
	}
}

// fail returns the CHECK CONDITION response for e in the format selected
// by D_SENSE.
func (lu *LU) fail(e senseErr) Response {
	if e == errAborted {
		return Response{Status: StatusTaskAborted}
	}
	return e.response(lu.mode.Load().DSense)
}

// Execute runs cmd, decoded by lu.Decode, for the I_T nexus n, and returns
// its status and sense data.
//
// data is the command's data buffer. For DirWrite it holds the data-out
// bytes received; if the initiator's expected data transfer length was
// smaller than cmd.DataLen, data is shorter: Execute then processes the
// whole logical blocks received and reports GOOD (the transport reports
// the residual overflow), but if the data ends inside a logical block it
// transfers nothing and returns ILLEGAL REQUEST, INVALID FIELD IN COMMAND
// INFORMATION UNIT (the two choices FCP-4 "FCP_DL" allows; libiscsi accepts
// both). For DirRead, len(data) = min(cmd.DataLen, expected data transfer
// length) and cap(data) must be that rounded up to a multiple of 4096;
// Execute fills data[:Response.DataLen]. data must start 4096-aligned
// (blockdev.Align).
//
// Before running a command other than INQUIRY, REPORT LUNS and REQUEST SENSE,
// Execute reports (and clears) the oldest unit attention pending for n, which
// takes precedence over errors in the CDB (SAM-5 "unit attention condition").
// Then, if another I_T nexus holds an SPC-2 reservation of the LU, most
// commands end with RESERVATION CONFLICT status and no sense data
// (reservation.go).
//
// Execute may modify the data-out bytes in data (ORWRITE computes its result
// in place); the transport must not reuse them.
//
// Execute is safe for concurrent use; READ, WRITE and TEST UNIT READY take
// no LU-wide lock and do not allocate (WRITE takes its stripes' locks shared,
// see stripes.go). ctx is consulted between the chunks
// of long VERIFY operations: a cancelled command returns TASK ABORTED.
func (lu *LU) Execute(ctx context.Context, n *Nexus, cmd *Command, data []byte) Response {
	var it *itl
	if n != nil && !lu.absent {
		it = n.itlFor(lu)
		if it == nil {
			it = lu.attach(n)
		}
	}
	if it != nil && lu.medium != nil {
		lu.noteReady(it)
	}
	switch cmd.Op {
	case opInquiry, opReportLUNs, opRequestSense:
	default:
		if it != nil {
			if a, ok := it.take(); ok {
				return lu.fail(unitAttention(a))
			}
		}
	}
	if cmd.err.failed() || cmd.kind == kInvalid {
		if !cmd.err.failed() { // zero Command
			return lu.fail(errInvalidOpcode)
		}
		return lu.fail(cmd.err)
	}
	// A Medium that is not ready (an ALUA standby port, a locked volume)
	// answers NOT READY before reservations are considered: the state this
	// LU holds may be stale until the Medium is ready (syncPR).
	var notReady error
	if lu.medium != nil {
		notReady = lu.medium.Ready()
	}
	if notReady != nil && cmd.kind.needsMedium() {
		return lu.fail(mediumNotReady(it, notReady))
	}
	if lu.prStore != nil && notReady == nil {
		lu.syncPR()
	}
	if lu.reservationConflict(n, cmd) {
		return Response{Status: StatusReservationConflict}
	}
	switch cmd.kind {
	case kTestUnitReady, kPreventAllow, kStartStopUnit:
		return Response{Status: StatusGood}
	case kPreFetch:
		return lu.execPreFetch()
	case kRead:
		return lu.execRead(cmd, data)
	case kWrite:
		return lu.execWrite(cmd, data)
	case kWriteVerify:
		return lu.execWriteVerify(ctx, cmd, data)
	case kVerify:
		return lu.execVerify(ctx, cmd, data)
	case kSyncCache:
		return lu.execSyncCache()
	case kRequestSense:
		return lu.execRequestSense(it, cmd, data)
	case kInquiry:
		return lu.execInquiry(n, cmd, data)
	case kModeSense:
		return lu.execModeSense(cmd, data)
	case kModeSelect:
		return lu.execModeSelect(n, cmd, data)
	case kReadCapacity10:
		return lu.execReadCapacity10(data)
	case kReadCapacity16:
		return lu.execReadCapacity16(cmd, data)
	case kReportLUNs:
		return lu.execReportLUNs(cmd, data)
	case kReportOpcodes:
		return lu.execReportOpcodes(cmd, data)
	case kORWrite:
		return lu.execORWrite(ctx, cmd, data)
	case kCompareAndWrite:
		return lu.execCompareAndWrite(ctx, cmd, data)
	case kWriteSame:
		return lu.execWriteSame(ctx, cmd, data)
	case kUnmap:
		return lu.execUnmap(cmd, data)
	case kGetLBAStatus:
		return lu.execGetLBAStatus(cmd, data)
	case kReadDefect:
		return lu.execReadDefect(cmd, data)
	case kPRIn:
		return lu.execPRIn(cmd, data)
	case kPROut:
		return lu.execPROut(n, cmd, data)
	case kExtendedCopy:
		return lu.execExtendedCopy(ctx, n, it, cmd, data)
	case kReceiveCopyResults:
		return lu.execReceiveCopyResults(it, cmd, data)
	case kReserve:
		return lu.execReserve(n)
	case kRelease:
		return lu.execRelease(n)
	}
	lu.log.Error("scsi: decoded command has no handler", "op", cmd.Op, "kind", cmd.kind)
	return lu.fail(errInternal)
}

// dataIn copies the response resp into data, truncated to the allocation
// length (cmd.DataLen) and the buffer, and returns GOOD.
func dataIn(cmd *Command, resp, data []byte) Response {
	if uint64(len(data)) > uint64(cmd.DataLen) {
		data = data[:cmd.DataLen]
	}
	return Response{Status: StatusGood, DataLen: copy(data, resp)}
}
