package login

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	kv, err := ParseText([]byte("InitiatorName=iqn.x\x00SessionType=Normal\x00\x00X-a=b"))
	if err != nil {
		t.Fatal(err)
	}
	if len(kv) != 3 || kv[0].Value != "iqn.x" || kv[2].Key != "X-a" {
		t.Fatalf("got %+v", kv)
	}
	for _, bad := range []string{"noequals\x00", "=v\x00", "bad key=1\x00", "A=1\x00A=2\x00", strings.Repeat("k", 64) + "=1\x00"} {
		if _, err := ParseText([]byte(bad)); err == nil {
			t.Errorf("ParseText(%q) accepted", bad)
		}
	}
	if _, err := ParseText([]byte("A=1\x00A=2\x00")); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("duplicate key error = %v", err)
	}
	round := Text{{"A", "1"}, {"B", ""}}.Append(nil)
	if !bytes.Equal(round, []byte("A=1\x00B=\x00")) {
		t.Errorf("Append = %q", round)
	}
}

func limits() Limits {
	return Limits{
		MaxRecvDataSegmentLength: 262144, MaxBurstLength: 1048576, FirstBurstLength: 65536,
		MaxOutstandingR2T: 8, DefaultTime2Wait: 2, DefaultTime2Retain: 20,
		ImmediateData: true, InitialR2T: false,
		HeaderDigests: []string{DigestNone, DigestCRC32C}, DataDigests: []string{DigestCRC32C, DigestNone},
	}
}

