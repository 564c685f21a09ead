package target

import (
	"bufio"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"hastor/target/login"
	"hastor/target/pdu"
)

// ini is a minimal iSCSI initiator for protocol tests: it speaks real
// iSCSI over real TCP, one PDU at a time, so tests can craft exactly the
// sequences (and the mistakes) they need.
type ini struct {
	t         testing.TB
	nc        net.Conn
	br        *bufio.Reader
	isid      [6]byte
	tsih      uint16
	cmdSN     uint32
	expStatSN uint32
	itt       uint32
	hd, dd    bool
	maxSend   int // target's MaxRecvDataSegmentLength
	maxRecv   int // our MaxRecvDataSegmentLength: the target must honour it
	params    map[string]string
}

func dialIni(t testing.TB, addr string) *ini {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &ini{t: t, nc: nc, br: bufio.NewReader(nc), isid: [6]byte{0x80, 1, 2, 3, 4, 5}, cmdSN: 1, maxSend: 8192, maxRecv: 8192, params: map[string]string{}}
}

func (i *ini) nextITT() uint32 { i.itt++; return i.itt }

// send writes one PDU with digests as negotiated.
func (i *ini) send(h *pdu.Header, data []byte) error {
	h.SetDataSegmentLength(len(data))
	buf := append([]byte(nil), h[:]...)
	if i.hd {
		var d [4]byte
		pdu.PutDigest(d[:], pdu.CRC32C(0, h[:]))
		buf = append(buf, d[:]...)
	}
	if len(data) > 0 {
		buf = append(buf, data...)
		buf = append(buf, make([]byte, pdu.Pad(len(data)))...)
		if i.dd {
			var d [4]byte
			pdu.PutDigest(d[:], pdu.CRC32C(0, buf[len(buf)-len(data)-pdu.Pad(len(data)):]))
			buf = append(buf, d[:]...)
		}
	}
	_, err := i.nc.Write(buf)
	return err
}

// recv reads one PDU and checks its digests.
func (i *ini) recv() (pdu.Header, []byte, error) {
	var h pdu.Header
	if _, err := io.ReadFull(i.br, h[:]); err != nil {
		return h, nil, err
	}
	if h.TotalAHSLength() > 0 {
		return h, nil, fmt.Errorf("unexpected AHS")
	}
	if i.hd {
		var d [4]byte
		if _, err := io.ReadFull(i.br, d[:]); err != nil {
			return h, nil, err
		}
		if pdu.Digest(d[:]) != pdu.CRC32C(0, h[:]) {
			return h, nil, fmt.Errorf("bad header digest from target")
		}
	}
	n := h.DataSegmentLength()
	if n > i.maxRecv {
		return h, nil, fmt.Errorf("target sent a %d-byte data segment; MaxRecvDataSegmentLength is %d", n, i.maxRecv)
	}
	data := make([]byte, n+pdu.Pad(n))
	if _, err := io.ReadFull(i.br, data); err != nil {
		return h, nil, err
	}
	if i.dd && n > 0 {
		var d [4]byte
		if _, err := io.ReadFull(i.br, d[:]); err != nil {
			return h, nil, err
		}
		if pdu.Digest(d[:]) != pdu.CRC32C(0, data) {
			return h, nil, fmt.Errorf("bad data digest from target")
		}
	}
	if h.Opcode() != pdu.OpR2T && !(h.Opcode() == pdu.OpDataIn && h.Flags()&pdu.FlagStatus == 0) &&
		!(h.Opcode() == pdu.OpNOPIn && h.ITT() == pdu.ReservedTag) {
		i.expStatSN = h.StatSN() + 1
	}
	return h, data[:n], nil
}

func (i *ini) mustRecv() (pdu.Header, []byte) {
	i.t.Helper()
	h, d, err := i.recv()
	if err != nil {
		i.t.Fatalf("recv: %v", err)
	}
	return h, d
}

// loginOpts configure a login.
type loginOpts struct {
	initiator  string
	target     string // empty: discovery session
	chapUser   string
	chapPass   string
	mutualPass string // when set, authenticate the target too
	keys       login.Text
}

