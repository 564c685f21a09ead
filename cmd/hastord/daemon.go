package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"

	"hastor/blockdev"
	"hastor/config"
	"hastor/crypt"
	"hastor/internal/control"
	"hastor/replication"
	"hastor/target/scsi"
)

// daemon holds the LUNs hastord serves and answers the control socket.
type daemon struct {
	log  *slog.Logger
	node *config.Node // this node's entry; nil without a nodes list
	pool *blockdev.Pool
	luns map[string]*lun // by lower-case volume_id; filled before serving, then read-only
	list []*lun          // in configuration order
}

// lun is one served logical unit.
type lun struct {
	cfg    *config.LUN
	target string
	path   string
	dev    blockdev.Device // what the LU reads and writes
	vol    *crypt.Volume   // nil unless encrypted
	lu     *scsi.LU
	log    *slog.Logger

	// Replicated LUNs only.
	repl       *replication.Node
	late       *lateVolume       // encrypted: the volume, open while primary
	kick       chan struct{}     // encrypted: the role may have changed
	headerLock chan struct{}     // encrypted: held while hastorctl changes the header
	backing    []blockdev.Device // backing and metadata devices, closed after repl stops
	wasReady   atomic.Bool       // the replicated device was ready at the last change
}

var (
	_ control.Handler            = (*daemon)(nil)
	_ control.ReservationHandler = (*daemon)(nil)
)

// openLUN opens one LUN's backing store (and its LUKS2 header when it is
// encrypted) and makes its logical unit.
func (d *daemon) openLUN(cfg *config.Config, tc *config.Target, lc *config.LUN) (*lun, error) {
	path := cfg.LUNPathFor(lc, d.node)
	l := &lun{cfg: lc, target: tc.IQN, path: path,
		log: d.log.With("target", tc.IQN, "lun", lc.LUN, "volume_id", lc.VolumeID)}
	if lc.Replicated() {
		if err := d.openReplicated(cfg, lc, path, d.pool, l); err != nil {
			l.closeBacking()
			return nil, err
		}
	} else {
		inner, err := blockdev.Open(path, blockdev.Options{
			Size:      int64(lc.Size),
			Create:    !lc.Encrypted(), // an encrypted volume must be formatted first
			ReadOnly:  lc.ReadOnly,
			BlockSize: lc.BlockSize,
		})
		if err != nil {
			return nil, err
		}
		l.dev = inner
	}
	inner := l.dev
	if lc.Encrypted() && l.repl != nil {
		l.late, l.kick, l.headerLock = newLateVolume(inner), make(chan struct{}, 1), make(chan struct{}, 1)
		l.dev = l.late
	} else if lc.Encrypted() {
		vol, err := crypt.OpenVolume(path, inner)
		if err != nil {
			inner.Close()
			l.closeBacking()
			return nil, fmt.Errorf("encrypted LUN: %w", err)
		}
		l.vol, l.dev = vol, vol.Device()
		if ss := vol.Device().Layout().SectorSize; ss > lc.BlockSize {
			vol.Close()
			l.closeBacking()
			return nil, fmt.Errorf("block_size %d is smaller than the volume's encryption sector size %d: set block_size: %d (or format the volume with --sector-size %d)",
				lc.BlockSize, ss, ss, lc.BlockSize)
		}
	}
	// Persistent reservations follow a replicated volume to its peer (in
	// memory), and otherwise persist in the state directory when an
	// initiator asks for APTPL.
	var prStore scsi.PRStore
	if l.repl != nil {
		prStore = l.repl.Device()
	} else {
		f, err := openPRFile(prFileName(cfg.StateDirFor(d.node), lc.VolumeID))
		if err != nil {
			l.dev.Close()
			l.closeBacking()
			return nil, err
		}
		prStore = f
	}
	var err error
	l.lu, err = scsi.NewLU(scsi.LUConfig{
		Dev:              l.dev,
		PRStore:          prStore,
		BlockSize:        lc.BlockSize,
		ReadOnly:         lc.ReadOnly,
		WriteCache:       lc.WriteCache,
		FullyProvisioned: !lc.Thin(),
		VolumeID:         lc.VolumeID,
		MaxTransferBytes: maxTransfer,
		Logger:           l.log,
	})
	if err != nil {
		l.dev.Close()
		l.closeBacking()
		return nil, err
	}
	d.luns[strings.ToLower(lc.VolumeID)] = l
	d.list = append(d.list, l)
	msg := "LUN ready"
	if l.repl != nil {
		msg = "replicated LUN opened (secondary until promoted)"
	}
	if l.vol != nil {
		msg = "encrypted LUN opened, locked until its key is given"
	}
	if l.late != nil {
		msg = "encrypted replicated LUN opened (secondary until promoted; the volume opens on promotion)"
	}
	l.log.Info(msg, "path", path, "size", l.dev.Size(), "block_size", lc.BlockSize)
	return l, nil
}

// unlockFromKeyFiles unlocks every encrypted LUN that has a key file. A
// LUN whose key file does not unlock it stays locked (NOT READY) and is
// logged; the others are served. Encrypted replicated LUNs unlock when
// their volume opens, on promotion.
func (d *daemon) unlockFromKeyFiles() {
	for _, l := range d.list {
		if l.vol == nil || l.cfg.Encryption.KeyFile == "" {
			continue
		}
		l.unlockFromKeyFile(l.cfg.Encryption.KeyFile)
	}
}

