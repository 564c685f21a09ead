package target

import (
	"fmt"
	"log/slog"
	"strings"

	"hastor/target/login"
	"hastor/target/pdu"
)

// maxLoginText bounds the text of one login negotiation step, across
// continued PDUs (RFC 7143 §6.1 and §11.12.8: 8192 bytes per PDU during
// login; several PDUs may be chained with the C bit).
const (
	maxLoginPDUData = 8192
	maxLoginText    = 64 << 10
)

// loginState is the state of one connection's login phase.
type loginState struct {
	isid          [6]byte
	tsih          uint16
	cid           uint16
	cmdSN         uint32
	statSN        uint32
	initiatorName string
	target        *Target
	discovery     bool
	auth          Auth
	stage         int
	authMethod    string // "", "None" or "CHAP"
	authDone      bool
	chap          *login.CHAP
	chapStarted   bool
	neg           *login.Negotiator
	responses     int
	offered       bool
}

// loginFailure ends the login with a status (RFC 7143 §11.13.5).
type loginFailure struct {
	status uint16
	msg    string
}

func (e *loginFailure) Error() string {
	return fmt.Sprintf("login failed (status %#04x): %s", e.status, e.msg)
}

func fail(status uint16, format string, args ...any) *loginFailure {
	return &loginFailure{status, fmt.Sprintf(format, args...)}
}

// login runs the login phase on the reader goroutine and returns the
// session the connection joined.
func (c *conn) login() (*session, error) {
	c.params = login.DefaultParams()
	c.params.RecvDataSegmentLength = maxLoginPDUData
	st := &loginState{neg: login.NewNegotiator(c.srv.opts.Limits)}
	var text []byte
	first := true
	for {
		if err := c.readHeader(); err != nil {
			return nil, err
		}
		h := &c.hdr
		if h.Opcode() != pdu.OpLoginReq {
			return nil, fmt.Errorf("%w: %v during login", errProtocol, h.Opcode())
		}
		if first {
			st.isid = h.ISID()
			st.tsih = h.TSIH()
			st.cid = h.CID()
			st.cmdSN = h.CmdSN()
			st.statSN = h.ExpStatSN()
			if h.VersionMin() > 0 {
				return nil, c.loginReject(st, fail(pdu.LoginUnsupportedVersion, "version %d not supported", h.VersionMin()))
			}
		}
		data, ok, err := c.readCtrlData()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: data digest during login", errProtocol)
		}
		if len(text)+len(data) > maxLoginText {
			return nil, c.loginReject(st, fail(pdu.LoginInitiatorError, "login text longer than %d bytes", maxLoginText))
		}
		text = append(text, data...)
		if h.Continue() {
			// More text follows: answer with an empty response and wait
			// (RFC 7143 §11.12.2).
			if err := c.writeLoginResponse(st, h, false, h.LoginCSG(), h.LoginNSG(), nil); err != nil {
				return nil, err
			}
			continue
		}
		kv, err := login.ParseText(text)
		text = text[:0]
		if err != nil {
			return nil, c.loginReject(st, fail(pdu.LoginInitiatorError, "%v", err))
		}
		if c.log.Enabled(c.ctx, slog.LevelDebug) {
			c.log.Debug("login request", "csg", h.LoginCSG(), "nsg", h.LoginNSG(), "transit", h.Transit(), "keys", redactKeys(kv))
		}
		resp, transit, nsg, lf := c.loginStep(st, h, kv, first)
		first = false
		if lf != nil {
			return nil, c.loginReject(st, lf)
		}
		if transit && nsg == pdu.StageFullFeature {
			sess, status := c.srv.bindSession(c, st)
			if status != 0 {
				return nil, c.loginReject(st, fail(status, "session binding failed"))
			}
			st.tsih = sess.tsih
			if err := c.writeLoginResponse(st, h, true, h.LoginCSG(), nsg, resp); err != nil {
				sess.mu.Lock()
				if sess.mu.conn == c {
					sess.mu.conn = nil
				}
				sess.mu.Unlock()
				sess.end()
				return nil, err
			}
			c.params = st.neg.Params
			if st.discovery {
				c.params.ImmediateData = false
			}
			c.cid = st.cid
			c.w.statSN = st.statSN
			return sess, nil
		}
		if err := c.writeLoginResponse(st, h, transit, h.LoginCSG(), nsg, resp); err != nil {
			return nil, err
		}
		if transit {
			st.stage = nsg
		}
	}
}