// RFC 7143 §6.2 and §13: each key's result function.
func TestNegotiationResultFunctions(t *testing.T) {
	n := NewNegotiator(limits())
	req := Text{
		{"HeaderDigest", "CRC32C,None"}, {"DataDigest", "None"},
		{"MaxConnections", "4"}, {"InitialR2T", "Yes"}, {"ImmediateData", "Yes"},
		{"MaxRecvDataSegmentLength", "65536"}, {"MaxBurstLength", "16776192"},
		{"FirstBurstLength", "262144"}, {"DefaultTime2Wait", "0"}, {"DefaultTime2Retain", "60"},
		{"MaxOutstandingR2T", "1"}, {"DataPDUInOrder", "No"}, {"DataSequenceInOrder", "Yes"},
		{"ErrorRecoveryLevel", "2"}, {"IFMarker", "No"}, {"OFMarkInt", "2048~8192"},
		{"X-com.example.Foo", "1"}, {"Unknown", "1"}, {"MaxBurstLength2", "x"},
	}
	resp, err := n.Operational(req, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"HeaderDigest": "CRC32C", "DataDigest": "None", "MaxConnections": "1",
		"InitialR2T": "Yes", "ImmediateData": "Yes", "MaxBurstLength": "1048576",
		"FirstBurstLength": "65536", "DefaultTime2Wait": "2", "DefaultTime2Retain": "20",
		"MaxOutstandingR2T": "1", "DataPDUInOrder": "Yes", "DataSequenceInOrder": "Yes",
		"ErrorRecoveryLevel": "0", "IFMarker": "No", "OFMarkInt": Irrelevant,
		"X-com.example.Foo": NotUnderstood, "Unknown": NotUnderstood,
		"MaxRecvDataSegmentLength": "262144",
	}
	for k, v := range want {
		got, ok := resp.Get(k)
		if !ok || got != v {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	p := n.Params
	if !p.HeaderDigest || p.DataDigest || p.SendDataSegmentLength != 65536 || p.MaxBurstLength != 1048576 || !p.InitialR2T {
		t.Errorf("params %+v", p)
	}
	if _, err := n.Operational(Text{{"MaxBurstLength", "512"}}, false); err == nil {
		t.Error("renegotiating a key in the same login was accepted")
	}
}

func TestNegotiationRejectsBadValues(t *testing.T) {
	n := NewNegotiator(limits())
	resp, err := n.Operational(Text{{"MaxBurstLength", "100"}, {"ImmediateData", "maybe"}, {"HeaderDigest", "MD5"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"MaxBurstLength", "ImmediateData", "HeaderDigest"} {
		if v, _ := resp.Get(k); v != Reject {
			t.Errorf("%s = %q, want Reject", k, v)
		}
	}
}

type fixedRand byte

func (f fixedRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(f) + byte(i)
	}
	return len(p), nil
}

func TestCHAPOneWayAndMutual(t *testing.T) {
	c := &CHAP{Expect: Secret{"alice", "secretsecret1"}, Mutual: &Secret{"target", "targetsecret2"}, Rand: fixedRand(7)}
	r, err := c.Start("7,5")
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := r.Get("CHAP_A"); a != "7" {
		t.Fatalf("CHAP_A=%s", a)
	}
	c = &CHAP{Expect: Secret{"alice", "secretsecret1"}, Mutual: &Secret{"target", "targetsecret2"}, Rand: fixedRand(7)}
	r, err = c.Start("5")
	if err != nil {
		t.Fatal(err)
	}
	idStr, _ := r.Get("CHAP_I")
	chStr, _ := r.Get("CHAP_C")
	ch, _ := hex.DecodeString(chStr[2:])
	var id byte
	for _, d := range idStr {
		id = id*10 + byte(d-'0')
	}
	h := md5.Sum(append(append([]byte{id}, "secretsecret1"...), ch...))
	myChallenge := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	resp, err := c.Verify(Text{{"CHAP_N", "alice"}, {"CHAP_R", "0x" + hex.EncodeToString(h[:])},
		{"CHAP_I", "9"}, {"CHAP_C", "0x" + hex.EncodeToString(myChallenge)}})
	if err != nil {
		t.Fatal(err)
	}
	want := md5.Sum(append(append([]byte{9}, "targetsecret2"...), myChallenge...))
	if got, _ := resp.Get("CHAP_R"); got != "0x"+hex.EncodeToString(want[:]) {
		t.Errorf("mutual CHAP_R = %s", got)
	}
	// Wrong secret.
	c2 := &CHAP{Expect: Secret{"alice", "secretsecret1"}, Rand: fixedRand(1)}
	c2.Start("5")
	if _, err := c2.Verify(Text{{"CHAP_N", "alice"}, {"CHAP_R", "0x00112233445566778899aabbccddeeff"}}); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("wrong secret: err = %v", err)
	}
	// Reflection of the target's own challenge is refused.
	c3 := &CHAP{Expect: Secret{"alice", "secretsecret1"}, Mutual: &Secret{"t", "targetsecret2"}, Rand: fixedRand(3)}
	r3, _ := c3.Start("5")
	ch3s, _ := r3.Get("CHAP_C")
	ch3, _ := hex.DecodeString(ch3s[2:])
	id3s, _ := r3.Get("CHAP_I")
	var id3 byte
	for _, d := range id3s {
		id3 = id3*10 + byte(d-'0')
	}
	h3 := md5.Sum(append(append([]byte{id3}, "secretsecret1"...), ch3...))
	if _, err := c3.Verify(Text{{"CHAP_N", "alice"}, {"CHAP_R", "0x" + hex.EncodeToString(h3[:])}, {"CHAP_I", "1"}, {"CHAP_C", ch3s}}); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("reflected challenge: err = %v", err)
	}
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.1994-05.com.redhat:abc\x00SessionType=Normal\x00"))
	f.Add([]byte("CHAP_R=0x0011\x00CHAP_N=x\x00"))
	f.Add([]byte("A=\x00=\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kv, err := ParseText(data)
		if err != nil {
			return
		}
		n := NewNegotiator(limits())
		_, _ = n.Operational(kv, false)
		c := &CHAP{Expect: Secret{"a", "secretsecret"}, Mutual: &Secret{"b", "othersecret1"}, Rand: fixedRand(0)}
		if v, ok := kv.Get("CHAP_A"); ok {
			_, _ = c.Start(v)
		}
		_, _ = c.Verify(kv)
		again, err := ParseText(kv.Append(nil))
		if err != nil || len(again) != len(kv) {
			t.Fatalf("round trip of %q: %v", data, err)
		}
	})
}
