package meta

import (
	"fmt"
	"slices"
)

// BeginStatus tells the caller of ActivityLog.Begin what to do with a
// write.
type BeginStatus uint8

const (
	// Go: every extent of the write is recorded active on disk; issue the
	// write now.
	Go BeginStatus = iota
	// AfterCommit: the write joined the open transaction, which records
	// one or more of its extents. Issue it after Seal, Store.CommitAL and
	// Committed for that transaction.
	AfterCommit
	// Wait: the write cannot start yet (a transaction is in flight, or
	// every extent slot is busy with writes in flight). Nothing was taken;
	// queue the write and call Begin again after the next Committed or
	// Complete.
	Wait
)

func (s BeginStatus) String() string {
	switch s {
	case Go:
		return "go"
	case AfterCommit:
		return "after-commit"
	case Wait:
		return "wait"
	}
	return fmt.Sprintf("BeginStatus(%d)", uint8(s))
}

// Transaction is one activity-log update to persist: the full set of
// extents to record active. It is owned by the ActivityLog and valid until
// Committed.
type Transaction struct {
	// Seq orders transactions; the highest complete one on disk wins.
	Seq uint64
	// Active is the whole active set after this transaction (what is
	// written).
	Active []Extent
	// Added are the extents this transaction activates.
	Added []Extent
	// Evicted are the extents this transaction drops from the log.
	Evicted []Extent
	// BitmapPages are the bitmap pages holding the bits of the Evicted
	// extents, ascending. Those with Bitmap.PageNeedsFlush must be written
	// and flushed before the transaction is: once the transaction is on
	// disk, a crash no longer marks those extents out of sync, so their
	// bits must be on disk. (Store.CommitAL does this.)
	BitmapPages []int
}

// entry states.
const (
	entFree uint8 = iota
	entPending
	entActive
)

type alEntry struct {
	ext        Extent
	refs       int32
	state      uint8
	prev, next int32 // idle LRU list links (-1: none)
}

// ALStats are activity-log counters.
type ALStats struct {
	// Active is the number of extents in the log (including pending ones);
	// Idle those of them with no write in flight.
	Active, Idle int
	// Transactions is the number of transactions committed (DRBD's
	// al-writes); Waits the number of Begin calls that returned Wait.
	Transactions, Waits uint64
}

// ActivityLog is the activity-log state machine: it does no I/O. A write
// to an extent may only reach the disk once the extent is recorded active
// on disk; after a crash, the extents recorded active are the only ones
// that can hold writes the peer may lack (besides the bitmap's bits), so
// only they are resynced.
//
// The log holds at most Capacity extents. An extent with writes in flight
// stays in the log; idle extents are evicted least recently used first
// when room is needed. Changes are batched into transactions: Begin adds
// the extents a write needs to the open transaction, Seal closes it for
// writing, Committed records that it is durable. Only one transaction is
// in flight at a time.
//
// An ActivityLog is not safe for concurrent use (the driver goroutine owns
// it). Begin, Complete, Seal and Committed do not allocate.
type ActivityLog struct {
	capacity int
	entries  []alEntry
	free     []int32
	table    []int32 // open addressing, linear probing; -1 empty
	tmask    uint32

	idleHead, idleTail int32
	idle               int

	sealed  bool
	seq     uint64
	added   []Extent // open transaction
	evicted []Extent // open transaction
	tx      Transaction

	transactions, waits uint64
}

// NewActivityLog returns an empty log of capacity extents whose next
// transaction has sequence number seq (Store.Load provides it).
func NewActivityLog(capacity int, seq uint64) *ActivityLog {
	capacity = max(capacity, 1)
	tsize := 1
	for tsize < 2*capacity {
		tsize <<= 1
	}
	al := &ActivityLog{
		capacity: capacity,
		entries:  make([]alEntry, capacity),
		free:     make([]int32, capacity),
		table:    make([]int32, tsize),
		tmask:    uint32(tsize - 1),
		idleHead: -1,
		idleTail: -1,
		seq:      seq,
		added:    make([]Extent, 0, capacity),
		evicted:  make([]Extent, 0, capacity),
		tx: Transaction{
			Active:      make([]Extent, 0, capacity),
			Added:       make([]Extent, 0, capacity),
			Evicted:     make([]Extent, 0, capacity),
			BitmapPages: make([]int, 0, capacity),
		},
	}
	for i := range al.table {
		al.table[i] = -1
	}
	for i := range al.free {
		al.free[i] = int32(capacity - 1 - i)
	}
	return al
}

