package scsi

import (
	"sync"
	"sync/atomic"
)

// Nexus is one I_T nexus: an iSCSI session between an initiator port
// (InitiatorName + ISID) and a target port (TargetName + TPGT), RFC 7143
// "I_T nexus". The transport creates one per session, fills in the exported
// fields, and must not change them or copy the Nexus afterwards.
//
// A Nexus carries this package's per-I_T-nexus bookkeeping (the unit
// attention queues of the LUs it is attached to), so the read/write path
// finds it without a lookup under an LU-wide lock.
type Nexus struct {
	InitiatorName string  // iSCSI initiator name (iqn./eui./naa.)
	ISID          [6]byte // initiator session ID
	TargetName    string  // iSCSI target name the session logged in to
	// RelativeTargetPort is the relative target port identifier reported in
	// VPD page 83h (SPC-4 "relative target port designator"); 0 is reported
	// as 1.
	RelativeTargetPort uint16
	// TPGT is the target portal group tag of the session.
	TPGT uint16

	mu sync.Mutex // serializes writers of itls
	// itls maps each LU the nexus is attached to onto its I_T_L state.
	// Copy-on-write: readers Load without locking.
	itls atomic.Pointer[map[*LU]*itl]
}

// nexusKey identifies an I_T nexus across sessions: a session that logs in
// again with the same ISID re-forms the same I_T nexus (RFC 7143 "session
// reinstatement").
type nexusKey struct {
	initiator string
	isid      [6]byte
	target    string
	tpgt      uint16
}

func (n *Nexus) key() nexusKey {
	return nexusKey{initiator: n.InitiatorName, isid: n.ISID, target: n.TargetName, tpgt: n.TPGT}
}

// itlFor returns n's state for lu, or nil if n is not attached to lu.
func (n *Nexus) itlFor(lu *LU) *itl {
	if m := n.itls.Load(); m != nil {
		return (*m)[lu]
	}
	return nil
}

// setITL attaches (it != nil) or detaches (it == nil) lu.
func (n *Nexus) setITL(lu *LU, it *itl) {
	n.updateITLs(map[*LU]*itl{lu: it})
}

// updateITLs applies a batch of attachments (non-nil values) and
// detachments (nil values) with one copy of the map.
func (n *Nexus) updateITLs(batch map[*LU]*itl) {
	if len(batch) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.itls.Load()
	size := len(batch)
	if old != nil {
		size += len(*old)
	}
	m := make(map[*LU]*itl, size)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	for lu, it := range batch {
		if it == nil {
			delete(m, lu)
		} else {
			m[lu] = it
		}
	}
	n.itls.Store(&m)
}

// maxUA bounds the unit attention conditions queued per I_T_L nexus. The
// conditions we establish are few and deduplicated, so the bound is never
// reached in practice; past it, new non-reset conditions are dropped.
const maxUA = 8

// uaQueue is a fixed-capacity FIFO of unit attention conditions (SAM-5
// "unit attention condition"). Its zero value is empty.
type uaQueue struct {
	n int
	q [maxUA]ascCode
}

// add establishes a. Duplicates are ignored. A reset condition (29h/xx)
// supersedes every queued non-reset condition; if a reset condition is
// already queued, the older one is kept, since it reports the earlier
// event and covers the later one.
func (q *uaQueue) add(a ascCode) {
	if a.isReset() {
		for i := 0; i < q.n; i++ {
			if q.q[i].isReset() {
				return
			}
		}
		q.q[0], q.n = a, 1
		return
	}
	for i := 0; i < q.n; i++ {
		if q.q[i] == a {
			return
		}
	}
	if q.n < maxUA {
		q.q[q.n] = a
		q.n++
	}
}

// pop removes and returns the oldest condition.
func (q *uaQueue) pop() (ascCode, bool) {
	if q.n == 0 {
		return 0, false
	}
	a := q.q[0]
	copy(q.q[:], q.q[1:q.n])
	q.n--
	return a, true
}

// itl is the state of one I_T_L nexus: the unit attention conditions
// pending for the initiator port on one LU.
type itl struct {
	nexus   *Nexus
	pending atomic.Bool // fast path: mirrors mu.q.n > 0
	// toldNotReady is set when this nexus was told its Medium is not
	// ready; it gets UNIT ATTENTION 28h/00h once the Medium is ready.
	toldNotReady atomic.Bool
	mu           struct {
		sync.Mutex
		q      uaQueue
		copies []copyResult // EXTENDED COPY statuses (xcopy.go), oldest first
	}
}

func (it *itl) establish(a ascCode) {
	it.mu.Lock()
	it.mu.q.add(a)
	it.pending.Store(it.mu.q.n > 0)
	it.mu.Unlock()
}

// take reports and clears the oldest pending condition (UA_INTLCK_CTRL
// 00b, SPC-4 "Control mode page").
func (it *itl) take() (ascCode, bool) {
	if !it.pending.Load() {
		return 0, false
	}
	it.mu.Lock()
	a, ok := it.mu.q.pop()
	it.pending.Store(it.mu.q.n > 0)
	it.mu.Unlock()
	return a, ok
}

func (it *itl) snapshot() uaQueue {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.mu.q
}
