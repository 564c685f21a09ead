package replication

import (
	"bytes"
	"context"
	"fmt"

	"hastor/blockdev"
	"hastor/replication/transport"
	"hastor/target/scsi"
)

// Device is the replicated data area as a blockdev.Device: the LUN's view
// of the resource. On the primary, reads go to the local disk and writes
// and flushes complete as the resource's protocol promises. On the
// secondary every call fails and Ready reports the ALUA standby state.
type Device struct{ n *Node }

var (
	_ blockdev.Device    = (*Device)(nil)
	_ blockdev.FUAWriter = (*Device)(nil)
	_ blockdev.Discarder = (*Device)(nil)
	_ blockdev.Mapper    = (*Device)(nil)
	_ scsi.Medium        = (*Device)(nil)
	_ scsi.PRStore       = (*Device)(nil)
)

// Device returns the node's replicated device.
func (n *Node) Device() *Device { return &Device{n} }

// checkBlock is the alignment unit Device checks transfers against: the
// smallest logical block size a LUN may have.
const checkBlock = 512

// Ready implements scsi.Medium: nil on the primary, an error wrapping
// scsi.ErrStandby on the secondary.
func (d *Device) Ready() error {
	if d.n.primary.Load() {
		return nil
	}
	return fmt.Errorf("replication %s: this node is secondary: %w", d.n.opts.Name, scsi.ErrStandby)
}

// ReadAt reads from the local disk (the primary's copy is up to date).
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if err := blockdev.CheckIO(p, off, d.n.size, checkBlock); err != nil {
		return 0, err
	}
	if err := d.Ready(); err != nil {
		return 0, err
	}
	if d.n.detached.Load() {
		return d.n.remoteRead(p, off)
	}
	return d.n.data.ReadAt(p, off)
}