// Capacity returns the maximum number of extents in the log.
func (al *ActivityLog) Capacity() int { return al.capacity }

// Stats returns the counters.
func (al *ActivityLog) Stats() ALStats {
	return ALStats{
		Active:       al.capacity - len(al.free),
		Idle:         al.idle,
		Transactions: al.transactions,
		Waits:        al.waits,
	}
}

// InFlight reports whether a sealed transaction awaits Committed.
func (al *ActivityLog) InFlight() bool { return al.sealed }

// IsActive reports whether extent e is recorded active on disk (Begin on
// it would not need a transaction).
func (al *ActivityLog) IsActive(e Extent) bool {
	i := al.lookup(e)
	return i >= 0 && al.entries[i].state == entActive
}

func hashExtent(e Extent) uint32 { return uint32(e) * 0x9e3779b1 }

func (al *ActivityLog) lookup(e Extent) int32 {
	for h := hashExtent(e) & al.tmask; ; h = (h + 1) & al.tmask {
		i := al.table[h]
		if i < 0 {
			return -1
		}
		if al.entries[i].ext == e {
			return i
		}
	}
}

func (al *ActivityLog) insert(i int32) {
	h := hashExtent(al.entries[i].ext) & al.tmask
	for al.table[h] >= 0 {
		h = (h + 1) & al.tmask
	}
	al.table[h] = i
}

// remove deletes extent e from the table by backward-shift deletion.
func (al *ActivityLog) remove(e Extent) {
	h := hashExtent(e) & al.tmask
	for al.entries[al.table[h]].ext != e {
		h = (h + 1) & al.tmask
	}
	for {
		al.table[h] = -1
		j := h
		for {
			j = (j + 1) & al.tmask
			k := al.table[j]
			if k < 0 {
				return
			}
			home := hashExtent(al.entries[k].ext) & al.tmask
			// Move k back to h unless its home lies cyclically in (h, j].
			if (j > h && (home <= h || home > j)) || (j < h && home <= h && home > j) {
				al.table[h] = k
				h = j
				break
			}
		}
	}
}

func (al *ActivityLog) idlePush(i int32) {
	e := &al.entries[i]
	e.prev, e.next = al.idleTail, -1
	if al.idleTail >= 0 {
		al.entries[al.idleTail].next = i
	} else {
		al.idleHead = i
	}
	al.idleTail = i
	al.idle++
}

func (al *ActivityLog) idleRemove(i int32) {
	e := &al.entries[i]
	if e.prev >= 0 {
		al.entries[e.prev].next = e.next
	} else {
		al.idleHead = e.next
	}
	if e.next >= 0 {
		al.entries[e.next].prev = e.prev
	} else {
		al.idleTail = e.prev
	}
	e.prev, e.next = -1, -1
	al.idle--
}

// extents returns the extent span of blocks [first, end), end > first.
func extents(first, end Block) (Extent, Extent) {
	return ExtentOf(first), ExtentOf(end - 1)
}

// Begin registers a write of blocks [first, end) and says when it may be
// issued (see BeginStatus). With Go or AfterCommit the write holds its
// extents until Complete(first, end); with Wait it holds nothing. An empty
// range returns Go. A range over more extents than Capacity fails with
// ErrRangeTooLarge.
func (al *ActivityLog) Begin(first, end Block) (BeginStatus, error) {
	if end <= first {
		return Go, nil
	}
	e0, e1 := extents(first, end)
	if int(e1-e0) >= al.capacity {
		return Wait, ErrRangeTooLarge
	}
	// Check pass: decide without changing anything.
	needNew, idleInRange := 0, 0
	for e := e0; e <= e1; e++ {
		i := al.lookup(e)
		if i < 0 {
			if al.sealed {
				al.waits++
				return Wait, nil
			}
			needNew++
			continue
		}
		ent := &al.entries[i]
		switch {
		case ent.state == entPending && al.sealed:
			al.waits++
			return Wait, nil
		case ent.state == entActive && ent.refs == 0:
			idleInRange++
		}
	}
	if needNew > len(al.free)+al.idle-idleInRange {
		al.waits++
		return Wait, nil
	}
	// Take the extents already in the log first, so that the evictions
	// below cannot pick them.
	status := Go
	for e := e0; e <= e1; e++ {
		i := al.lookup(e)
		if i < 0 {
			continue
		}
		ent := &al.entries[i]
		if ent.refs == 0 && ent.state == entActive {
			al.idleRemove(i)
		}
		ent.refs++
		if ent.state == entPending {
			status = AfterCommit
		}
	}
	for e := e0; e <= e1 && needNew > 0; e++ {
		if al.lookup(e) >= 0 {
			continue
		}
		var i int32
		if n := len(al.free); n > 0 {
			i = al.free[n-1]
			al.free = al.free[:n-1]
		} else {
			i = al.idleHead
			al.idleRemove(i)
			victim := al.entries[i].ext
			al.remove(victim)
			al.evicted = append(al.evicted, victim)
		}
		al.entries[i] = alEntry{ext: e, refs: 1, state: entPending, prev: -1, next: -1}
		al.insert(i)
		al.added = append(al.added, e)
		status = AfterCommit
	}
	return status, nil
}

