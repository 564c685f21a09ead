package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ACL decides which initiators may log in to a target.
//
// Each entry of Allow and Deny is one of:
//   - an iSCSI initiator name, such as iqn.1998-01.com.vmware:esx01-4c0c7a3e.
//     It matches by name, whatever address the initiator uses. Names compare
//     without regard to case.
//   - an IP address, such as 192.0.2.10 or 2001:db8::10. It matches that
//     address, whatever name the initiator gives.
//   - a CIDR prefix, such as 192.0.2.0/24 or 2001:db8::/64. It matches every
//     address inside the prefix. Host bits must be zero.
//
// IPv4 clients that reach a dual-stack IPv6 socket appear as IPv4-mapped
// addresses (::ffff:192.0.2.10). They match IPv4 entries.
//
// Deny wins over Allow. An empty Allow list admits every initiator that Deny
// does not match. Take care: an allow list that holds only names lets anyone
// in who claims one of those names, so use CHAP as well.
type ACL struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`

	// Pre-parsed by compile. Permits does not allocate.
	allow, deny aclSet
	compiled    bool
}

type aclSet struct {
	names    []string
	prefixes []netip.Prefix // a single address is a full-length prefix
}

func (s *aclSet) empty() bool { return len(s.names) == 0 && len(s.prefixes) == 0 }

func (s *aclSet) match(name string, addr netip.Addr) bool {
	if name != "" {
		for _, n := range s.names {
			if strings.EqualFold(n, name) {
				return true
			}
		}
	}
	if addr.IsValid() {
		for _, p := range s.prefixes {
			if p.Contains(addr) {
				return true
			}
		}
	}
	return false
}

// Permits reports whether the initiator called initiatorName, connecting
// from addr, may log in. Deny wins over Allow. An empty Allow list admits
// everyone that Deny does not match. A non-empty Allow list admits only an
// initiator that matches one of its entries by name or by address.
//
// Permits does not allocate. It works on an ACL that came from Load, Parse or
// NewACL. On an ACL whose lists were filled in by hand, it fails closed: it
// returns false unless both lists are empty.
func (a *ACL) Permits(initiatorName string, addr netip.Addr) bool {
	if !a.compiled {
		return len(a.Allow) == 0 && len(a.Deny) == 0
	}
	addr = addr.Unmap().WithZone("")
	if a.deny.match(initiatorName, addr) {
		return false
	}
	return a.allow.empty() || a.allow.match(initiatorName, addr)
}

// NewACL checks and pre-parses allow and deny lists, as Load does for each
// target's initiators section. Problems name the entries "allow[i]" and
// "deny[i]".
func NewACL(allow, deny []string) (ACL, error) {
	a := ACL{Allow: allow, Deny: deny}
	var problems []Problem
	a.compile("", func(field, msg string) { problems = append(problems, Problem{Field: field, Message: msg}) })
	if len(problems) > 0 {
		return ACL{}, &ValidationError{Problems: problems}
	}
	return a, nil
}

// compile parses the entries, reporting each bad one to report under path.
func (a *ACL) compile(path string, report func(field, msg string)) {
	a.allow = compileSet(joinPath(path, "allow"), a.Allow, report)
	a.deny = compileSet(joinPath(path, "deny"), a.Deny, report)
	a.compiled = true
}

func compileSet(path string, entries []string, report func(field, msg string)) aclSet {
	var s aclSet
	seen := make(map[string]int, len(entries))
	for i, e := range entries {
		field := path + "[" + strconv.Itoa(i) + "]"
		key, err := s.add(e)
		if err != nil {
			report(field, err.Error())
			continue
		}
		if j, dup := seen[key]; dup {
			report(field, fmt.Sprintf("duplicate of %s[%d]", path, j))
			continue
		}
		seen[key] = i
	}
	return s
}

// add parses one entry into s and returns its canonical form.
func (s *aclSet) add(e string) (string, error) {
	if len(e) >= 4 && (strings.EqualFold(e[:4], "iqn.") || strings.EqualFold(e[:4], "eui.") || strings.EqualFold(e[:4], "naa.")) {
		if err := checkISCSIName(e); err != nil {
			return "", err
		}
		s.names = append(s.names, e)
		return e, nil
	}
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return "", fmt.Errorf("%q is not a valid CIDR prefix such as 192.0.2.0/24 or 2001:db8::/64", e)
		}
		if m := p.Masked(); m != p {
			return "", fmt.Errorf("prefix %q has host bits set; did you mean %q?", e, m.String())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		s.prefixes = append(s.prefixes, p)
		return p.String(), nil
	}
	addr, err := netip.ParseAddr(e)
	if err != nil {
		return "", fmt.Errorf("want an iSCSI name (iqn., eui. or naa.), an IP address or a CIDR prefix, got %q", e)
	}
	if addr.Zone() != "" {
		return "", fmt.Errorf("address %q has a zone; zones name host interfaces and are not allowed in a file shared by all nodes", e)
	}
	addr = addr.Unmap()
	p := netip.PrefixFrom(addr, addr.BitLen())
	s.prefixes = append(s.prefixes, p)
	return p.String(), nil
}
