package login

import (
	"fmt"
	"strconv"
	"strings"
)

// Result values with special meaning (RFC 7143 §6.2).
const (
	Reject        = "Reject"
	Irrelevant    = "Irrelevant"
	NotUnderstood = "NotUnderstood"
)

// Digest names.
const (
	DigestNone   = "None"
	DigestCRC32C = "CRC32C"
)

// Limits is what the target offers: its own maximums and preferences.
type Limits struct {
	MaxRecvDataSegmentLength int // what the target can receive per PDU
	MaxBurstLength           int
	FirstBurstLength         int
	MaxOutstandingR2T        int
	DefaultTime2Wait         int
	DefaultTime2Retain       int
	ImmediateData            bool
	InitialR2T               bool
	HeaderDigests            []string // accepted, in order of preference
	DataDigests              []string
}

// Params are the operational parameters in force for a session and its
// connection after negotiation. Defaults are RFC 7143 §13.
type Params struct {
	HeaderDigest, DataDigest bool
	// SendDataSegmentLength is the initiator's declared
	// MaxRecvDataSegmentLength: the largest data segment the target may send.
	SendDataSegmentLength int
	// RecvDataSegmentLength is the target's declared MaxRecvDataSegmentLength.
	RecvDataSegmentLength int
	MaxBurstLength        int
	FirstBurstLength      int
	MaxOutstandingR2T     int
	DefaultTime2Wait      int
	DefaultTime2Retain    int
	ImmediateData         bool
	InitialR2T            bool
	DataPDUInOrder        bool
	DataSequenceInOrder   bool
	ErrorRecoveryLevel    int
	MaxConnections        int
}

// DefaultParams returns the RFC 7143 defaults for every operational key.
func DefaultParams() Params {
	return Params{
		SendDataSegmentLength: 8192,
		RecvDataSegmentLength: 8192,
		MaxBurstLength:        262144,
		FirstBurstLength:      65536,
		MaxOutstandingR2T:     1,
		DefaultTime2Wait:      2,
		DefaultTime2Retain:    20,
		ImmediateData:         true,
		InitialR2T:            true,
		DataPDUInOrder:        true,
		DataSequenceInOrder:   true,
		ErrorRecoveryLevel:    0,
		MaxConnections:        1,
	}
}

// Negotiator runs operational-parameter negotiation for one connection
// (RFC 7143 §13). It holds which keys have been negotiated so far so that a
// key renegotiated in the same login is detected.
type Negotiator struct {
	Limits Limits
	Params Params
	seen   map[string]bool
	// declaredOwnMRDSL records that the target's MaxRecvDataSegmentLength
	// has been sent.
	declaredOwnMRDSL bool
}

// NewNegotiator starts negotiation with the RFC defaults in force.
func NewNegotiator(l Limits) *Negotiator {
	p := DefaultParams()
	return &Negotiator{Limits: l, Params: p, seen: make(map[string]bool)}
}

// ProtocolError reports an initiator that broke the negotiation rules; the
// login must fail with status 0x0200 (initiator error).
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "login: " + e.Msg }

// Operational answers the operational keys in req and returns the response
// pairs. Keys it does not handle (identity keys such as InitiatorName,
// SessionType, TargetName, and security keys) are skipped: the caller deals
// with them. An error means the login must fail.
func (n *Negotiator) Operational(req Text, discovery bool) (Text, error) {
	var resp Text
	for _, kv := range req {
		k, v := kv.Key, kv.Value
		switch k {
		case "InitiatorName", "InitiatorAlias", "TargetName", "SessionType",
			"AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R":
			continue
		}
		if n.seen[k] {
			return nil, &ProtocolError{fmt.Sprintf("key %s negotiated twice", k)}
		}
		n.seen[k] = true
		if v == NotUnderstood || v == Irrelevant || v == Reject {
			// An answer to one of our offers; we offer none of these keys.
			continue
		}
		out, ok := n.answer(k, v, discovery)
		if !ok {
			continue
		}
		resp = append(resp, KV{k, out})
	}
	if !n.declaredOwnMRDSL {
		n.declaredOwnMRDSL = true
		n.Params.RecvDataSegmentLength = n.Limits.MaxRecvDataSegmentLength
		resp = append(resp, KV{"MaxRecvDataSegmentLength", strconv.Itoa(n.Limits.MaxRecvDataSegmentLength)})
	}
	return resp, nil
}