// login performs a full login and returns the final status (0 on success).
func (i *ini) login(o loginOpts) (uint16, error) {
	itt := i.nextITT()
	base := login.Text{{Key: "InitiatorName", Value: o.initiator}}
	if o.target == "" {
		base = append(base, login.KV{Key: "SessionType", Value: "Discovery"})
	} else {
		base = append(base, login.KV{Key: "SessionType", Value: "Normal"}, login.KV{Key: "TargetName", Value: o.target})
	}
	exchange := func(csg, nsg int, transit bool, kv login.Text) (pdu.Header, login.Text, error) {
		var h pdu.Header
		h.SetOpcode(pdu.OpLoginReq, true)
		f := byte(csg)<<2 | byte(nsg)
		if transit {
			f |= pdu.FlagTransit
		}
		h.SetFlags(f)
		copy(h[8:14], i.isid[:])
		h.PutU16(14, i.tsih)
		h.SetITT(itt)
		h.PutU32(24, i.cmdSN)
		h.PutU32(28, i.expStatSN)
		if err := i.send(&h, kv.Append(nil)); err != nil {
			return h, nil, err
		}
		rh, data, err := i.recv()
		if err != nil {
			return rh, nil, err
		}
		if rh.Opcode() != pdu.OpLoginResp {
			return rh, nil, fmt.Errorf("got %v during login", rh.Opcode())
		}
		resp, err := login.ParseText(data)
		return rh, resp, err
	}
	status := func(h pdu.Header) uint16 { return uint16(h[36])<<8 | uint16(h[37]) }
	if o.chapUser != "" {
		rh, _, err := exchange(0, 1, false, append(base, login.KV{Key: "AuthMethod", Value: "CHAP,None"}))
		if err != nil || status(rh) != 0 {
			return status(rh), err
		}
		rh, resp, err := exchange(0, 1, false, login.Text{{Key: "CHAP_A", Value: "5"}})
		if err != nil || status(rh) != 0 {
			return status(rh), err
		}
		idS, _ := resp.Get("CHAP_I")
		chS, _ := resp.Get("CHAP_C")
		id, _ := strconv.Atoi(idS)
		ch, _ := hex.DecodeString(chS[2:])
		sum := md5.Sum(append(append([]byte{byte(id)}, o.chapPass...), ch...))
		kv := login.Text{{Key: "CHAP_N", Value: o.chapUser}, {Key: "CHAP_R", Value: "0x" + hex.EncodeToString(sum[:])}}
		myCh := []byte("0123456789abcdef")
		if o.mutualPass != "" {
			kv = append(kv, login.KV{Key: "CHAP_I", Value: "77"}, login.KV{Key: "CHAP_C", Value: "0x" + hex.EncodeToString(myCh)})
		}
		rh, resp, err = exchange(0, 1, true, kv)
		if err != nil || status(rh) != 0 {
			return status(rh), err
		}
		if o.mutualPass != "" {
			want := md5.Sum(append(append([]byte{77}, o.mutualPass...), myCh...))
			if got, _ := resp.Get("CHAP_R"); got != "0x"+hex.EncodeToString(want[:]) {
				return 0xffff, fmt.Errorf("target failed mutual authentication: CHAP_R=%q", got)
			}
		}
		base = nil
	} else {
		rh, _, err := exchange(0, 1, true, append(base, login.KV{Key: "AuthMethod", Value: "None"}))
		if err != nil || status(rh) != 0 {
			return status(rh), err
		}
		base = nil
	}
	keys := o.keys
	if keys == nil {
		keys = login.Text{{Key: "HeaderDigest", Value: "None"}, {Key: "DataDigest", Value: "None"},
			{Key: "MaxRecvDataSegmentLength", Value: "65536"}, {Key: "InitialR2T", Value: "No"},
			{Key: "ImmediateData", Value: "Yes"}, {Key: "MaxBurstLength", Value: "262144"},
			{Key: "FirstBurstLength", Value: "65536"}, {Key: "MaxOutstandingR2T", Value: "4"}}
	}
	rh, resp, err := exchange(1, 3, true, append(base, keys...))
	if err != nil || status(rh) != 0 {
		return status(rh), err
	}
	if v, ok := keys.Get("MaxRecvDataSegmentLength"); ok {
		i.maxRecv, _ = strconv.Atoi(v)
	}
	if !rh.Transit() {
		return 0xffff, fmt.Errorf("target did not transit to full feature phase")
	}
	for _, kv := range resp {
		i.params[kv.Key] = kv.Value
	}
	i.hd = i.params["HeaderDigest"] == "CRC32C"
	i.dd = i.params["DataDigest"] == "CRC32C"
	if v, err := strconv.Atoi(i.params["MaxRecvDataSegmentLength"]); err == nil {
		i.maxSend = v
	}
	i.tsih = rh.TSIH()
	return 0, nil
}

