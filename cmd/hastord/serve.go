package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"hastor/blockdev"
	"hastor/config"
	"hastor/internal/control"
	"hastor/target"
	"hastor/target/login"
	"hastor/target/scsi"
)

// serve opens every LUN, listens on every portal and on the control socket,
// and serves until ctx ends.
func serve(ctx context.Context, cfg *config.Config, node *config.Node, log *slog.Logger) error {
	stateDir := cfg.StateDirFor(node)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if node != nil {
		log = log.With("node", node.Name)
	}
	d := &daemon{log: log, node: node, luns: map[string]*lun{}, pool: blockdev.NewPool()}
	defer d.close()
	opts := target.Options{
		Portals:          cfg.Portals,
		Discovery:        auth(cfg.Discovery.Auth),
		Limits:           limits(cfg.ISCSI),
		QueueDepth:       cfg.ISCSI.QueueDepth,
		NopInInterval:    time.Duration(cfg.ISCSI.NopInInterval),
		NopInTimeout:     time.Duration(cfg.ISCSI.NopInTimeout),
		MaxTransferBytes: maxTransfer,
		Pool:             d.pool,
		Logger:           log,
	}
	for ti := range cfg.Targets {
		tc := &cfg.Targets[ti]
		var lus []*scsi.LU // indexed by LUN number
		for li := range tc.LUNs {
			l, err := d.openLUN(cfg, tc, &tc.LUNs[li])
			if err != nil {
				return fmt.Errorf("targets[%d].luns[%d]: %w", ti, li, err)
			}
			for len(lus) <= l.cfg.LUN {
				lus = append(lus, nil)
			}
			lus[l.cfg.LUN] = l.lu
		}
		st, err := scsi.NewTarget(tc.IQN, lus)
		if err != nil {
			return fmt.Errorf("targets[%d]: %w", ti, err)
		}
		acl := tc.Initiators
		opts.Targets = append(opts.Targets, &target.Target{
			Name:  tc.IQN,
			Alias: tc.Alias,
			Auth:  auth(tc.Auth),
			ACL:   &acl,
			SCSI:  st,
		})
	}
	d.unlockFromKeyFiles()
	// Replication runs until the iSCSI server has shut down, so that
	// commands in flight complete as their protocol promises.
	rctx, cancelRepl := context.WithCancel(context.Background())
	var rwg sync.WaitGroup
	defer func() {
		cancelRepl()
		rwg.Wait()
	}()
	for _, l := range d.list {
		if l.repl == nil {
			continue
		}
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			if err := l.repl.Run(rctx); err != nil {
				l.log.Error("replication stopped", "err", err)
			}
		}()
		if l.late != nil {
			rwg.Add(1)
			go func() { defer rwg.Done(); l.runVolume(rctx) }()
			l.kickVolume()
		}
	}
	ctlPath := cfg.ControlSocketFor(node)
	ctl, err := control.Listen(ctlPath)
	if err != nil {
		return err
	}
	srv, err := target.New(opts)
	if err != nil {
		ctl.Close()
		return err
	}
	var lns []net.Listener
	for _, p := range cfg.Portals {
		ln, err := net.Listen("tcp", p)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			ctl.Close()
			return fmt.Errorf("portals: listen on %s: %w", p, err)
		}
		lns = append(lns, ln)
		log.Info("listening", "portal", ln.Addr().String())
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(lns)+1)
	cctx, cancelControl := context.WithCancel(ctx)
	defer cancelControl()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := control.Serve(cctx, ctl, d, log); err != nil {
			errc <- err
		}
	}()
	log.Info("control socket ready", "path", ctlPath)
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx, ln); err != nil && !errors.Is(err, target.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Error("shutdown", "err", serr)
	}
	cancelControl()
	wg.Wait()
	return err
}

// maxTransfer bounds one command's data buffer; it is advertised in the
// Block Limits VPD page.
const maxTransfer = 8 << 20

func auth(a config.Auth) target.Auth {
	var out target.Auth
	if a.CHAP != nil {
		out.CHAP = &login.Secret{Name: a.CHAP.Username, Secret: a.CHAP.Secret}
	}
	if a.MutualCHAP != nil {
		out.Mutual = &login.Secret{Name: a.MutualCHAP.Username, Secret: a.MutualCHAP.Secret}
	}
	return out
}

func limits(n config.Negotiation) login.Limits {
	return login.Limits{
		MaxRecvDataSegmentLength: n.MaxRecvDataSegmentLength,
		MaxBurstLength:           n.MaxBurstLength,
		FirstBurstLength:         n.FirstBurstLength,
		MaxOutstandingR2T:        n.MaxOutstandingR2T,
		DefaultTime2Wait:         n.DefaultTime2Wait,
		DefaultTime2Retain:       n.DefaultTime2Retain,
		ImmediateData:            n.ImmediateData,
		InitialR2T:               n.InitialR2T,
		HeaderDigests:            n.HeaderDigest,
		DataDigests:              n.DataDigest,
	}
}
