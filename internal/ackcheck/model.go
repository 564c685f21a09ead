package ackcheck

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Errors from the model.
var (
	ErrOutOfRange = errors.New("ackcheck: block outside the model's range")
	ErrBusy       = errors.New("ackcheck: block has a write in flight")
	ErrPoisoned   = errors.New("ackcheck: block's last write has an unknown outcome")
	ErrNotPending = errors.New("ackcheck: no such write in flight")
	ErrBadModel   = errors.New("ackcheck: invalid model file")
	ErrJournal    = errors.New("ackcheck: journal write failed")
)

// Layout is the part of the device a model covers.
type Layout struct {
	// BlockSize is the checker's block in bytes: a multiple of 8 and of
	// the LUN's logical block size (4096 suits 512 and 4096 LUNs).
	BlockSize int `json:"block_size"`
	// First is the first block; Count the number of blocks.
	First Block  `json:"first"`
	Count uint64 `json:"count"`
}

// Validate checks the layout.
func (l Layout) Validate() error {
	if err := checkBlockSize(l.BlockSize); err != nil {
		return err
	}
	if l.Count == 0 || uint64(l.First)+l.Count < uint64(l.First) {
		return fmt.Errorf("%w: %d blocks from %d", ErrBadModel, l.Count, l.First)
	}
	return nil
}

// Contains reports whether b is in the layout.
func (l Layout) Contains(b Block) bool { return b >= l.First && uint64(b-l.First) < l.Count }

// blockState is what the model knows of one block.
type blockState struct {
	acked    Seq   // last acknowledged write; 0: none
	inflight Seq   // write in flight; 0: none
	unknown  []Seq // writes after acked whose outcome is unknown
	issued   []Seq // every write issued, ascending
	poisoned bool
}

// Model records the writes issued to and acknowledged by a device. The
// zero value is not usable; call NewModel.
type Model struct {
	layout  Layout
	last    Seq // last sequence number issued
	blocks  map[Block]*blockState
	journal io.Writer
}

// NewModel returns an empty model of a device whose blocks in layout all
// start as zeros.
func NewModel(l Layout) (*Model, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return &Model{layout: l, blocks: map[Block]*blockState{}}, nil
}

// Layout returns the model's layout.
func (m *Model) Layout() Layout { return m.layout }

// LastSeq returns the last sequence number issued.
func (m *Model) LastSeq() Seq { return m.last }

// SetJournal makes the model append every Issue, Ack and Fail to w (one
// line each) before returning, starting with a layout line if w is empty
// so far (the caller says so with fresh). LoadJournal rebuilds a model
// from it.
func (m *Model) SetJournal(w io.Writer, fresh bool) error {
	m.journal = w
	if fresh {
		return m.record('L', Block(m.layout.BlockSize), Seq(m.layout.First), m.layout.Count)
	}
	return nil
}

