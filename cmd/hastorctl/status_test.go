package main

import (
	"strings"
	"testing"

	"hastor/internal/control"
)

func TestPrintReplication(t *testing.T) {
	st := &control.Status{Volumes: []control.VolumeStatus{{
		VolumeID: "vm0", Target: "iqn.2026-11.dev.hastor:t", Size: 1 << 30, BlockSize: 512, Path: "/dev/vg/vm0",
		Replication: &control.ReplicationStatus{
			Node: "alpha", Peer: "beta", Role: "Primary", PeerRole: "Secondary", Connection: "SyncSource",
			Disk: "UpToDate", PeerDisk: "Inconsistent", Protocol: "C", OutOfSync: 593 << 20,
			Resync: &control.Progress{Kind: "full", Direction: "source", Done: 431 << 20, Total: 1 << 30, RateBps: 95 << 20, ETASeconds: 6},
			Paths: []control.PathStatus{
				{Local: "10.0.1.1:7789", Remote: "10.0.1.2:7789", DataConns: 2, DataUp: 2, ControlUp: true},
				{Local: "10.0.2.1:7789", Remote: "10.0.2.2:7789", DataConns: 2},
			},
			Counters: control.Counters{Sent: 431 << 20, Pending: 3, ALWrites: 12, BMWrites: 40},
			Message:  "split brain: do something",
		},
	}}}
	var b strings.Builder
	printStatus(&b, st, true)
	out := b.String()
	for _, want := range []string{
		"vm0 role:Primary\n",
		"  disk:UpToDate\n",
		"  beta role:Secondary connection:SyncSource protocol:C\n",
		"    peer-disk:Inconsistent\n",
		"[############.................." + "] full source: 42.1% (431.0 MiB of 1.0 GiB) 95.0 MiB/s eta 0:06",
		"10.0.1.1:7789 <-> 10.0.1.2:7789 data 2/2 up, control up; 10.0.2.1:7789 <-> 10.0.2.2:7789 DOWN",
		"out-of-sync: 593.0 MiB  sent: 431.0 MiB",
		"pending: 3", "al-writes: 12  bm-writes: 40",
		"  !! split brain: do something\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if eta(-1) != "--" || eta(3725) != "1:02:05" {
		t.Errorf("eta: %q %q", eta(-1), eta(3725))
	}
}

func TestPrintReservations(t *testing.T) {
	a := control.Registration{Initiator: "iqn.1998-01.com.vmware:esx1", ISID: "00023d000001", Key: "0x0000000000000abc"}
	b := control.Registration{Initiator: "iqn.1998-01.com.vmware:esx2", ISID: "00023d000002", Key: "0x0000000000000def"}
	st := &control.Status{Volumes: []control.VolumeStatus{{
		VolumeID: "ds1", Target: "iqn.2026-11.dev.hastor:t", Size: 1 << 30, BlockSize: 512, Path: "/srv/ds1.img",
		Reservations: &control.ReservationStatus{Generation: 4, Type: "Write Exclusive, Registrants Only",
			Registrations: []control.Registration{a, b}, Holder: &a},
	}}}
	var w strings.Builder
	printStatus(&w, st, false)
	for _, want := range []string{
		"ds1 reservations: Write Exclusive, Registrants Only held by iqn.1998-01.com.vmware:esx1 (ISID 00023d000001, key 0x0000000000000abc), generation 4\n",
		"  registered: iqn.1998-01.com.vmware:esx2 (ISID 00023d000002, key 0x0000000000000def)\n",
	} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, w.String())
		}
	}
}
