package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// RFC 7143 §4.2.7.
func TestValidateISCSIName(t *testing.T) {
	valid := []string{
		"iqn.2026-11.dev.hastor:quickstart",
		"iqn.2001-04.com.example",
		"iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
		"iqn.1998-01.com.vmware:esx01-4c0c7a3e",
		"iqn.2004-10.com.ubuntu:01:c1e1f3a9b2",
		"iqn.1991-05.com.microsoft:host.example.com",
		"iqn.2026-12.x",
		"iqn.2026-01.dev.hastor:ünïcode",
		"eui.02004567a425678d",
		"naa.52004567ba64678d",
		"naa.62004567ba64678d0123456789abcdef",
		"iqn.2026-11.a:" + strings.Repeat("x", MaxISCSINameLen-len("iqn.2026-11.a:")),
	}
	for _, n := range valid {
		if err := ValidateISCSIName(n); err != nil {
			t.Errorf("ValidateISCSIName(%q) = %v", n, err)
		}
	}
	invalid := map[string]string{
		"": "required",
		"iqn.2026-11.a:" + strings.Repeat("x", MaxISCSINameLen-len("iqn.2026-11.a:")+1): "at most 223 bytes",
		"IQN.2026-11.dev.hastor:t":      `write "iqn.2026-11.dev.hastor:t"`,
		"eui.02004567A425678D":          `write "eui.02004567a425678d"`,
		"iqn.2026-11.dev.hastor:a b":    `character ' '`,
		"iqn.2026-11.dev.hastor:a_b":    `character '_'`,
		"iqn.2026-11.dev.hastor:a/b":    `character '/'`,
		"iqn.2026-11.dev.hastor:\x00":   `character '\x00'`,
		"iqn.2026-11.dev.hastor:\xff":   "UTF-8",
		"iqn.2026-11.dev.hastor:\u2603": "not allowed",
		"iqn.2026-13.dev.hastor:t":      "month 13",
		"iqn.2026-00.dev.hastor:t":      "month 00",
		"iqn.26-11.dev.hastor:t":        "date YYYY-MM",
		"iqn.2026-11":                   "date YYYY-MM",
		"iqn.2026-11.":                  "reversed domain name after the date",
		"iqn.2026-11.:t":                "reversed domain name after the date",
		"iqn.2026-11..hastor:t":         "is not a reversed domain name",
		"iqn.2026-11.dev.:t":            "is not a reversed domain name",
		"iqn.2026-11.dev.hastor:":       "nothing follows ':'",
		"iqn.2026/11.dev.hastor:t":      "character '/'",
		"eui.02004567a425678":           "16 hex digits",
		"eui.02004567a425678dd":         "16 hex digits",
		"eui.02004567a425678g":          "16 hex digits",
		"naa.52004567ba64678d0":         "16 or 32 hex digits",
		"naa.":                          "16 or 32 hex digits",
		"target1":                       "starts with iqn., eui. or naa.",
		"iqn":                           "starts with iqn., eui. or naa.",
	}
	for n, want := range invalid {
		err := ValidateISCSIName(n)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateISCSIName(%q) = %v, want an error containing %q", n, err, want)
		}
	}
}

func TestACLPermits(t *testing.T) {
	const (
		esx   = "iqn.1998-01.com.vmware:esx01"
		linux = "iqn.2004-10.com.ubuntu:01:abc"
		other = "iqn.2026-11.dev.other:x"
	)
	ip := netip.MustParseAddr
	cases := []struct {
		name        string
		allow, deny []string
		initiator   string
		addr        netip.Addr
		want        bool
	}{
		{"empty lists allow all", nil, nil, other, ip("198.51.100.1"), true},
		{"empty lists, no address", nil, nil, other, netip.Addr{}, true},
		{"allow by name", []string{esx}, nil, esx, ip("198.51.100.1"), true},
		{"allow by name, any case", []string{esx}, nil, strings.ToUpper(esx), ip("198.51.100.1"), true},
		{"name not listed", []string{esx}, nil, linux, ip("198.51.100.1"), false},
		{"empty name never matches", []string{esx}, nil, "", ip("198.51.100.1"), false},
		{"allow by v4 address", []string{"192.0.2.10"}, nil, other, ip("192.0.2.10"), true},
		{"v4 address differs", []string{"192.0.2.10"}, nil, other, ip("192.0.2.11"), false},
		{"allow by v4 prefix", []string{"192.0.2.0/24"}, nil, other, ip("192.0.2.200"), true},
		{"outside v4 prefix", []string{"192.0.2.0/24"}, nil, other, ip("192.0.3.1"), false},
		{"v4-mapped client matches v4 entry", []string{"192.0.2.0/24"}, nil, other, ip("::ffff:192.0.2.7"), true},
		{"v4-mapped entry matches v4 client", []string{"::ffff:192.0.2.7"}, nil, other, ip("192.0.2.7"), true},
		{"v4-mapped prefix entry", []string{"::ffff:192.0.2.0/120"}, nil, other, ip("192.0.2.7"), true},
		{"allow by v6 address", []string{"2001:db8::10"}, nil, other, ip("2001:db8::10"), true},
		{"allow by v6 prefix", []string{"2001:db8::/32"}, nil, other, ip("2001:db8:ffff::1"), true},
		{"outside v6 prefix", []string{"2001:db8::/32"}, nil, other, ip("2001:db9::1"), false},
		{"v6 client with zone", []string{"fe80::/10"}, nil, other, ip("fe80::1%eth0"), true},
		{"v4 entry does not match v6", []string{"0.0.0.0/0"}, nil, other, ip("2001:db8::1"), false},
		{"invalid address matches no prefix", []string{"0.0.0.0/0"}, nil, other, netip.Addr{}, false},
		{"name or address: address", []string{esx, "192.0.2.0/24"}, nil, linux, ip("192.0.2.1"), true},
		{"name or address: name", []string{esx, "192.0.2.0/24"}, nil, esx, ip("203.0.113.1"), true},
		{"deny by name", nil, []string{esx}, esx, ip("192.0.2.1"), false},
		{"deny by name lets others in", nil, []string{esx}, linux, ip("192.0.2.1"), true},
		{"deny by address", nil, []string{"192.0.2.66"}, other, ip("192.0.2.66"), false},
		{"deny by prefix", nil, []string{"192.0.2.0/25"}, other, ip("192.0.2.5"), false},
		{"deny wins over allow by name", []string{esx}, []string{esx}, esx, ip("192.0.2.1"), false},
		{"deny address wins over allowed name", []string{esx}, []string{"192.0.2.66"}, esx, ip("192.0.2.66"), false},
		{"deny name wins over allowed prefix", []string{"192.0.2.0/24"}, []string{esx}, esx, ip("192.0.2.1"), false},
		{"deny host inside allowed prefix", []string{"192.0.2.0/24"}, []string{"192.0.2.66"}, other, ip("192.0.2.67"), true},
		{"deny everything v6", nil, []string{"::/0"}, other, ip("2001:db8::1"), false},
		{"deny v6 everything does not catch v4", nil, []string{"::/0"}, other, ip("192.0.2.1"), true},
	}
	for _, tc := range cases {
		a, err := NewACL(tc.allow, tc.deny)
		if err != nil {
			t.Fatalf("%s: NewACL: %v", tc.name, err)
		}
		if got := a.Permits(tc.initiator, tc.addr); got != tc.want {
			t.Errorf("%s: Permits(%q, %v) = %v, want %v", tc.name, tc.initiator, tc.addr, got, tc.want)
		}
	}
}