// Complete releases the extents of a write of blocks [first, end) that
// Begin let through; the write has finished (successfully or not). It
// fails with ErrNotActive if an extent holds no write, a caller bug that
// leaves the log unchanged for that extent.
func (al *ActivityLog) Complete(first, end Block) error {
	if end <= first {
		return nil
	}
	e0, e1 := extents(first, end)
	var err error
	for e := e0; e <= e1; e++ {
		i := al.lookup(e)
		if i < 0 || al.entries[i].refs == 0 {
			if err == nil {
				err = fmt.Errorf("%w: extent %d", ErrNotActive, e)
			}
			continue
		}
		ent := &al.entries[i]
		ent.refs--
		if ent.refs == 0 && ent.state == entActive {
			al.idlePush(i)
		}
	}
	return err
}

// EvictIdle moves every idle extent out of the log in the open
// transaction (for a clean shutdown or demotion: Seal and commit it
// afterwards, so that a later crash does not resync them). It returns the
// number evicted; 0 while a transaction is in flight.
func (al *ActivityLog) EvictIdle() int {
	if al.sealed {
		return 0
	}
	n := 0
	for al.idleHead >= 0 {
		i := al.idleHead
		al.idleRemove(i)
		victim := al.entries[i].ext
		al.remove(victim)
		al.entries[i] = alEntry{prev: -1, next: -1}
		al.free = append(al.free, i)
		al.evicted = append(al.evicted, victim)
		n++
	}
	return n
}

// Seal closes the open transaction and returns it for writing
// (Store.CommitAL), or ok = false if it is empty or a transaction is
// already in flight. Until Committed, Begin returns Wait for writes that
// need extents outside the log.
func (al *ActivityLog) Seal() (tx *Transaction, ok bool) {
	if al.sealed || (len(al.added) == 0 && len(al.evicted) == 0) {
		return nil, false
	}
	t := &al.tx
	t.Seq = al.seq
	t.Active = t.Active[:0]
	for i := range al.entries {
		if al.entries[i].state != entFree {
			t.Active = append(t.Active, al.entries[i].ext)
		}
	}
	t.Added = append(t.Added[:0], al.added...)
	t.Evicted = append(t.Evicted[:0], al.evicted...)
	t.BitmapPages = t.BitmapPages[:0]
	for _, e := range al.evicted {
		t.BitmapPages = append(t.BitmapPages, PageOfExtent(e))
	}
	slices.Sort(t.BitmapPages)
	t.BitmapPages = slices.Compact(t.BitmapPages)
	al.added = al.added[:0]
	al.evicted = al.evicted[:0]
	al.sealed = true
	return t, true
}

// Committed records that tx, the transaction in flight, is durable: writes
// that got AfterCommit for it may now be issued.
func (al *ActivityLog) Committed(tx *Transaction) error {
	if !al.sealed || tx != &al.tx || tx.Seq != al.seq {
		return fmt.Errorf("%w: seq %d", ErrTxState, tx.Seq)
	}
	for _, e := range tx.Added {
		i := al.lookup(e)
		if i < 0 || al.entries[i].state != entPending {
			continue // evicted again by EvictIdle? cannot happen: pending extents hold writes
		}
		ent := &al.entries[i]
		ent.state = entActive
		if ent.refs == 0 {
			al.idlePush(i)
		}
	}
	al.sealed = false
	al.seq++
	al.transactions++
	return nil
}
