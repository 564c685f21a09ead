package target

import (
	"net"
	"net/netip"
	"strconv"

	"hastor/target/login"
	"hastor/target/pdu"
)

// textState holds a Text Response too long for one PDU while the initiator
// fetches the rest (RFC 7143 §11.10, the C bit and Target Transfer Tag).
type textState struct {
	rest []byte
	ttt  uint32
	itt  uint32
	req  []byte // request text continued with the C bit
}

// handleTextRequest answers Text Requests: SendTargets discovery (RFC 7143
// Appendix C) and NotUnderstood for keys hastor does not renegotiate.
func (c *conn) handleTextRequest() error {
	h := c.hdr
	data, ok, err := c.acceptControl(&h)
	if !ok {
		return err
	}
	ts := &c.text
	if ttt := h.TTT(); ttt != pdu.ReservedTag {
		// Continuation of a long response.
		if ttt != ts.ttt || h.ITT() != ts.itt || len(ts.rest) == 0 {
			c.uncount(&h)
			return c.reject(pdu.RejectProtocolError)
		}
		c.sendText(&h, nil)
		return nil
	}
	ts.req = append(ts.req, data...)
	if len(ts.req) > maxLoginText {
		ts.req = ts.req[:0]
		c.uncount(&h)
		return c.reject(pdu.RejectProtocolError)
	}
	if h.Continue() {
		p := &ctrlPDU{advance: true, credit: !h.Immediate()}
		pdu.BuildTextResponse(&p.hdr, false, false, h.LUN(), h.ITT(), c.allocTTT(), 0)
		c.sendCtrl(p)
		return nil
	}
	kv, perr := login.ParseText(ts.req)
	ts.req = ts.req[:0]
	if perr != nil {
		c.uncount(&h)
		return c.reject(pdu.RejectProtocolError)
	}
	var out []byte
	for _, p := range kv {
		if p.Key == "SendTargets" {
			out = c.sendTargets(out, p.Value)
			continue
		}
		out = login.Text{{Key: p.Key, Value: login.NotUnderstood}}.Append(out)
	}
	c.sendText(&h, out)
	return nil
}

// sendText sends the first (or next) part of a text response.
func (c *conn) sendText(h *pdu.Header, full []byte) {
	ts := &c.text
	if full != nil || ts.rest == nil {
		ts.rest = full
		ts.itt = h.ITT()
	}
	part := ts.rest
	final := true
	ttt := uint32(pdu.ReservedTag)
	if len(part) > c.params.SendDataSegmentLength {
		part = part[:c.params.SendDataSegmentLength]
		final = false
		ttt = c.allocTTT()
	}
	ts.rest = ts.rest[len(part):]
	ts.ttt = ttt
	if final {
		ts.rest = nil
	}
	p := &ctrlPDU{advance: true, credit: !h.Immediate()}
	pdu.BuildTextResponse(&p.hdr, final, !final, h.LUN(), h.ITT(), ttt, len(part))
	p.data = append([]byte(nil), part...)
	c.sendCtrl(p)
}

// sendTargets appends the SendTargets answer for value ("All", a target
// name, or empty for the session's own target).
func (c *conn) sendTargets(out []byte, value string) []byte {
	var list []*Target
	switch {
	case value == "All":
		if !c.sess.discovery {
			return login.Text{{Key: "SendTargets", Value: login.Reject}}.Append(out)
		}
		list = c.srv.opts.Targets
	case value == "":
		if c.sess.tgt != nil {
			list = []*Target{c.sess.tgt}
		}
	default:
		if t := c.srv.targets[value]; t != nil {
			list = []*Target{t}
		}
	}
	for _, t := range list {
		if !t.permits(c.sess.initiator, c.remote.Addr()) {
			continue
		}
		out = login.Text{{Key: "TargetName", Value: t.Name}}.Append(out)
		for _, a := range c.portalAddresses() {
			out = login.Text{{Key: "TargetAddress", Value: a}}.Append(out)
		}
	}
	return out
}

// portalAddresses lists the addresses to advertise: the configured
// portals, with a wildcard portal replaced by the address this connection
// reached.
func (c *conn) portalAddresses() []string {
	var out []string
	seen := map[string]bool{}
	add := func(ap netip.AddrPort) {
		s := net.JoinHostPort(ap.Addr().Unmap().String(), strconv.Itoa(int(ap.Port()))) + ",1"
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	add(c.local)
	for _, p := range c.srv.opts.Portals {
		ap, err := netip.ParseAddrPort(p)
		if err != nil || ap.Addr().IsUnspecified() {
			continue
		}
		add(ap)
	}
	return out
}