// loginStep processes one complete login request and returns the response
// text and whether the target transits to stage nsg.
func (c *conn) loginStep(st *loginState, h *pdu.Header, kv login.Text, first bool) (login.Text, bool, int, *loginFailure) {
	csg, nsg, transit := h.LoginCSG(), h.LoginNSG(), h.Transit()
	var resp login.Text
	if first {
		name, ok := kv.Get("InitiatorName")
		if !ok || name == "" {
			return nil, false, 0, fail(pdu.LoginMissingParameter, "InitiatorName missing")
		}
		st.initiatorName = name
		switch stype, _ := kv.Get("SessionType"); stype {
		case "", "Normal":
			tn, ok := kv.Get("TargetName")
			if !ok || tn == "" {
				return nil, false, 0, fail(pdu.LoginMissingParameter, "TargetName missing")
			}
			t := c.srv.targets[tn]
			if t == nil {
				return nil, false, 0, fail(pdu.LoginTargetNotFound, "no target %q", tn)
			}
			if !t.permits(name, c.remote.Addr()) {
				return nil, false, 0, fail(pdu.LoginForbidden, "initiator %q from %v is not allowed to access %q", name, c.remote.Addr(), tn)
			}
			st.target = t
			st.auth = t.Auth
			resp = append(resp, login.KV{Key: "TargetPortalGroupTag", Value: "1"})
		case "Discovery":
			st.discovery = true
			st.auth = c.srv.opts.Discovery
		default:
			return nil, false, 0, fail(pdu.LoginNoSessionType, "SessionType %q not supported", stype)
		}
		st.stage = csg
	}
	if csg != st.stage || csg == 2 || csg == pdu.StageFullFeature {
		return nil, false, 0, fail(pdu.LoginInitiatorError, "login stage %d unexpected (current %d)", csg, st.stage)
	}
	if transit && (nsg <= csg || nsg == 2) {
		return nil, false, 0, fail(pdu.LoginInitiatorError, "invalid stage transition %d→%d", csg, nsg)
	}

	switch csg {
	case pdu.StageSecurity:
		r, lf := c.securityStep(st, kv)
		if lf != nil {
			return nil, false, 0, lf
		}
		resp = append(resp, r...)
		if transit && !st.authDone {
			transit = false
		}
		if transit && nsg == pdu.StageFullFeature {
			// Operational keys may still be offered with the final
			// security-stage request; negotiate them now.
			op, err := st.neg.Operational(kv, st.discovery)
			if err != nil {
				return nil, false, 0, fail(pdu.LoginInitiatorError, "%v", err)
			}
			resp = append(resp, op...)
			resp = c.addDeclaratives(st, resp)
		}
	case pdu.StageOperational:
		if st.auth.required() && !st.authDone {
			return nil, false, 0, fail(pdu.LoginAuthFailed, "authentication required: the initiator skipped the security stage")
		}
		st.authDone = true
		op, err := st.neg.Operational(kv, st.discovery)
		if err != nil {
			return nil, false, 0, fail(pdu.LoginInitiatorError, "%v", err)
		}
		resp = append(resp, op...)
		resp = c.addDeclaratives(st, resp)
		if transit && !st.offered {
			st.offered = true
			if offers := st.neg.Offers(); len(offers) > 0 {
				resp = append(resp, offers...)
				transit = false
			}
		}
	}
	return resp, transit, nsg, nil
}

// addDeclaratives adds the target's own declarative keys once.
func (c *conn) addDeclaratives(st *loginState, resp login.Text) login.Text {
	if st.responses > 0 || st.discovery || st.target == nil {
		return resp
	}
	st.responses++
	if st.target.Alias != "" {
		resp = append(resp, login.KV{Key: "TargetAlias", Value: st.target.Alias})
	}
	return resp
}

