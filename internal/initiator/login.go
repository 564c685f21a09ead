package initiator

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"hastor/target/login"
	"hastor/target/pdu"
)

// Options configure a login.
type Options struct {
	// InitiatorName and TargetName are iSCSI names; both are required.
	InitiatorName string
	TargetName    string
	// ISID is the initiator session ID; zero picks 0x80 00 00 00 00 01
	// (random format, RFC 7143 §11.12.5).
	ISID [6]byte
	// CHAPUser and CHAPSecret, when set, authenticate the initiator with
	// one-way CHAP (MD5 unless the target picks another offered algorithm).
	CHAPUser, CHAPSecret string
	// MaxRecvDataSegmentLength is the largest data segment we accept, bytes
	// (default 262144).
	MaxRecvDataSegmentLength int
	// InitialR2T offers InitialR2T=Yes (no unsolicited Data-Out).
	InitialR2T bool
	// NoImmediateData offers ImmediateData=No.
	NoImmediateData bool
	// FirstBurstLength and MaxBurstLength offered, bytes (defaults 65536
	// and 1048576).
	FirstBurstLength, MaxBurstLength int
	// WriteTimeout bounds each socket write (default DefaultWriteTimeout).
	WriteTimeout time.Duration
	// Logger receives debug messages (default: discarded).
	Logger *slog.Logger
}

// Params are the operational parameters in force after login.
type Params struct {
	// MaxSendDataSegmentLength is the target's MaxRecvDataSegmentLength:
	// the largest data segment we send.
	MaxSendDataSegmentLength int
	// MaxRecvDataSegmentLength is ours.
	MaxRecvDataSegmentLength int
	InitialR2T               bool
	ImmediateData            bool
	FirstBurstLength         int
	MaxBurstLength           int
	MaxOutstandingR2T        int
	TSIH                     uint16
}

const maxLoginRounds = 8

// Login runs the login phase of a normal session (RFC 7143 §6): security
// negotiation (None or CHAP), then operational negotiation, then the full
// feature phase, where the reader goroutine starts. ctx bounds the whole
// login.
func (s *Session) Login(ctx context.Context, o Options) error {
	if o.InitiatorName == "" || o.TargetName == "" {
		return fmt.Errorf("%w: initiator and target names are required", ErrBadRequest)
	}
	if o.ISID == ([6]byte{}) {
		o.ISID = [6]byte{0x80, 0, 0, 0, 0, 1}
	}
	if o.MaxRecvDataSegmentLength == 0 {
		o.MaxRecvDataSegmentLength = 262144
	}
	if o.FirstBurstLength == 0 {
		o.FirstBurstLength = 65536
	}
	if o.MaxBurstLength == 0 {
		o.MaxBurstLength = 1 << 20
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxRecvDataSegmentLength < 512 || o.MaxRecvDataSegmentLength > 1<<24-1 {
		return fmt.Errorf("%w: MaxRecvDataSegmentLength %d", ErrBadRequest, o.MaxRecvDataSegmentLength)
	}
	if o.Logger != nil {
		s.log = o.Logger
	}
	s.opts = o
	s.params.MaxRecvDataSegmentLength = o.MaxRecvDataSegmentLength
	if s.started.Load() {
		return fmt.Errorf("%w: already logged in", ErrBadRequest)
	}

	if dl, ok := ctx.Deadline(); ok {
		s.nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { s.nc.SetDeadline(time.Unix(1, 0)) })
	err := s.login(o)
	if !stop() || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
	}
	if err != nil {
		s.breakConn(err)
		return err
	}
	s.nc.SetDeadline(time.Time{})
	s.mu.Lock()
	s.mu.loggedIn = true
	s.mu.Unlock()
	s.started.Store(true)
	go s.readLoop()
	return nil
}

// loginConn carries the state of the login phase (one goroutine).
type loginConn struct {
	s         *Session
	isid      [6]byte
	itt       uint32
	cmdSN     uint32
	expStatSN uint32
}