// unlockFromKeyFile unlocks l with the passphrase in key file kf.
func (l *lun) unlockFromKeyFile(kf string) {
	pass, err := crypt.ReadKeyFile(kf)
	if err != nil {
		l.log.Error("encrypted LUN stays locked: cannot read its key file", "key_file", kf, "err", err)
		return
	}
	slot, err := l.unlock(pass)
	clear(pass)
	if err != nil {
		l.log.Error("encrypted LUN stays locked: its key file does not unlock it", "key_file", kf, "err", err)
		return
	}
	l.log.Info("encrypted LUN unlocked from its key file", "keyslot", slot)
}

// volume returns the LUN's LUKS2 volume, or nil when it is not encrypted
// or (replicated) not open on this node.
func (l *lun) volume() *crypt.Volume {
	if l.late != nil {
		return l.late.vol.Load()
	}
	return l.vol
}

// unlock gives an encrypted LUN its key and tells initiators it is ready.
func (l *lun) unlock(pass []byte) (int, error) {
	vol := l.volume()
	if vol == nil {
		return -1, errors.New("this node is not primary for the volume: an encrypted replicated volume opens, and takes its key, on the primary")
	}
	slot, err := vol.Unlock(pass)
	if err != nil {
		return -1, err
	}
	l.lu.MediumReady()
	return slot, nil
}

// ClearReservations implements control.ReservationHandler.
func (d *daemon) ClearReservations(_ context.Context, volume string) error {
	l, ok := d.luns[strings.ToLower(volume)]
	if !ok {
		return fmt.Errorf("no LUN has volume_id %q", volume)
	}
	err := l.lu.ClearReservations()
	if errors.Is(err, scsi.ErrNotServed) {
		return fmt.Errorf("%s is not served on this node (a replicated LUN's secondary, or a locked volume): run this where it is primary and ready", l.cfg.VolumeID)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", l.cfg.VolumeID, err)
	}
	l.log.Info("persistent reservations cleared through the control socket")
	return nil
}

// Unlock implements control.Handler.
func (d *daemon) Unlock(_ context.Context, volume string, pass []byte) (int, error) {
	l, ok := d.luns[strings.ToLower(volume)]
	switch {
	case !ok:
		return -1, fmt.Errorf("no LUN has volume_id %q", volume)
	case !l.cfg.Encrypted():
		return -1, fmt.Errorf("%s is not an encrypted LUN", l.cfg.VolumeID)
	}
	slot, err := l.unlock(pass)
	if err != nil {
		l.log.Warn("unlock through the control socket failed", "err", err)
		return -1, fmt.Errorf("%s: %w", l.cfg.VolumeID, err)
	}
	l.log.Info("encrypted LUN unlocked through the control socket", "keyslot", slot)
	return slot, nil
}

// Status implements control.Handler.
func (d *daemon) Status(context.Context) (control.Status, error) {
	var st control.Status
	for _, l := range d.list {
		v := control.VolumeStatus{
			VolumeID:  l.cfg.VolumeID,
			Target:    l.target,
			LUN:       l.cfg.LUN,
			Path:      l.path,
			Size:      l.dev.Size(),
			BlockSize: l.cfg.BlockSize,
			ReadOnly:  l.cfg.ReadOnly,
			Encrypted: l.cfg.Encrypted(),
		}
		if l.cfg.Encrypted() && (l.repl == nil || l.repl.Device().Ready() == nil) {
			v.Locked = l.dev.(scsi.Medium).Ready() != nil
		}
		if l.repl != nil {
			v.Replication = replStatus(l, d.node.Name)
		}
		if l.repl == nil || l.repl.Device().Ready() == nil {
			v.Reservations = reservationStatus(l.lu)
		}
		st.Volumes = append(st.Volumes, v)
	}
	sort.SliceStable(st.Volumes, func(i, j int) bool { return st.Volumes[i].Target < st.Volumes[j].Target })
	return st, nil
}

// close flushes and closes every LUN's devices; an encrypted LUN's key is
// zeroed.
func (d *daemon) close() {
	for _, l := range d.list {
		if l.repl == nil {
			if err := l.dev.Flush(); err != nil {
				l.log.Error("flush on shutdown", "err", err)
			}
		}
		l.dev.Close()
		l.closeBacking()
	}
}

// closeBacking closes a replicated LUN's backing and metadata devices
// (which flushes them).
func (l *lun) closeBacking() {
	for _, b := range l.backing {
		if err := b.Close(); err != nil {
			l.log.Error("close on shutdown", "err", err)
		}
	}
	l.backing = nil
}

// reservationStatus returns lu's persistent reservations for the status,
// nil when it has none.
func reservationStatus(lu *scsi.LU) *control.ReservationStatus {
	r, ok := lu.Reservations()
	if !ok {
		return nil
	}
	reg := func(g scsi.Registration) control.Registration {
		return control.Registration{Initiator: g.Initiator, ISID: fmt.Sprintf("%x", g.ISID), Key: fmt.Sprintf("0x%016x", g.Key)}
	}
	st := &control.ReservationStatus{Generation: r.Generation, Type: r.Type}
	for _, g := range r.Registrations {
		st.Registrations = append(st.Registrations, reg(g))
	}
	if r.Holder != nil {
		h := reg(*r.Holder)
		st.Holder = &h
	}
	return st
}