// scsiResult is a finished SCSI command.
type scsiResult struct {
	status   byte
	flags    byte
	residual uint32
	data     []byte
	sense    []byte
}

// command runs one SCSI command to completion, answering R2Ts.
func (i *ini) command(lun uint64, cdb []byte, edtl uint32, out []byte, read bool) (scsiResult, error) {
	itt := i.nextITT()
	var h pdu.Header
	h.SetOpcode(pdu.OpSCSICmd, false)
	f := byte(pdu.FlagFinal | pdu.AttrSimple)
	if read {
		f |= pdu.FlagRead
	}
	if out != nil {
		f |= pdu.FlagWrite
	}
	h.SetFlags(f)
	h.SetLUN(lun << 48)
	h.SetITT(itt)
	h.PutU32(20, edtl)
	h.PutU32(24, i.cmdSN)
	h.PutU32(28, i.expStatSN)
	i.cmdSN++
	copy(h[32:48], cdb)
	// Unsolicited data (RFC 7143 §4.2.5.2): immediate data in the command
	// PDU when ImmediateData=Yes, then, when InitialR2T=No, Data-Out PDUs
	// up to FirstBurstLength; the command's F bit is set only when no
	// unsolicited Data-Out follows.
	fb, _ := strconv.Atoi(i.params["FirstBurstLength"])
	if fb == 0 {
		fb = 65536
	}
	unsol := 0
	if out != nil && i.params["InitialR2T"] == "No" {
		unsol = min(len(out), fb)
	}
	var imm []byte
	if out != nil && i.params["ImmediateData"] == "Yes" {
		imm = out[:min(len(out), fb, i.maxSend)]
	}
	if unsol > len(imm) {
		h.SetFlags(f &^ pdu.FlagFinal)
	}
	if err := i.send(&h, imm); err != nil {
		return scsiResult{}, err
	}
	var sn uint32
	for off := len(imm); off < unsol; {
		n := min(unsol-off, i.maxSend)
		var d pdu.Header
		d.SetOpcode(pdu.OpDataOut, false)
		if off+n == unsol {
			d.SetFlags(pdu.FlagFinal)
		}
		d.SetLUN(lun << 48)
		d.SetITT(itt)
		d.SetTTT(pdu.ReservedTag)
		d.PutU32(28, i.expStatSN)
		d.PutU32(36, sn)
		d.PutU32(40, uint32(off))
		if err := i.send(&d, out[off:off+n]); err != nil {
			return scsiResult{}, err
		}
		sn++
		off += n
	}
	var res scsiResult
	for {
		rh, data, err := i.recv()
		if err != nil {
			return res, err
		}
		switch rh.Opcode() {
		case pdu.OpR2T:
			off, length := rh.BufferOffset(), rh.U32(44)
			var sn uint32
			for sent := uint32(0); sent < length; {
				n := min(length-sent, uint32(i.maxSend))
				var d pdu.Header
				d.SetOpcode(pdu.OpDataOut, false)
				if sent+n == length {
					d.SetFlags(pdu.FlagFinal)
				}
				d.SetLUN(lun << 48)
				d.SetITT(itt)
				d.SetTTT(rh.TTT())
				d.PutU32(28, i.expStatSN)
				d.PutU32(36, sn)
				d.PutU32(40, off+sent)
				if err := i.send(&d, out[off+sent:off+sent+n]); err != nil {
					return res, err
				}
				sn++
				sent += n
			}
		case pdu.OpDataIn:
			res.data = append(res.data, data...)
			if rh.Flags()&pdu.FlagStatus != 0 {
				res.status = rh[3]
				res.flags = rh.Flags()
				res.residual = rh.U32(44)
				return res, nil
			}
		case pdu.OpSCSIResp:
			res.status = rh[3]
			res.flags = rh.Flags()
			res.residual = rh.U32(44)
			if len(data) >= 2 {
				n := int(binary.BigEndian.Uint16(data))
				res.sense = data[2 : 2+min(n, len(data)-2)]
			}
			return res, nil
		case pdu.OpNOPIn:
			continue
		default:
			return res, fmt.Errorf("unexpected %v", rh.Opcode())
		}
	}
}
