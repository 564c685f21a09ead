package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"hastor/blockdev"
	"hastor/config"
	"hastor/internal/control"
	"hastor/replication"
	"hastor/replication/genid"
	"hastor/replication/meta"
	"hastor/replication/transport"
)

// openReplicated opens a replicated LUN's backing device and metadata on
// this node and returns its replication node (not yet running) and the
// device the LUN (or its encryption layer) uses.
func (d *daemon) openReplicated(cfg *config.Config, lc *config.LUN, path string, pool *blockdev.Pool, l *lun) error {
	r := lc.Replication
	local := d.node.Name
	peer := r.Peer(local)
	inner, err := blockdev.Open(path, blockdev.Options{
		Size:      int64(lc.Size),
		Create:    true, // an encrypted LUN's header comes with the first sync
		BlockSize: lc.BlockSize,
	})
	if err != nil {
		return err
	}
	l.backing = append(l.backing, inner)
	var metaDev blockdev.Device
	if internal, mpath := r.MetaPathFor(local, cfg.StateDirFor(d.node)); !internal {
		m, err := blockdev.Open(mpath, blockdev.Options{
			Size:      meta.MetaSizeFor(inner.Size()/meta.BlockSize*meta.BlockSize, r.ALExtents),
			Create:    true,
			BlockSize: meta.BlockSize,
		})
		if err != nil {
			return fmt.Errorf("replication metadata: %w", err)
		}
		l.backing = append(l.backing, m)
		metaDev = m
	}
	proto, _ := replication.ParseProtocol(r.Protocol)
	policy, err := genid.ParsePolicy(r.SplitBrain)
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if r.TLS != nil {
		if tlsCfg, err = loadTLS(r.TLS); err != nil {
			return fmt.Errorf("replication.tls: %w", err)
		}
	}
	var paths []transport.Path
	for _, p := range r.Paths {
		paths = append(paths, transport.Path{Local: p[local], Remote: p[peer]})
	}
	timeout := time.Duration(r.Timeout)
	n, err := replication.Open(replication.Options{
		Name:      lc.VolumeID,
		Data:      inner,
		Meta:      metaDev,
		ALExtents: r.ALExtents,
		Machine: replication.MachineConfig{
			Protocol:    proto,
			Tiebreak:    r.Dials(local),
			Policy:      policy,
			MinRate:     int64(r.Resync.MinRate),
			MaxRate:     int64(r.Resync.MaxRate),
			Checksum:    r.Resync.Checksum,
			PeerTimeout: timeout * time.Duration(r.KoCount),
		},
		Link: transport.Config{
			Resource:          lc.VolumeID,
			LocalNode:         local,
			PeerNode:          peer,
			Paths:             paths,
			ConnsPerPath:      r.ConnectionsPerPath,
			Dial:              r.Dials(local),
			Secret:            []byte(r.Secret),
			TLS:               tlsCfg,
			CRC:               r.CRC,
			PingInterval:      time.Duration(r.PingInterval),
			Timeout:           timeout,
			KoCount:           r.KoCount,
			ReconnectInterval: time.Second,
		},
		Pool:   pool,
		Logger: l.log.With("peer", peer),
		OnChange: func() {
			if l.late != nil {
				l.kickVolume() // it tells initiators once unlocked
				return
			}
			// Initiators hear of the change from standby to active
			// once, by a unit attention.
			ready := l.repl.Device().Ready() == nil
			if l.wasReady.Swap(ready) != ready && ready && l.lu != nil {
				l.lu.MediumReady()
			}
		},
	})
	if err != nil {
		return err
	}
	l.repl = n
	l.dev = n.Device()
	return nil
}