// Offers returns keys the target must propose because the RFC default would
// exceed its limits and the initiator did not negotiate them. Call it once
// before the operational stage ends.
func (n *Negotiator) Offers() Text {
	var t Text
	l := n.Limits
	if !n.seen["MaxBurstLength"] && l.MaxBurstLength < n.Params.MaxBurstLength {
		n.seen["MaxBurstLength"] = true
		n.Params.MaxBurstLength = l.MaxBurstLength
		t = append(t, KV{"MaxBurstLength", strconv.Itoa(l.MaxBurstLength)})
	}
	if !n.seen["FirstBurstLength"] && l.FirstBurstLength < n.Params.FirstBurstLength {
		n.seen["FirstBurstLength"] = true
		n.Params.FirstBurstLength = l.FirstBurstLength
		t = append(t, KV{"FirstBurstLength", strconv.Itoa(l.FirstBurstLength)})
	}
	if !n.seen["ImmediateData"] && !l.ImmediateData && n.Params.ImmediateData {
		n.seen["ImmediateData"] = true
		n.Params.ImmediateData = false
		t = append(t, KV{"ImmediateData", "No"})
	}
	if n.Params.FirstBurstLength > n.Params.MaxBurstLength {
		n.Params.FirstBurstLength = n.Params.MaxBurstLength
	}
	return t
}

// numericKey describes a key negotiated by a numerical result function
// (RFC 7143 §6.2.2).
type numericKey struct {
	lo, hi    int                       // valid range of the offered value
	result    func(offer, ours int) int // min or max
	ours      func(Limits) int
	field     func(*Params) *int
	discovery bool // negotiated in discovery sessions too (else Irrelevant)
}

func minimum(a, b int) int { return min(a, b) }
func maximum(a, b int) int { return max(a, b) }

// numericKeys are the operational keys with numerical results (RFC 7143
// §13). MaxConnections and ErrorRecoveryLevel are capped at hastor's
// support (one connection per session, ERL 0); DefaultTime2Retain is
// negotiated although ERL 0 keeps no state for reconnection.
var numericKeys = map[string]numericKey{
	"MaxConnections":     {1, 65535, minimum, func(Limits) int { return 1 }, func(p *Params) *int { return &p.MaxConnections }, true},
	"ErrorRecoveryLevel": {0, 2, minimum, func(Limits) int { return 0 }, func(p *Params) *int { return &p.ErrorRecoveryLevel }, true},
	"MaxBurstLength":     {512, 16777215, minimum, func(l Limits) int { return l.MaxBurstLength }, func(p *Params) *int { return &p.MaxBurstLength }, false},
	"FirstBurstLength":   {512, 16777215, minimum, func(l Limits) int { return l.FirstBurstLength }, func(p *Params) *int { return &p.FirstBurstLength }, false},
	"MaxOutstandingR2T":  {1, 65535, minimum, func(l Limits) int { return l.MaxOutstandingR2T }, func(p *Params) *int { return &p.MaxOutstandingR2T }, false},
	"DefaultTime2Wait":   {0, 3600, maximum, func(l Limits) int { return l.DefaultTime2Wait }, func(p *Params) *int { return &p.DefaultTime2Wait }, true},
	"DefaultTime2Retain": {0, 3600, minimum, func(l Limits) int { return l.DefaultTime2Retain }, func(p *Params) *int { return &p.DefaultTime2Retain }, true},
}