func (m *Model) record(op byte, b Block, s Seq, extra uint64) error {
	if m.journal == nil {
		return nil
	}
	var line []byte
	line = append(line, op, ' ')
	line = strconv.AppendUint(line, uint64(b), 10)
	line = append(line, ' ')
	line = strconv.AppendUint(line, uint64(s), 10)
	if op == 'L' {
		line = append(line, ' ')
		line = strconv.AppendUint(line, extra, 10)
	}
	line = append(line, '\n')
	if _, err := m.journal.Write(line); err != nil {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	return nil
}

func (m *Model) state(b Block) *blockState {
	st := m.blocks[b]
	if st == nil {
		st = &blockState{}
		m.blocks[b] = st
	}
	return st
}

// Free reports whether a write to b may be issued now.
func (m *Model) Free(b Block) bool {
	if !m.layout.Contains(b) {
		return false
	}
	st := m.blocks[b]
	return st == nil || (st.inflight == 0 && !st.poisoned)
}

// Issue allocates the next sequence number for a write to b, which the
// caller then sends. It fails if b has a write in flight or is poisoned.
func (m *Model) Issue(b Block) (Seq, error) {
	if !m.layout.Contains(b) {
		return 0, fmt.Errorf("%w: %d", ErrOutOfRange, b)
	}
	if st := m.blocks[b]; st != nil {
		if st.inflight != 0 {
			return 0, fmt.Errorf("%w: block %d, seq %d", ErrBusy, b, st.inflight)
		}
		if st.poisoned {
			return 0, fmt.Errorf("%w: block %d", ErrPoisoned, b)
		}
	}
	s := m.last + 1
	if err := m.record('I', b, s, 0); err != nil {
		return 0, err
	}
	m.issue(b, s)
	return s, nil
}

func (m *Model) issue(b Block, s Seq) {
	m.last = max(m.last, s)
	st := m.state(b)
	st.inflight = s
	st.issued = append(st.issued, s)
}

// Ack records that write s of block b completed with GOOD status.
func (m *Model) Ack(b Block, s Seq) error {
	st := m.blocks[b]
	if st == nil || s == 0 || st.inflight != s {
		return fmt.Errorf("%w: ack of block %d seq %d", ErrNotPending, b, s)
	}
	if err := m.record('A', b, s, 0); err != nil {
		return err
	}
	st.acked, st.inflight = s, 0
	return nil
}

// Fail records that the outcome of write s of block b is unknown (the
// connection died, the context ended, or the command failed): it may or may
// not have landed, and the block is never written again by this model.
func (m *Model) Fail(b Block, s Seq) error {
	st := m.blocks[b]
	if st == nil || s == 0 || st.inflight != s {
		return fmt.Errorf("%w: fail of block %d seq %d", ErrNotPending, b, s)
	}
	if err := m.record('F', b, s, 0); err != nil {
		return err
	}
	st.unknown = append(st.unknown, s)
	st.inflight, st.poisoned = 0, true
	return nil
}

// Acked returns the last acknowledged write of b (0: none).
func (m *Model) Acked(b Block) Seq {
	if st := m.blocks[b]; st != nil {
		return st.acked
	}
	return 0
}

// History returns every write issued to b, ascending (a copy).
func (m *Model) History(b Block) []Seq {
	if st := m.blocks[b]; st != nil {
		return slices.Clone(st.issued)
	}
	return nil
}

// Touched returns every block ever issued a write, ascending.
func (m *Model) Touched() []Block {
	bs := make([]Block, 0, len(m.blocks))
	for b := range m.blocks {
		bs = append(bs, b)
	}
	slices.Sort(bs)
	return bs
}

// Outcome classifies a block read back.
type Outcome uint8

// Outcomes. The first three are fine; the others are violations.
const (
	OutcomeInitial   Outcome = iota // initial content, no write acknowledged
	OutcomeAcked                    // the last acknowledged write
	OutcomeUnacked                  // a write with unknown outcome that landed
	ViolationLost                   // initial content, but a write was acknowledged
	ViolationStale                  // an older write than the last acknowledged one
	ViolationPhantom                // a stamp never issued for this block
	ViolationCorrupt                // torn, garbled or misdirected content
)

func (o Outcome) String() string {
	switch o {
	case OutcomeInitial:
		return "initial"
	case OutcomeAcked:
		return "acked"
	case OutcomeUnacked:
		return "unacked-landed"
	case ViolationLost:
		return "LOST"
	case ViolationStale:
		return "STALE"
	case ViolationPhantom:
		return "PHANTOM"
	case ViolationCorrupt:
		return "CORRUPT"
	}
	return fmt.Sprintf("outcome-%d", uint8(o))
}

// Violation reports whether o is a failure of the device.
func (o Outcome) Violation() bool { return o >= ViolationLost }

// Verdict is the judgement of one block.
type Verdict struct {
	Block   Block   `json:"block"`
	Outcome Outcome `json:"outcome"`
	Got     Seq     `json:"got"`   // stamp read (0 for zeros)
	Acked   Seq     `json:"acked"` // last acknowledged write
	Detail  string  `json:"detail,omitempty"`
}

func (v Verdict) String() string {
	s := fmt.Sprintf("block %d: %v (read seq %d, last acked %d)", v.Block, v.Outcome, v.Got, v.Acked)
	if v.Detail != "" {
		s += ": " + v.Detail
	}
	return s
}

// Check judges what was read back from block b. It does not change the
// model. A write still in flight in the model counts as unknown.
func (m *Model) Check(b Block, obs Observation) Verdict {
	v := Verdict{Block: b, Got: obs.Seq, Detail: obs.Detail}
	st := m.blocks[b]
	if st != nil {
		v.Acked = st.acked
	}
	switch obs.Kind {
	case KindCorrupt:
		v.Outcome = ViolationCorrupt
		return v
	case KindZero:
		v.Got = 0
		if v.Acked == 0 {
			v.Outcome = OutcomeInitial
		} else {
			v.Outcome = ViolationLost
			v.Detail = fmt.Sprintf("reads as initial content; write %d was acknowledged", v.Acked)
		}
		return v
	}
	s := obs.Seq
	switch {
	case st == nil:
		v.Outcome = ViolationPhantom
		v.Detail = "block was never written"
	case s == st.acked:
		v.Outcome = OutcomeAcked
	case s > st.acked && (s == st.inflight || slices.Contains(st.unknown, s)):
		v.Outcome = OutcomeUnacked
	case s < st.acked && slices.Contains(st.issued, s):
		v.Outcome = ViolationStale
		v.Detail = fmt.Sprintf("write %d was acknowledged after it", st.acked)
	default:
		v.Outcome = ViolationPhantom
		v.Detail = "sequence number never issued for this block"
	}
	return v
}

// modelFile is the JSON form of a Model.
type modelFile struct {
	Version int         `json:"version"`
	Layout  Layout      `json:"layout"`
	Last    Seq         `json:"last_seq"`
	Blocks  []blockFile `json:"blocks"`
}

type blockFile struct {
	Block    Block `json:"block"`
	Acked    Seq   `json:"acked,omitempty"`
	InFlight Seq   `json:"in_flight,omitempty"`
	Unknown  []Seq `json:"unknown,omitempty"`
	Issued   []Seq `json:"issued"`
	Poisoned bool  `json:"poisoned,omitempty"`
}

const fileVersion = 1

// Save writes the model as JSON.
func (m *Model) Save(w io.Writer) error {
	f := modelFile{Version: fileVersion, Layout: m.layout, Last: m.last}
	for _, b := range m.Touched() {
		st := m.blocks[b]
		f.Blocks = append(f.Blocks, blockFile{Block: b, Acked: st.acked, InFlight: st.inflight,
			Unknown: st.unknown, Issued: st.issued, Poisoned: st.poisoned})
	}
	enc := json.NewEncoder(w)
	if err := enc.Encode(&f); err != nil {
		return fmt.Errorf("ackcheck: save model: %w", err)
	}
	return nil
}

// SaveFile writes the model to path atomically (temporary file, fsync,
// rename).
func (m *Model) SaveFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ackcheck-*")
	if err != nil {
		return fmt.Errorf("ackcheck: save model: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	err = m.Save(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("ackcheck: save model %s: %w", path, err)
	}
	return nil
}

// Load reads a model written by Save and checks its consistency.
func Load(r io.Reader) (*Model, error) {
	var f modelFile
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadModel, err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadModel, f.Version)
	}
	m, err := NewModel(f.Layout)
	if err != nil {
		return nil, err
	}
	m.last = f.Last
	for _, bf := range f.Blocks {
		if !m.layout.Contains(bf.Block) || m.blocks[bf.Block] != nil || len(bf.Issued) == 0 ||
			!slices.IsSorted(bf.Issued) || bf.Issued[len(bf.Issued)-1] > f.Last {
			return nil, fmt.Errorf("%w: block %d", ErrBadModel, bf.Block)
		}
		m.blocks[bf.Block] = &blockState{acked: bf.Acked, inflight: bf.InFlight, unknown: bf.Unknown,
			issued: bf.Issued, poisoned: bf.Poisoned}
	}
	return m, nil
}