func loadTLS(t *config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no PEM certificate", t.CAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// replicated returns the replicated LUN with volume_id volume.
func (d *daemon) replicated(volume string) (*lun, error) {
	l, ok := d.luns[strings.ToLower(volume)]
	switch {
	case !ok:
		return nil, fmt.Errorf("no LUN has volume_id %q", volume)
	case l.repl == nil:
		return nil, fmt.Errorf("%s is not a replicated LUN", l.cfg.VolumeID)
	}
	return l, nil
}

// Primary implements control.ReplicationHandler.
func (d *daemon) Primary(ctx context.Context, volume string, force bool) error {
	l, err := d.replicated(volume)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := l.repl.Promote(ctx, force); err != nil {
		return fmt.Errorf("%s: %w", l.cfg.VolumeID, err)
	}
	l.log.Info("promoted to primary", "force", force)
	return nil
}

// Secondary implements control.ReplicationHandler.
func (d *daemon) Secondary(ctx context.Context, volume string) error {
	l, err := d.replicated(volume)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := l.repl.Demote(ctx); err != nil {
		return fmt.Errorf("%s: %w", l.cfg.VolumeID, err)
	}
	l.log.Info("demoted to secondary")
	return nil
}

// Connect implements control.ReplicationHandler.
func (d *daemon) Connect(_ context.Context, volume string, discard bool) error {
	l, err := d.replicated(volume)
	if err != nil {
		return err
	}
	return l.repl.Connect(discard)
}

// Disconnect implements control.ReplicationHandler.
func (d *daemon) Disconnect(_ context.Context, volume string) error {
	l, err := d.replicated(volume)
	if err != nil {
		return err
	}
	return l.repl.Disconnect()
}

// Verify implements control.ReplicationHandler.
func (d *daemon) Verify(_ context.Context, volume string) error {
	l, err := d.replicated(volume)
	if err != nil {
		return err
	}
	if err := l.repl.Verify(); err != nil {
		return fmt.Errorf("%s: %w", l.cfg.VolumeID, err)
	}
	l.log.Info("online verify started")
	return nil
}

// Invalidate implements control.ReplicationHandler.
func (d *daemon) Invalidate(_ context.Context, volume string) error {
	l, err := d.replicated(volume)
	if err != nil {
		return err
	}
	return l.repl.Invalidate()
}

// replStatus converts a node's status for hastorctl.
func replStatus(l *lun, local string) *control.ReplicationStatus {
	st := l.repl.Status()
	rs := &control.ReplicationStatus{
		Node:       local,
		Peer:       l.cfg.Replication.Peer(local),
		Role:       st.Role.String(),
		PeerRole:   "Unknown",
		Connection: st.Conn.String(),
		Disk:       st.Disk.String(),
		PeerDisk:   st.PeerDisk.String(),
		Protocol:   st.Protocol.String(),
		OutOfSync:  int64(st.OutOfSync),
		Message:    st.Message,
		Detached:   st.Disk == replication.DiskFailed,
		Counters: control.Counters{
			Sent:        int64(st.Counters.Sent),
			Received:    int64(st.Counters.Received),
			DiskWrite:   int64(st.Counters.DiskWrite),
			DiskRead:    int64(st.Counters.DiskRead),
			Pending:     int64(st.Pending),
			Unacked:     int64(st.Unacked),
			ALWrites:    int64(st.ALWrites),
			BMWrites:    int64(st.BMWrites),
			ResyncBytes: int64(st.Counters.ResyncBytes),
		},
	}
	if st.PeerKnown {
		rs.PeerRole = st.PeerRole.String()
	}
	progress := func(p *control.Progress, el time.Duration) *control.Progress {
		p.ETASeconds = -1
		if el > 0 && p.Done > 0 {
			p.RateBps = int64(float64(p.Done) / el.Seconds())
			if p.RateBps > 0 {
				p.ETASeconds = (p.Total - p.Done) / p.RateBps
			}
		}
		return p
	}
	switch {
	case st.Resync:
		p := &control.Progress{Kind: "bitmap", Direction: "target", Done: int64(st.ResyncDone), Total: int64(st.ResyncTotal)}
		if st.ResyncFull {
			p.Kind = "full"
		}
		if st.ResyncSource {
			p.Direction = "source"
		}
		rs.Resync = progress(p, st.ResyncElapsed)
	case st.Verify:
		rs.Resync = progress(&control.Progress{Kind: "verify", Direction: "source", Done: int64(st.VerifyDone),
			Total: int64(st.VerifyTotal), Found: int64(st.VerifyFound)}, st.VerifyElapsed)
	}
	for _, ps := range st.Link.Paths {
		rs.Paths = append(rs.Paths, control.PathStatus{Local: ps.Local, Remote: ps.Remote, DataConns: ps.DataConns, DataUp: ps.DataUp,
			ControlUp: ps.ControlUp, Sent: ps.BytesSent, Received: ps.BytesReceived})
	}
	return rs
}
