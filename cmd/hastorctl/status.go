package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"hastor/config"
	"hastor/internal/control"
)

func cmdStatus(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("status", st)
	addr := daemonFlagsNode(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	watch := fs.Bool("watch", false, "redraw the status until interrupted, with a progress bar for a resync or verify")
	interval := fs.Duration("interval", time.Second, "how often --watch redraws")
	if err := fs.Parse(args); err != nil {
		return errUsage{msg: oneLine(err.Error())}
	}
	if fs.NArg() > 1 {
		return errUsage{msg: fmt.Sprintf("want at most one VOLUME_ID, got %d arguments", fs.NArg())}
	}
	vol := fs.Arg(0)
	cl, err := dialNode(ctx, *addr.cfgPath, *addr.socket, *addr.node)
	if err != nil {
		return err
	}
	defer cl.Close()
	get := func() (*control.Status, error) {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		resp, err := cl.Call(cctx, control.Request{Op: control.OpStatus})
		if err != nil {
			return nil, err
		}
		s := resp.Status
		if vol != "" {
			var keep []control.VolumeStatus
			for _, v := range s.Volumes {
				if strings.EqualFold(v.VolumeID, vol) {
					keep = append(keep, v)
				}
			}
			if len(keep) == 0 {
				return nil, fmt.Errorf("hastord serves no LUN with volume_id %q", vol)
			}
			s.Volumes = keep
		}
		return s, nil
	}
	show := func(s *control.Status) {
		if *asJSON {
			b, _ := json.MarshalIndent(s, "", "  ")
			fmt.Fprintf(st.out, "%s\n", b)
			return
		}
		printStatus(st.out, s, *watch)
	}
	s, err := get()
	if err != nil {
		return err
	}
	show(s)
	if !*watch {
		return nil
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if s, err = get(); err != nil {
			return err
		}
		if isTerminal(st.out) {
			fmt.Fprint(st.out, "\x1b[H\x1b[2J") // home, clear screen
		} else {
			fmt.Fprintln(st.out, "--", time.Now().Format(time.TimeOnly))
		}
		show(s)
	}
}

// isTerminal reports whether w is a terminal (then --watch redraws in
// place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && isatty(f.Fd())
}

// printStatus prints the LUN table, then each replicated LUN as drbdadm
// status would; bar adds a progress bar to a running resync or verify.
func printStatus(w io.Writer, s *control.Status, bar bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tTARGET\tLUN\tSIZE\tBLOCK\tSTATE\tPATH")
	for _, v := range s.Volumes {
		state := "ready"
		switch {
		case v.Locked:
			state = "locked (hastorctl unlock " + v.VolumeID + ")"
		case v.Encrypted:
			state = "unlocked"
		}
		if r := v.Replication; r != nil {
			state = strings.ToLower(r.Role)
			if v.Locked {
				state += ", locked"
			}
		}
		if v.ReadOnly {
			state += ", read-only"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", v.VolumeID, v.Target, v.LUN, config.ByteSize(v.Size), v.BlockSize, state, v.Path)
	}
	tw.Flush()
	for _, v := range s.Volumes {
		if v.Replication != nil {
			fmt.Fprintln(w)
			printReplication(w, v.VolumeID, v.Replication, bar)
		}
	}
	for _, v := range s.Volumes {
		if r := v.Reservations; r != nil {
			fmt.Fprintln(w)
			printReservations(w, v.VolumeID, r)
		}
	}
}

// printReservations prints a LUN's persistent reservations: what sg_persist
// would show an initiator, from the target's side.
func printReservations(w io.Writer, vol string, r *control.ReservationStatus) {
	port := func(g control.Registration) string {
		return fmt.Sprintf("%s (ISID %s, key %s)", g.Initiator, g.ISID, g.Key)
	}
	switch {
	case r.Type == "":
		fmt.Fprintf(w, "%s reservations: none held, generation %d\n", vol, r.Generation)
	case r.Holder != nil:
		fmt.Fprintf(w, "%s reservations: %s held by %s, generation %d\n", vol, r.Type, port(*r.Holder), r.Generation)
	default:
		fmt.Fprintf(w, "%s reservations: %s held by every registrant, generation %d\n", vol, r.Type, r.Generation)
	}
	for _, g := range r.Registrations {
		fmt.Fprintf(w, "  registered: %s\n", port(g))
	}
}

// printReplication prints one replicated LUN in drbdadm status's layout.
func printReplication(w io.Writer, vol string, r *control.ReplicationStatus, bar bool) {
	fmt.Fprintf(w, "%s role:%s\n", vol, r.Role)
	disk := r.Disk
	if r.Detached {
		disk += " (detached: I/O goes through the peer)"
	}
	fmt.Fprintf(w, "  disk:%s\n", disk)
	fmt.Fprintf(w, "  %s role:%s connection:%s protocol:%s\n", r.Peer, r.PeerRole, r.Connection, r.Protocol)
	fmt.Fprintf(w, "    peer-disk:%s\n", r.PeerDisk)
	if p := r.Resync; p != nil {
		fmt.Fprintf(w, "    %s\n", progressLine(p, bar))
	}
	var paths []string
	for _, p := range r.Paths {
		state := fmt.Sprintf("data %d/%d up", p.DataUp, p.DataConns)
		if p.ControlUp {
			state += ", control up"
		} else {
			state += ", control down"
		}
		if p.DataUp == 0 && !p.ControlUp {
			state = "DOWN"
		}
		paths = append(paths, fmt.Sprintf("%s <-> %s %s", p.Local, p.Remote, state))
	}
	if len(paths) > 0 {
		fmt.Fprintf(w, "    paths: %s\n", strings.Join(paths, "; "))
	}
	c := r.Counters
	fmt.Fprintf(w, "    out-of-sync: %s  sent: %s  received: %s  written: %s  read: %s  pending: %d  unacked: %d  al-writes: %d  bm-writes: %d  resynced: %s\n",
		human(r.OutOfSync), human(c.Sent), human(c.Received), human(c.DiskWrite), human(c.DiskRead), c.Pending, c.Unacked, c.ALWrites, c.BMWrites, human(c.ResyncBytes))
	if r.Message != "" {
		fmt.Fprintf(w, "  !! %s\n", r.Message)
	}
}

// progressLine describes a resync or verify, with a bar if asked.
func progressLine(p *control.Progress, bar bool) string {
	pct := 100.0
	if p.Total > 0 {
		pct = 100 * float64(p.Done) / float64(p.Total)
	}
	what := fmt.Sprintf("%s %s", p.Kind, p.Direction)
	if p.Kind == "verify" {
		what = "verify"
	}
	s := fmt.Sprintf("%s: %.1f%% (%s of %s) %s/s eta %s", what, pct, human(p.Done), human(p.Total), human(p.RateBps), eta(p.ETASeconds))
	if p.Kind == "verify" {
		s += fmt.Sprintf(", found %s out of sync", human(p.Found))
	}
	if bar {
		const width = 30
		n := int(pct / 100 * width)
		s = "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] " + s
	}
	return s
}

func eta(sec int64) string {
	if sec < 0 {
		return "--"
	}
	if sec >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	}
	return fmt.Sprintf("%d:%02d", sec/60, sec%60)
}

// human formats bytes with binary units and one decimal.
func human(n int64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1f TiB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func isatty(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}