func TestNewACLErrors(t *testing.T) {
	_, err := NewACL([]string{"192.0.2.1", "bogus", "192.0.2.1"}, []string{"10.0.0.1/8"})
	wantProblems(t, err,
		"allow[1]: want an iSCSI name",
		"allow[2]: duplicate of allow[0]",
		`deny[0]: did you mean "10.0.0.0/8"?`)
}

// An ACL filled in by hand was never checked. Permits must not treat its
// unparsed allow list as empty, which would let everyone in.
func TestACLFailsClosedWhenNotCompiled(t *testing.T) {
	a := ACL{Allow: []string{"192.0.2.1"}}
	if a.Permits("iqn.2026-11.a:b", netip.MustParseAddr("192.0.2.1")) {
		t.Error("uncompiled ACL with entries permitted a login")
	}
	var zero ACL
	if !zero.Permits("iqn.2026-11.a:b", netip.MustParseAddr("192.0.2.1")) {
		t.Error("zero ACL must permit everyone")
	}
}

func TestACLFromFile(t *testing.T) {
	cfg := mustParse(t, withTarget(`{iqn: iqn.2026-11.dev.hastor:t, initiators: {allow: [iqn.1998-01.com.vmware:esx1, "2001:db8::/32"], deny: ["2001:db8::66"]}, luns: [`+lun0+`]}`), nil)
	acl := &cfg.Targets[0].Initiators
	if !acl.Permits("iqn.1998-01.com.vmware:esx1", netip.MustParseAddr("203.0.113.9")) ||
		!acl.Permits("iqn.2026-11.x:y", netip.MustParseAddr("2001:db8::1")) ||
		acl.Permits("iqn.1998-01.com.vmware:esx1", netip.MustParseAddr("2001:db8::66")) ||
		acl.Permits("iqn.2026-11.x:y", netip.MustParseAddr("203.0.113.9")) {
		t.Error("ACL loaded from the file behaves wrongly")
	}
}

func TestACLPermitsDoesNotAllocate(t *testing.T) {
	a, err := NewACL(
		[]string{"iqn.1998-01.com.vmware:esx01", "iqn.1998-01.com.vmware:esx02", "192.0.2.0/24", "2001:db8::/32"},
		[]string{"192.0.2.66", "iqn.2026-11.dev.bad:x"})
	if err != nil {
		t.Fatal(err)
	}
	addrs := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.66"),
		netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("2001:db8::1"),
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, ad := range addrs {
			a.Permits("IQN.1998-01.com.vmware:esx02", ad)
			a.Permits("iqn.2026-11.dev.other:y", ad)
		}
	})
	if allocs != 0 {
		t.Errorf("Permits allocates %v times per run", allocs)
	}
}

func BenchmarkACLPermits(b *testing.B) {
	a, err := NewACL(
		[]string{"iqn.1998-01.com.vmware:esx01", "iqn.1998-01.com.vmware:esx02", "192.0.2.0/24", "2001:db8::/32"},
		[]string{"192.0.2.66", "iqn.2026-11.dev.bad:x"})
	if err != nil {
		b.Fatal(err)
	}
	addr := netip.MustParseAddr("::ffff:198.51.100.7")
	b.ReportAllocs()
	for b.Loop() {
		if a.Permits("iqn.1998-01.com.vmware:esx02", addr) != true {
			b.Fatal("denied")
		}
	}
}
