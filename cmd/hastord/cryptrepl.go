package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"hastor/blockdev"
	"hastor/crypt"
	"hastor/internal/control"
	"hastor/replication"
	"hastor/target/scsi"
)

// lateVolume is the device of an encrypted replicated LUN. Its LUKS2
// header is part of the replicated data (so only ciphertext crosses the
// wire and reaches the peer's disk), and it can be read only where the
// LUN is primary: on a fresh secondary it is not even there before the
// first sync. So the volume is opened, through the replicated device, when
// this node becomes primary, and closed, its key destroyed, when it
// becomes secondary (see lun.syncVolume). Until it is open the device is
// not ready: in standby on a secondary, locked on a primary.
type lateVolume struct {
	repl blockdev.Device // the replicated device
	size atomic.Int64    // the data area once known; the replicated size before
	vol  atomic.Pointer[crypt.Volume]
}

var (
	_ blockdev.Device    = (*lateVolume)(nil)
	_ blockdev.FUAWriter = (*lateVolume)(nil)
	_ scsi.Medium        = (*lateVolume)(nil)
)

// errNotOpen: the volume is not open on this node.
var errNotOpen = fmt.Errorf("%w: the encrypted volume is not open on this node", crypt.ErrLocked)

func newLateVolume(repl blockdev.Device) *lateVolume {
	v := &lateVolume{repl: repl}
	v.size.Store(repl.Size())
	return v
}

func (v *lateVolume) dev() (*crypt.Device, error) {
	if vol := v.vol.Load(); vol != nil {
		return vol.Device(), nil
	}
	if err := v.repl.(scsi.Medium).Ready(); err != nil {
		return nil, err
	}
	return nil, errNotOpen
}

// Ready reports the replicated device's state first (standby on a
// secondary), then whether the volume is open and unlocked.
func (v *lateVolume) Ready() error {
	d, err := v.dev()
	if err != nil {
		return err
	}
	return d.Ready()
}

func (v *lateVolume) ReadAt(p []byte, off int64) (int, error) {
	d, err := v.dev()
	if err != nil {
		return 0, err
	}
	return d.ReadAt(p, off)
}

func (v *lateVolume) WriteAt(p []byte, off int64) (int, error) {
	d, err := v.dev()
	if err != nil {
		return 0, err
	}
	return d.WriteAt(p, off)
}

func (v *lateVolume) WriteAtFUA(p []byte, off int64) (int, error) {
	d, err := v.dev()
	if err != nil {
		return 0, err
	}
	return d.WriteAtFUA(p, off)
}

func (v *lateVolume) Flush() error {
	d, err := v.dev()
	if err != nil {
		return err
	}
	return d.Flush()
}

func (v *lateVolume) Size() int64 { return v.size.Load() }

// Close closes the volume, if open, destroying its key. The replicated
// device is its owner's to close.
func (v *lateVolume) Close() error {
	if vol := v.vol.Swap(nil); vol != nil {
		return vol.Close()
	}
	return nil
}

// replInner is the replicated device as a volume's inner device: the
// volume may not close it, and it keeps its FUA writes and its
// readiness.
type replInner struct{ blockdev.Device }

func (r replInner) WriteAtFUA(p []byte, off int64) (int, error) {
	return r.Device.(blockdev.FUAWriter).WriteAtFUA(p, off)
}
func (r replInner) Ready() error { return r.Device.(scsi.Medium).Ready() }
func (replInner) Close() error   { return nil }

// runVolume keeps an encrypted replicated LUN's volume open exactly while
// this node is primary, until ctx ends.
func (l *lun) runVolume(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		}
		l.syncVolume()
	}
}

