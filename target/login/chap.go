package login

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
)

// CHAP algorithm identifiers (RFC 1994 §2.2 for MD5; the IANA "PPP
// Authentication Algorithms" registry for the others, which RFC 7143 §12.1.3
// admits through CHAP_A).
const (
	CHAPMD5     = 5
	CHAPSHA1    = 6
	CHAPSHA256  = 7
	CHAPSHA3256 = 8
)

// Errors from CHAP.
var (
	ErrAuthFailed = errors.New("login: CHAP authentication failed")
	ErrAuthProto  = errors.New("login: CHAP protocol error")
)

// Secret is a CHAP name and secret.
type Secret struct {
	Name   string
	Secret string
}

// CHAP runs the target side of a CHAP exchange (RFC 7143 §12.1.3). It is a
// small state machine: Start answers the CHAP_A offer with a challenge, and
// Verify checks the initiator's response and, for mutual CHAP, answers the
// initiator's challenge.
type CHAP struct {
	// Expect authenticates the initiator.
	Expect Secret
	// Mutual, when set, authenticates the target to the initiator.
	Mutual *Secret
	// Rand supplies challenge bytes and identifiers (crypto/rand.Reader in
	// production).
	Rand io.Reader

	alg       int
	id        byte
	challenge []byte
}

// Start chooses an algorithm from the initiator's CHAP_A list and returns
// CHAP_A, CHAP_I and CHAP_C. Only MD5 is offered unless the initiator lists
// a stronger algorithm first.
func (c *CHAP) Start(chapA string) (Text, error) {
	c.alg = 0
	for _, a := range strings.Split(chapA, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(a))
		if err != nil {
			continue
		}
		if newHash(n) != nil {
			c.alg = n
			break
		}
	}
	if c.alg == 0 {
		return Text{{"CHAP_A", Reject}}, fmt.Errorf("%w: no supported algorithm in CHAP_A=%q", ErrAuthProto, chapA)
	}
	buf := make([]byte, 1+newHash(c.alg).Size())
	if _, err := io.ReadFull(c.Rand, buf); err != nil {
		return nil, fmt.Errorf("login: CHAP challenge: %w", err)
	}
	c.id, c.challenge = buf[0], buf[1:]
	return Text{
		{"CHAP_A", strconv.Itoa(c.alg)},
		{"CHAP_I", strconv.Itoa(int(c.id))},
		{"CHAP_C", "0x" + hex.EncodeToString(c.challenge)},
	}, nil
}

// Verify checks CHAP_N and CHAP_R from the initiator. With mutual CHAP it
// also reads CHAP_I and CHAP_C and returns the target's CHAP_N and CHAP_R.
func (c *CHAP) Verify(req Text) (Text, error) {
	if c.challenge == nil {
		return nil, fmt.Errorf("%w: response before challenge", ErrAuthProto)
	}
	name, ok1 := req.Get("CHAP_N")
	rhex, ok2 := req.Get("CHAP_R")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%w: CHAP_N and CHAP_R required", ErrAuthProto)
	}
	resp, err := decodeBinary(rhex)
	if err != nil {
		return nil, fmt.Errorf("%w: CHAP_R: %v", ErrAuthProto, err)
	}
	want := chapResponse(c.alg, c.id, c.Expect.Secret, c.challenge)
	nameOK := subtle.ConstantTimeCompare([]byte(name), []byte(c.Expect.Name)) == 1
	respOK := subtle.ConstantTimeCompare(resp, want) == 1
	if !nameOK || !respOK {
		return nil, fmt.Errorf("%w: wrong name or secret for %q", ErrAuthFailed, name)
	}
	iStr, hasI := req.Get("CHAP_I")
	cStr, hasC := req.Get("CHAP_C")
	if !hasI && !hasC {
		if c.Mutual != nil {
			return nil, fmt.Errorf("%w: mutual CHAP is required but the initiator sent no challenge", ErrAuthFailed)
		}
		return nil, nil
	}
	if !hasI || !hasC {
		return nil, fmt.Errorf("%w: CHAP_I and CHAP_C must come together", ErrAuthProto)
	}
	if c.Mutual == nil {
		return nil, fmt.Errorf("%w: initiator asked for mutual CHAP, which is not configured for this target", ErrAuthFailed)
	}
	id, err := strconv.ParseUint(iStr, 0, 8)
	if err != nil {
		return nil, fmt.Errorf("%w: CHAP_I=%q", ErrAuthProto, iStr)
	}
	ch, err := decodeBinary(cStr)
	if err != nil || len(ch) == 0 || len(ch) > 1024 {
		return nil, fmt.Errorf("%w: CHAP_C", ErrAuthProto)
	}
	// RFC 7143 §12.1.3: a target must refuse a challenge equal to the one it
	// sent (reflection attack).
	if subtle.ConstantTimeCompare(ch, c.challenge) == 1 {
		return nil, fmt.Errorf("%w: initiator reflected the target's challenge", ErrAuthFailed)
	}
	r := chapResponse(c.alg, byte(id), c.Mutual.Secret, ch)
	return Text{
		{"CHAP_N", c.Mutual.Name},
		{"CHAP_R", "0x" + hex.EncodeToString(r)},
	}, nil
}

func newHash(alg int) hash.Hash {
	switch alg {
	case CHAPMD5:
		return md5.New()
	case CHAPSHA1:
		return sha1.New()
	case CHAPSHA256:
		return sha256.New()
	case CHAPSHA3256:
		return sha3.New256()
	}
	return nil
}

// chapResponse computes H(id || secret || challenge) (RFC 1994 §4.1).
func chapResponse(alg int, id byte, secret string, challenge []byte) []byte {
	h := newHash(alg)
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// ChapResponse is exported for tests and initiator-side tools.
func ChapResponse(alg int, id byte, secret string, challenge []byte) []byte {
	return chapResponse(alg, id, secret, challenge)
}

// decodeBinary decodes a binary value in 0x (hex) or 0b (base64) form
// (RFC 7143 §6.1).
func decodeBinary(v string) ([]byte, error) {
	switch {
	case strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X"):
		s := v[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		return hex.DecodeString(s)
	case strings.HasPrefix(v, "0b") || strings.HasPrefix(v, "0B"):
		return base64.StdEncoding.DecodeString(v[2:])
	}
	return nil, errors.New("binary value must start with 0x or 0b")
}