// exchange sends one Login Request and reads the Login Response.
func (l *loginConn) exchange(csg, nsg int, transit bool, kv login.Text) (pdu.Header, login.Text, error) {
	var h pdu.Header
	h.SetOpcode(pdu.OpLoginReq, true)
	f := byte(csg)<<2 | byte(nsg)
	if transit {
		f |= pdu.FlagTransit
	}
	h.SetFlags(f)
	copy(h[8:14], l.isid[:])
	h.SetITT(l.itt)
	h.PutU32(24, l.cmdSN)
	h.PutU32(28, l.expStatSN)
	if err := l.s.writePDU(&h, kv.Append(nil)); err != nil {
		return h, nil, fmt.Errorf("%w: send login: %w", ErrConnLost, err)
	}
	var rh pdu.Header
	if _, err := readFullHeader(l.s, &rh); err != nil {
		return rh, nil, err
	}
	if rh.Opcode() != pdu.OpLoginResp {
		return rh, nil, protoErr("%v during login", rh.Opcode())
	}
	if rh.TotalAHSLength() > 0 {
		return rh, nil, protoErr("AHS in a Login Response")
	}
	n := rh.DataSegmentLength()
	if n > l.s.opts.MaxRecvDataSegmentLength {
		return rh, nil, protoErr("%d-byte login data segment", n)
	}
	data := make([]byte, n)
	if err := l.s.readSegment(data); err != nil {
		return rh, nil, err
	}
	if rh.ITT() != l.itt {
		return rh, nil, protoErr("Login Response ITT %#x, want %#x", rh.ITT(), l.itt)
	}
	l.expStatSN = rh.StatSN() + 1
	if st := uint16(rh[36])<<8 | uint16(rh[37]); st != pdu.LoginSuccess {
		return rh, nil, &LoginError{Status: st}
	}
	if rh.Continue() {
		return rh, nil, protoErr("continued Login Responses are not supported")
	}
	resp, err := login.ParseText(data)
	if err != nil {
		return rh, nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return rh, resp, nil
}

func readFullHeader(s *Session, h *pdu.Header) (int, error) {
	n, err := io.ReadFull(s.br, h[:])
	if err != nil {
		return n, fmt.Errorf("%w: %w", ErrConnLost, err)
	}
	return n, nil
}

func (s *Session) login(o Options) error {
	l := &loginConn{s: s, isid: o.ISID, itt: 1, cmdSN: 1}
	base := login.Text{
		{Key: "InitiatorName", Value: o.InitiatorName},
		{Key: "SessionType", Value: "Normal"},
		{Key: "TargetName", Value: o.TargetName},
	}
	// Security negotiation (RFC 7143 §6.3.1, §12.1.3).
	if o.CHAPUser != "" {
		_, resp, err := l.exchange(pdu.StageSecurity, pdu.StageOperational, false, append(base, login.KV{Key: "AuthMethod", Value: "CHAP"}))
		if err != nil {
			return err
		}
		if v, _ := resp.Get("AuthMethod"); v != "CHAP" {
			return fmt.Errorf("%w: target chose AuthMethod=%q", ErrLogin, v)
		}
		_, resp, err = l.exchange(pdu.StageSecurity, pdu.StageOperational, false, login.Text{{Key: "CHAP_A", Value: "5"}})
		if err != nil {
			return err
		}
		algS, _ := resp.Get("CHAP_A")
		idS, _ := resp.Get("CHAP_I")
		chS, _ := resp.Get("CHAP_C")
		alg, err1 := strconv.Atoi(algS)
		id, err2 := strconv.Atoi(idS)
		ch, err3 := decodeBinary(chS)
		if err1 != nil || err2 != nil || err3 != nil || id < 0 || id > 255 || alg != login.CHAPMD5 {
			return protoErr("bad CHAP challenge A=%q I=%q C=%q", algS, idS, chS)
		}
		r := login.ChapResponse(alg, byte(id), o.CHAPSecret, ch)
		rh, _, err := l.exchange(pdu.StageSecurity, pdu.StageOperational, true,
			login.Text{{Key: "CHAP_N", Value: o.CHAPUser}, {Key: "CHAP_R", Value: "0x" + hex.EncodeToString(r)}})
		if err != nil {
			return err
		}
		if !rh.Transit() {
			return fmt.Errorf("%w: target did not leave the security stage", ErrLogin)
		}
	} else {
		rh, resp, err := l.exchange(pdu.StageSecurity, pdu.StageOperational, true, append(base, login.KV{Key: "AuthMethod", Value: "None"}))
		if err != nil {
			return err
		}
		if v, ok := resp.Get("AuthMethod"); ok && v != "None" {
			return fmt.Errorf("%w: target wants AuthMethod=%q", ErrLogin, v)
		}
		if !rh.Transit() {
			return fmt.Errorf("%w: target did not leave the security stage", ErrLogin)
		}
	}
	// Operational negotiation (RFC 7143 §13).
	keys := login.Text{
		{Key: "HeaderDigest", Value: "None"},
		{Key: "DataDigest", Value: "None"},
		{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(o.MaxRecvDataSegmentLength)},
		{Key: "InitialR2T", Value: yesNo(o.InitialR2T)},
		{Key: "ImmediateData", Value: yesNo(!o.NoImmediateData)},
		{Key: "FirstBurstLength", Value: strconv.Itoa(o.FirstBurstLength)},
		{Key: "MaxBurstLength", Value: strconv.Itoa(o.MaxBurstLength)},
		{Key: "MaxOutstandingR2T", Value: "1"},
		{Key: "ErrorRecoveryLevel", Value: "0"},
		{Key: "MaxConnections", Value: "1"},
	}
	got := login.Text{}
	var final pdu.Header
	for round := 0; ; round++ {
		if round == maxLoginRounds {
			return fmt.Errorf("%w: operational negotiation did not finish", ErrLogin)
		}
		rh, resp, err := l.exchange(pdu.StageOperational, pdu.StageFullFeature, true, keys)
		if err != nil {
			return err
		}
		got = append(got, resp...)
		keys = nil
		if rh.Transit() && rh.LoginNSG() == pdu.StageFullFeature {
			final = rh
			break
		}
	}
	p := Params{
		MaxSendDataSegmentLength: 8192,
		MaxRecvDataSegmentLength: o.MaxRecvDataSegmentLength,
		InitialR2T:               true,
		ImmediateData:            true,
		FirstBurstLength:         65536,
		MaxBurstLength:           262144,
		MaxOutstandingR2T:        1,
		TSIH:                     final.TSIH(),
	}
	num := func(key string, lo, hi int, dst *int) error {
		v, ok := got.Get(key)
		if !ok {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return protoErr("%s=%q", key, v)
		}
		*dst = n
		return nil
	}
	boolean := func(key string, dst *bool) error {
		v, ok := got.Get(key)
		if !ok {
			return nil
		}
		switch v {
		case "Yes":
			*dst = true
		case "No":
			*dst = false
		default:
			return protoErr("%s=%q", key, v)
		}
		return nil
	}
	for _, err := range []error{
		num("MaxRecvDataSegmentLength", 512, 1<<24-1, &p.MaxSendDataSegmentLength),
		num("FirstBurstLength", 512, 1<<24-1, &p.FirstBurstLength),
		num("MaxBurstLength", 512, 1<<24-1, &p.MaxBurstLength),
		num("MaxOutstandingR2T", 1, 65535, &p.MaxOutstandingR2T),
		boolean("InitialR2T", &p.InitialR2T),
		boolean("ImmediateData", &p.ImmediateData),
	} {
		if err != nil {
			return err
		}
	}
	for _, k := range []string{"HeaderDigest", "DataDigest"} {
		if v, ok := got.Get(k); ok && v != "None" {
			return protoErr("%s=%q but only None was offered", k, v)
		}
	}
	if p.FirstBurstLength > p.MaxBurstLength {
		p.FirstBurstLength = p.MaxBurstLength
	}
	s.params = p
	s.mu.Lock()
	s.mu.cmdSN = final.ExpCmdSN()
	s.mu.expCmdSN = final.ExpCmdSN()
	s.mu.maxCmdSN = final.MaxCmdSN()
	s.mu.expStatSN = l.expStatSN
	s.mu.Unlock()
	return nil
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// decodeBinary decodes a 0x (hex) or 0b (base64) value (RFC 7143 §6.1).
func decodeBinary(v string) ([]byte, error) {
	switch {
	case strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X"):
		return hex.DecodeString(v[2:])
	case strings.HasPrefix(v, "0b") || strings.HasPrefix(v, "0B"):
		return base64.StdEncoding.DecodeString(v[2:])
	}
	return nil, fmt.Errorf("%w: binary value %q", ErrProtocol, v)
}