// LoadFile reads a model saved by SaveFile.
func LoadFile(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ackcheck: load model: %w", err)
	}
	defer f.Close()
	return Load(bufio.NewReader(f))
}

// LoadJournal rebuilds a model from a journal written through SetJournal.
// A torn last line (the writer died while appending it) is ignored; writes
// still in flight at the end count as unknown when checked.
func LoadJournal(r io.Reader) (*Model, error) {
	br := bufio.NewReader(r)
	var m *Model
	for line := 1; ; line++ {
		raw, err := br.ReadString('\n')
		if err == io.EOF {
			break // a last line without its newline is torn: ignore it
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadModel, err)
		}
		text := strings.TrimSuffix(raw, "\n")
		fields := strings.Fields(text)
		bad := func() error { return fmt.Errorf("%w: journal line %d %q", ErrBadModel, line, text) }
		if len(fields) < 3 || len(fields[0]) != 1 {
			return nil, bad()
		}
		a, err1 := strconv.ParseUint(fields[1], 10, 64)
		s, err2 := strconv.ParseUint(fields[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, bad()
		}
		op := fields[0][0]
		if op == 'L' {
			if m != nil || len(fields) != 4 {
				return nil, bad()
			}
			c, err := strconv.ParseUint(fields[3], 10, 64)
			if err != nil {
				return nil, bad()
			}
			if m, err = NewModel(Layout{BlockSize: int(a), First: Block(s), Count: c}); err != nil {
				return nil, err
			}
			continue
		}
		if m == nil || len(fields) != 3 {
			return nil, bad()
		}
		b, sq := Block(a), Seq(s)
		switch op {
		case 'I':
			if !m.Free(b) || sq <= m.last {
				return nil, bad()
			}
			m.issue(b, sq)
		case 'A':
			err = m.Ack(b, sq)
		case 'F':
			err = m.Fail(b, sq)
		default:
			return nil, bad()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", bad(), err)
		}
	}
	if m == nil {
		return nil, fmt.Errorf("%w: journal has no layout line", ErrBadModel)
	}
	return m, nil
}