// kickVolume asks runVolume to look at the role again.
func (l *lun) kickVolume() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// syncVolume opens the volume if this node is primary and closes it if
// not. Opening reads the header through the replicated device, sets the
// LU's capacity to the data area, and unlocks with the key file if there
// is one (initiators then get a unit attention).
func (l *lun) syncVolume() {
	late := l.late
	err := l.repl.Device().Ready()
	switch vol := late.vol.Load(); {
	case errors.Is(err, scsi.ErrStandby) && vol != nil:
		late.vol.Store(nil)
		if err := vol.Close(); err != nil {
			l.log.Error("closing the encrypted volume", "err", err)
		}
		l.log.Info("secondary: encrypted volume closed, its key destroyed")
	case err == nil && vol == nil:
		vol, err := crypt.OpenVolumeOn(l.cfg.VolumeID, replInner{l.repl.Device()})
		if err != nil {
			l.log.Error("primary, but the encrypted volume cannot be opened: its LUKS2 header is read through replication. "+
				"A new replicated volume needs its header first: run hastorctl format on this node's backing store, "+
				"then hastorctl primary --force", "err", err)
			return
		}
		if ss := vol.Device().Layout().SectorSize; ss > l.cfg.BlockSize {
			vol.Close()
			l.log.Error("the encrypted volume stays closed: its encryption sector size is larger than block_size",
				"sector_size", ss, "block_size", l.cfg.BlockSize)
			return
		}
		late.size.Store(vol.Device().Size())
		late.vol.Store(vol)
		l.lu.SetCapacity()
		l.log.Info("primary: encrypted volume opened, locked until its key is given", "size", vol.Device().Size())
		if kf := l.cfg.Encryption.KeyFile; kf != "" {
			l.unlockFromKeyFile(kf)
		}
	}
}

// maxHeaderArea bounds header writes while the volume is not open (its
// data offset unknown): LUKS2's default data offset.
const maxHeaderArea = 16 << 20

var _ control.HeaderHandler = (*daemon)(nil)

// OpenHeader implements control.HeaderHandler: the LUKS2 header of an
// encrypted replicated LUN, read and written through the replicated
// device on its primary, so that both nodes get every change.
func (d *daemon) OpenHeader(ctx context.Context, volume string) (control.Header, error) {
	l, err := d.replicated(volume)
	if err != nil {
		return nil, err
	}
	if l.late == nil {
		return nil, fmt.Errorf("%s is not encrypted", l.cfg.VolumeID)
	}
	if err := l.repl.Device().Ready(); err != nil {
		return nil, fmt.Errorf("%s: change the header on the primary: %w", l.cfg.VolumeID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case l.headerLock <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: another hastorctl is changing this header; try again when it is done", l.cfg.VolumeID)
	}
	dev := l.repl.Device()
	limit := min(int64(maxHeaderArea), dev.Size())
	if vol := l.late.vol.Load(); vol != nil {
		limit = vol.Device().Layout().Offset
	}
	l.log.Info("LUKS2 header opened for changes through replication")
	return &replHeader{l: l, dev: dev, limit: limit}, nil
}

// replHeader is an open header area; see OpenHeader.
type replHeader struct {
	l     *lun
	dev   *replication.Device
	limit int64 // writes end before it: the data area starts there
}

func (h *replHeader) Size() int64 { return h.dev.Size() }

func (h *replHeader) ReadAt(p []byte, off int64) (int, error) {
	return crypt.DeviceStorage{Dev: h.dev}.ReadAt(p, off)
}

// WriteAt writes p at off with FUA, reading and rewriting the whole
// 4 KiB blocks it touches (only the header's own blocks: the data area
// is refused).
func (h *replHeader) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > h.limit {
		return 0, fmt.Errorf("header write at %d (%d bytes) reaches the data area at %d", off, len(p), h.limit)
	}
	const align = 4096
	start, end := off&^(align-1), (off+int64(len(p))+align-1)&^(align-1)
	pool := blockdev.NewPool()
	b := pool.Get(int(end - start))
	defer pool.Put(b)
	if _, err := h.dev.ReadAt(b.B, start); err != nil {
		return 0, err
	}
	copy(b.B[off-start:], p)
	if _, err := h.dev.WriteAtFUA(b.B, start); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h *replHeader) Sync() error { return h.dev.Flush() }

func (h *replHeader) Close() {
	h.l.log.Info("LUKS2 header closed")
	<-h.l.headerLock
}