// securityStep handles AuthMethod and the CHAP exchange (RFC 7143 §12).
func (c *conn) securityStep(st *loginState, kv login.Text) (login.Text, *loginFailure) {
	var resp login.Text
	if am, ok := kv.Get("AuthMethod"); ok && st.authMethod == "" {
		offered := strings.Split(am, ",")
		has := func(m string) bool {
			for _, o := range offered {
				if o == m {
					return true
				}
			}
			return false
		}
		switch {
		case st.auth.required() && has("CHAP"):
			st.authMethod = "CHAP"
		case st.auth.required():
			return nil, fail(pdu.LoginAuthFailed, "target requires CHAP; initiator offered AuthMethod=%s", am)
		case has("None"):
			st.authMethod = "None"
			st.authDone = true
		default:
			return nil, fail(pdu.LoginAuthFailed, "no CHAP credentials configured; initiator offered AuthMethod=%s", am)
		}
		resp = append(resp, login.KV{Key: "AuthMethod", Value: st.authMethod})
	}
	if st.authMethod == "" && !st.auth.required() {
		// No AuthMethod offered and none required.
		st.authDone = true
	}
	if st.authMethod != "CHAP" {
		return resp, nil
	}
	if a, ok := kv.Get("CHAP_A"); ok && !st.chapStarted {
		st.chap = c.srv.newChallengeSource()
		st.chap.Expect = *st.auth.CHAP
		st.chap.Mutual = st.auth.Mutual
		r, err := st.chap.Start(a)
		if err != nil {
			return nil, fail(pdu.LoginAuthFailed, "%v", err)
		}
		st.chapStarted = true
		return append(resp, r...), nil
	}
	if _, ok := kv.Get("CHAP_R"); ok {
		if !st.chapStarted {
			return nil, fail(pdu.LoginAuthFailed, "CHAP_R before CHAP_A")
		}
		r, err := st.chap.Verify(kv)
		if err != nil {
			// Protocol errors and wrong credentials both fail as an
			// authentication failure (RFC 7143 §11.13.5).
			return nil, fail(pdu.LoginAuthFailed, "%v", err)
		}
		st.authDone = true
		return append(resp, r...), nil
	}
	return resp, nil
}

// writeLoginResponse sends a Login Response directly (the writer goroutine
// starts only after login).
func (c *conn) writeLoginResponse(st *loginState, req *pdu.Header, transit bool, csg, nsg int, text login.Text) error {
	var h pdu.Header
	pdu.BuildLoginResponse(&h, transit, csg, nsg, st.isid, st.tsih, req.ITT(), pdu.LoginSuccess)
	return c.sendLoginPDU(st, &h, text)
}

// loginReject sends a failing Login Response and returns the failure.
func (c *conn) loginReject(st *loginState, lf *loginFailure) error {
	var h pdu.Header
	pdu.BuildLoginResponse(&h, false, 0, 0, st.isid, st.tsih, c.hdr.ITT(), lf.status)
	// Best effort: the connection closes either way.
	_ = c.sendLoginPDU(st, &h, nil)
	return lf
}

func (c *conn) sendLoginPDU(st *loginState, h *pdu.Header, text login.Text) error {
	data := text.Append(nil)
	h.SetDataSegmentLength(len(data))
	depth := uint32(c.srv.opts.QueueDepth)
	h.SetSN(st.statSN, st.cmdSN, st.cmdSN+depth-1)
	st.statSN++
	buf := make([]byte, 0, pdu.BHSLen+len(data)+4)
	buf = append(buf, h[:]...)
	buf = append(buf, data...)
	buf = append(buf, pdu.Padding(pdu.Pad(len(data)))...)
	_, err := c.nc.Write(buf)
	return err
}

// redactKeys formats login keys for debug logs without CHAP responses.
func redactKeys(kv login.Text) string {
	var b strings.Builder
	for _, p := range kv {
		v := p.Value
		if strings.HasPrefix(p.Key, "CHAP_R") || strings.HasPrefix(p.Key, "CHAP_C") {
			v = "…"
		}
		b.WriteString(p.Key + "=" + v + " ")
	}
	return b.String()
}