func (n *Negotiator) answer(k, v string, discovery bool) (string, bool) {
	p := &n.Params
	l := n.Limits
	switch k {
	case "HeaderDigest":
		d, ok := pickDigest(v, digestsFor(l.HeaderDigests, discovery))
		if !ok {
			return Reject, true
		}
		p.HeaderDigest = d == DigestCRC32C
		return d, true
	case "DataDigest":
		d, ok := pickDigest(v, digestsFor(l.DataDigests, discovery))
		if !ok {
			return Reject, true
		}
		p.DataDigest = d == DigestCRC32C
		return d, true
	case "MaxRecvDataSegmentLength":
		x, ok := number(v, 512, 16777215)
		if !ok {
			return Reject, true
		}
		p.SendDataSegmentLength = x
		return "", false // declarative: no answer
	}
	if nk, ok := numericKeys[k]; ok {
		if discovery && !nk.discovery {
			return Irrelevant, true
		}
		x, ok := number(v, nk.lo, nk.hi)
		if !ok {
			return Reject, true
		}
		r := nk.result(x, nk.ours(l))
		*nk.field(p) = r
		if p.FirstBurstLength > p.MaxBurstLength {
			p.FirstBurstLength = p.MaxBurstLength
		}
		return strconv.Itoa(r), true
	}
	switch k {
	case "ImmediateData":
		if discovery {
			return Irrelevant, true
		}
		b, ok := boolean(v)
		if !ok {
			return Reject, true
		}
		p.ImmediateData = b && l.ImmediateData
		return yesNo(p.ImmediateData), true
	case "InitialR2T":
		if discovery {
			return Irrelevant, true
		}
		b, ok := boolean(v)
		if !ok {
			return Reject, true
		}
		p.InitialR2T = b || l.InitialR2T
		return yesNo(p.InitialR2T), true
	case "DataPDUInOrder":
		if discovery {
			return Irrelevant, true
		}
		if _, ok := boolean(v); !ok {
			return Reject, true
		}
		p.DataPDUInOrder = true // OR with our Yes
		return "Yes", true
	case "DataSequenceInOrder":
		if discovery {
			return Irrelevant, true
		}
		if _, ok := boolean(v); !ok {
			return Reject, true
		}
		p.DataSequenceInOrder = true
		return "Yes", true
	case "IFMarker", "OFMarker":
		// Markers are not supported (RFC 7143 §13 keeps the keys only for
		// backward compatibility); AND with our No.
		if _, ok := boolean(v); !ok {
			return Reject, true
		}
		return "No", true
	case "IFMarkInt", "OFMarkInt":
		return Irrelevant, true
	case "iSCSIProtocolLevel":
		x, ok := number(v, 0, 31)
		if !ok {
			return Reject, true
		}
		return strconv.Itoa(min(x, 1)), true
	case "TaskReporting":
		return "RFC3720", true
	case "TargetAlias", "TargetAddress", "TargetPortalGroupTag":
		// Only a target sends these.
		return Reject, true
	}
	return NotUnderstood, true
}

// pickDigest chooses the first digest in the initiator's list that the
// target accepts (RFC 7143 §6.2.1: list negotiation selects the first value
// in the originator's list that the responder supports).
func pickDigest(offer string, accepted []string) (string, bool) {
	for _, o := range strings.Split(offer, ",") {
		for _, a := range accepted {
			if strings.EqualFold(o, a) {
				return a, true
			}
		}
	}
	return "", false
}

// digestsFor returns the digests accepted for a session. A discovery
// session carries no SCSI data and initiators (open-iscsi among them)
// offer only None there, so None is always accepted for discovery.
func digestsFor(accepted []string, discovery bool) []string {
	if !discovery {
		return accepted
	}
	for _, a := range accepted {
		if a == DigestNone {
			return accepted
		}
	}
	return append(accepted[:len(accepted):len(accepted)], DigestNone)
}

func number(v string, lo, hi int) (int, bool) {
	if v == "" || len(v) > 20 {
		return 0, false
	}
	var x uint64
	var err error
	switch {
	case strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X"):
		x, err = strconv.ParseUint(v[2:], 16, 64)
	default:
		x, err = strconv.ParseUint(v, 10, 64)
	}
	if err != nil || x < uint64(lo) || x > uint64(hi) {
		return 0, false
	}
	return int(x), true
}

func boolean(v string) (bool, bool) {
	switch v {
	case "Yes":
		return true, true
	case "No":
		return false, true
	}
	return false, false
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}