// remoteRead reads through the peer (on-io-error detach).
func (n *Node) remoteRead(p []byte, off int64) (int, error) {
	r := n.newRequest()
	n.step(func(m *Machine) {
		n.mu.reqs[r.id] = r
		m.SubmitRead(r.id, off, p)
	})
	err := <-r.done
	n.finish(r)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAt writes locally and to the peer; it returns when the write is as
// durable as the protocol promises. p is not modified.
func (d *Device) WriteAt(p []byte, off int64) (int, error) { return d.n.write(p, off, false) }

// WriteAtFUA is WriteAt whose data is durable on both nodes' disks when it
// returns (FUA reaches the peer's disk whatever the protocol).
func (d *Device) WriteAtFUA(p []byte, off int64) (int, error) { return d.n.write(p, off, true) }

// Discard implements blockdev.Discarder: [off, off+n) reads as zeros on
// both nodes when it returns, as a write of zeros would, as durable as the
// protocol promises (Flush makes it durable). Each node deallocates the
// range on its own disk, or writes zeros where the disk cannot; no data
// crosses the link.
func (d *Device) Discard(off, n int64) error {
	if err := blockdev.CheckRange(off, n, d.n.size, checkBlock); err != nil {
		return err
	}
	for end := off + n; off < end; {
		k := min(end, (off/d.n.discardPiece+1)*d.n.discardPiece) - off
		at := off
		if _, err := d.n.submitWrite(at, k, func(m *Machine, id ReqID) { m.SubmitDiscard(id, at, k) },
			func() error { return d.n.zero(at, k) }); err != nil {
			return err
		}
		off += k
	}
	return nil
}

// PREpoch implements scsi.PRStore: it moves each time this node becomes
// primary, before the Device is ready.
func (d *Device) PREpoch() uint64 { return d.n.prEpoch.Load() }

// LoadPR implements scsi.PRStore: the persistent reservation state this
// node stored as primary or last received from the primary peer.
func (d *Device) LoadPR() ([]byte, uint64) {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	return bytes.Clone(d.n.mu.m.PRState()), d.n.prEpoch.Load()
}

// SavePR implements scsi.PRStore: it returns once the connected peer holds
// the state (at once when no peer is connected; the peer gets it when it
// connects). The state lives in both nodes' memory, so it survives a
// failover but not a restart of both.
func (d *Device) SavePR(state []byte) error {
	state = bytes.Clone(state)
	r := d.n.newRequest()
	d.n.step(func(m *Machine) {
		d.n.mu.reqs[r.id] = r
		m.SubmitPR(r.id, state)
	})
	err := <-r.done
	d.n.finish(r)
	return err
}

// PersistsThroughPowerLoss implements scsi.PRStore: the state lives in
// the two nodes' memory.
func (d *Device) PersistsThroughPowerLoss() bool { return false }

// Mapped implements blockdev.Mapper with the local disk's answer (an image
// file's holes): on the primary it holds the data initiators see. The
// peer's disk may differ in what is allocated, never in what it reads.
func (d *Device) Mapped(off, n int64) (bool, int64, error) {
	m, ok := d.n.data.(blockdev.Mapper)
	if !ok || d.n.detached.Load() {
		return true, min(n, d.n.size-off), nil
	}
	return m.Mapped(off, n)
}

// Flush makes every completed write durable locally and on the peer.
func (d *Device) Flush() error {
	if !d.n.primary.Load() {
		return d.n.data.Flush()
	}
	r := d.n.newRequest()
	d.n.step(func(m *Machine) {
		d.n.mu.reqs[r.id] = r
		m.SubmitFlush(r.id)
	})
	select {
	case <-r.issue:
	case err := <-r.done:
		d.n.finish(r)
		return err
	}
	err := d.n.data.Flush()
	d.n.step(func(m *Machine) { m.LocalDone(r.id, err) })
	err = <-r.done
	d.n.finish(r)
	return err
}

// Size returns the size of the replicated data area.
func (d *Device) Size() int64 { return d.n.size }

// Close does nothing: the Node owns the backing devices.
func (d *Device) Close() error { return nil }

func (n *Node) newRequest() *request {
	r, _ := n.reqPool.Get().(*request)
	if r == nil {
		r = &request{issue: make(chan struct{}, 1), done: make(chan error, 1), rel: make(chan struct{}, 4)}
		r.release = func(error) { r.rel <- struct{}{} }
	}
	n.mu.Lock()
	n.mu.nextReq++
	r.id = n.mu.nextReq
	n.mu.Unlock()
	return r
}

func (n *Node) write(p []byte, off int64, fua bool) (int, error) {
	if err := blockdev.CheckIO(p, off, n.size, checkBlock); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	return n.submitWrite(off, int64(len(p)), func(m *Machine, id ReqID) { m.Submit(id, off, int64(len(p)), fua, p) },
		func() (err error) {
			if fua && n.fua != nil {
				_, err = n.fua.WriteAtFUA(p, off)
			} else if _, err = n.data.WriteAt(p, off); err == nil && fua {
				err = n.data.Flush()
			}
			return err
		})
}

// submitWrite runs one application write of size bytes through the
// machine: submit hands it over, local does the local I/O once the machine
// issues it, and submitWrite returns when the machine completes it.
func (n *Node) submitWrite(off, size int64, submit func(m *Machine, id ReqID), local func() error) (int, error) {
	r := n.newRequest()
	n.step(func(m *Machine) {
		n.mu.reqs[r.id] = r
		submit(m, r.id)
	})
	select {
	case <-r.issue:
	case err := <-r.done:
		n.finish(r)
		if err != nil {
			return 0, err
		}
		return int(size), nil
	}
	err := local()
	n.step(func(m *Machine) { m.LocalDone(r.id, err) })
	err = <-r.done
	n.finish(r)
	if err != nil {
		return 0, err
	}
	return int(size), nil
}

// finish waits, once r has completed, until the transport no longer
// references the request's data, and returns r to the pool.
func (n *Node) finish(r *request) {
	for k := r.sent.Load(); k > 0; k-- {
		<-r.rel
	}
	r.sent.Store(0)
	// Defensive: the machine completes an issued write only after its
	// LocalDone, so no issue token should be left; one that were would
	// let the request's next user write before the machine issued it.
	select {
	case <-r.issue:
	default:
	}
	n.reqPool.Put(r)
}

// waitFor waits until cond holds on the machine or ctx ends.
func (n *Node) waitFor(ctx context.Context, cond func(m *Machine) bool) error {
	for {
		n.mu.Lock()
		ok := cond(n.mu.m)
		ch := n.mu.changed
		n.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Promote makes the node primary (hastorctl primary [--force]) and waits
// until it is.
func (n *Node) Promote(ctx context.Context, force bool) error {
	var err error
	n.step(func(m *Machine) { err = m.Promote(force) })
	if err != nil {
		return err
	}
	return n.waitFor(ctx, func(m *Machine) bool { return m.Role() == Primary && m.promoting == 0 || m.disk == DiskFailed })
}

// Demote makes the node secondary once its I/O in flight has finished.
func (n *Node) Demote(ctx context.Context) error {
	var err error
	n.step(func(m *Machine) { err = m.Demote() })
	if err != nil {
		return err
	}
	return n.waitFor(ctx, func(m *Machine) bool { return m.Role() == Secondary && !m.demoting })
}

// Connect lets the node connect (discardMyData: resolve a split brain by
// becoming the sync target).
func (n *Node) Connect(discardMyData bool) error {
	var err error
	n.step(func(m *Machine) { err = m.Connect(discardMyData) })
	return err
}

// Disconnect drops the connection and stays StandAlone.
func (n *Node) Disconnect() error {
	var err error
	n.step(func(m *Machine) { err = m.Disconnect() })
	return err
}

// Verify starts an online verify from this node.
func (n *Node) Verify() error {
	var err error
	n.step(func(m *Machine) { err = m.Verify() })
	return err
}

// Invalidate marks the local data out of date for a full resync.
func (n *Node) Invalidate() error {
	var err error
	n.step(func(m *Machine) { err = m.Invalidate() })
	return err
}

// NodeStatus is the machine's status with the transport's.
type NodeStatus struct {
	Status
	Link               transport.Stats
	ALWrites, BMWrites uint64
}

// Status returns a snapshot of the node's state.
func (n *Node) Status() NodeStatus {
	n.mu.Lock()
	st := NodeStatus{Status: n.mu.m.Status()}
	ss := n.store.Stats()
	n.mu.Unlock()
	st.ALWrites, st.BMWrites = ss.ALWrites, ss.BitmapWrites
	st.Link = n.link.Stats()
	return st
}
