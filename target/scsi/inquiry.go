package scsi

import (
	"encoding/binary"
	"fmt"
)

// VPD pages (SPC-4 "vital product data", SBC-3 "VPD parameters"), in ascending
// order as page 00h lists them.
const (
	vpdSupported       = 0x00 // SPC-4 "Supported VPD Pages"
	vpdSerial          = 0x80 // SPC-4 "Unit Serial Number VPD page"
	vpdDeviceID        = 0x83 // SPC-4 "Device Identification VPD page"
	vpdExtendedInquiry = 0x86 // SPC-4 "Extended INQUIRY Data VPD page"
	vpdThirdPartyCopy  = 0x8F // SPC-4 "Third-party Copy VPD page" (xcopy.go)
	vpdBlockLimits     = 0xB0 // SBC-3 "Block Limits VPD page"
	vpdBlockDevChars   = 0xB1 // SBC-3 "Block Device Characteristics VPD page"
	vpdLBProvisioning  = 0xB2 // SBC-3 "Logical Block Provisioning VPD page"
)

var vpdPages = [...]byte{vpdSupported, vpdSerial, vpdDeviceID, vpdExtendedInquiry, vpdThirdPartyCopy,
	vpdBlockLimits, vpdBlockDevChars, vpdLBProvisioning}

func (lu *LU) hasVPD(p byte) bool {
	if lu.absent {
		return p == vpdSupported
	}
	for _, q := range vpdPages {
		if q == p {
			return true
		}
	}
	return false
}

// Version descriptors (SPC-4 "standard INQUIRY data": "no version claimed").
const (
	verSAM5  = 0x00A0
	verISCSI = 0x0960
	verSPC4  = 0x0460
	verSBC3  = 0x04C0
)

// Standard INQUIRY data length: 96 bytes (ADDITIONAL LENGTH 91).
const stdInquiryLen = 96

// buildStdInquiry returns the standard INQUIRY data (SPC-4 "standard INQUIRY
// data") with byte 0 (PERIPHERAL QUALIFIER and DEVICE TYPE) set to b0.
func (lu *LU) buildStdInquiry(b0 byte) []byte {
	b := make([]byte, stdInquiryLen)
	b[0] = b0
	b[1] = 0x00 // RMB=0: the medium is not removable
	b[2] = 0x06 // VERSION: SPC-4
	// NORMACA=0, HISUP=1 (hierarchical LUNs, SAM-5 "hierarchical
	// addressing"), RESPONSE DATA FORMAT 2.
	b[3] = 0x10 | 0x02
	b[4] = stdInquiryLen - 5
	b[5] = 0x00 // SCCS=0 ACC=0 TPGS=00b 3PC=0 PROTECT=0
	if !lu.absent {
		b[5] |= 0x08 // 3PC: EXTENDED COPY (xcopy.go)
	}
	b[6] = 0x00 // ENCSERV=0 MULTIP=0
	b[7] = 0x02 // CMDQUE=1
	padCopy(b[8:16], lu.cfg.Vendor)
	padCopy(b[16:32], lu.cfg.Product)
	padCopy(b[32:36], lu.cfg.Revision)
	for i, v := range []uint16{verSAM5, verISCSI, verSPC4, verSBC3} {
		binary.BigEndian.PutUint16(b[58+2*i:], v)
	}
	return b
}

// padCopy copies s into b and pads with spaces (SPC-4 "ASCII data field
// requirements").
func padCopy(b []byte, s string) {
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}

// execInquiry runs SPC-4 "INQUIRY".
func (lu *LU) execInquiry(n *Nexus, cmd *Command, data []byte) Response {
	if !cmd.evpd {
		return dataIn(cmd, lu.stdInquiry, data)
	}
	var b []byte
	switch cmd.page {
	case vpdSupported:
		if lu.absent {
			b = vpdHeader(0x7F, vpdSupported, 1)
			b[4] = vpdSupported
		} else {
			b = vpdHeader(0x00, vpdSupported, len(vpdPages))
			copy(b[4:], vpdPages[:])
		}
	case vpdSerial:
		b = vpdHeader(0x00, vpdSerial, len(lu.id.Serial))
		copy(b[4:], lu.id.Serial)
	case vpdDeviceID:
		b = lu.vpdDeviceIdentification(n)
	case vpdExtendedInquiry:
		b = vpdHeader(0x00, vpdExtendedInquiry, 0x3C)
		b[5] = 0x01      // SIMPSUP: simple task attribute supported
		b[6] = 0x01      // V_SUP: a volatile write cache exists (WCE)
		b[7] = 0x01      // LUICLR: UAs are per I_T_L nexus (SAM-5 "unit attention condition")
		b[13] = SenseMax // MAXIMUM SUPPORTED SENSE DATA LENGTH
	case vpdThirdPartyCopy:
		b = lu.vpdThirdPartyCopy()
	case vpdBlockLimits:
		b = vpdHeader(0x00, vpdBlockLimits, 0x3C)
		// WSNZ=0: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 writes to
		// the last block, within MAXIMUM WRITE SAME LENGTH.
		b[5] = byte(lu.maxCAW)
		// OPTIMAL TRANSFER LENGTH GRANULARITY: one 4 KiB page, the
		// unit of O_DIRECT I/O on the backing store.
		binary.BigEndian.PutUint16(b[6:8], uint16(max(1, 4096/lu.bs)))
		binary.BigEndian.PutUint32(b[8:12], uint32(lu.maxXfer))
		// OPTIMAL TRANSFER LENGTH 0 (not reported). MAXIMUM PREFETCH
		// LENGTH 0: PRE-FETCH is supported without a length limit (it
		// transfers nothing; see execPreFetch).
		if lu.thin() {
			binary.BigEndian.PutUint32(b[20:24], uint32(lu.maxUnmap))
			binary.BigEndian.PutUint32(b[24:28], maxUnmapDescriptors)
			// OPTIMAL UNMAP GRANULARITY: a 4 KiB page, which a file
			// system can free; UGAVALID=0.
			binary.BigEndian.PutUint32(b[28:32], uint32(max(1, 4096/lu.bs)))
		}
		binary.BigEndian.PutUint64(b[36:44], uint64(lu.maxWriteSame))
		// No atomic writes (MAXIMUM ATOMIC TRANSFER LENGTH, ATOMIC
		// ALIGNMENT, ATOMIC TRANSFER LENGTH GRANULARITY 0): ORWRITE's and
		// COMPARE AND WRITE's atomicity is that of an uninterrupted
		// sequence, not SBC-4 "atomic writes".
	case vpdBlockDevChars:
		b = vpdHeader(0x00, vpdBlockDevChars, 0x3C)
		// MEDIUM ROTATION RATE 0001h: non-rotating medium. The volume
		// lives on replicated, usually solid-state storage behind a
		// network; seek-avoiding I/O scheduling only adds latency.
		binary.BigEndian.PutUint16(b[4:6], 0x0001)
		// PRODUCT TYPE 0, WABEREQ/WACEREQ 0, NOMINAL FORM FACTOR 0 (not
		// reported).
	case vpdLBProvisioning:
		b = vpdHeader(0x00, vpdLBProvisioning, 4)
		// THRESHOLD EXPONENT 0 (no thresholds), ANC_SUP=0, DP=0.
		if lu.thin() {
			// LBPU, LBPWS, LBPRZ (not LBPWS10: provisioning.go);
			// PROVISIONING TYPE 010b (thin provisioned).
			b[5] = 0x80 | 0x40 | 0x04
			b[6] = 0x02
		}
		// Otherwise LBPU=LBPWS=LBPWS10=LBPRZ=0 and PROVISIONING TYPE 0
		// (fully provisioned).
	default:
		// Decode only lets supported pages through.
		return lu.fail(invalidCDB(2, 7))
	}
	return dataIn(cmd, b, data)
}

// vpdHeader returns a VPD page of payload bytes after the 4-byte header.
func vpdHeader(b0, page byte, payload int) []byte {
	b := make([]byte, 4+payload)
	b[0] = b0
	b[1] = page
	binary.BigEndian.PutUint16(b[2:4], uint16(payload))
	return b
}

// Designator fields (SPC-4 "designation descriptor").
const (
	protoISCSI = 0x5 // PROTOCOL IDENTIFIER (SPC-4 "protocol identifier values")

	codeBinary = 0x1
	codeASCII  = 0x2
	codeUTF8   = 0x3

	assocLU     = 0x0 << 4
	assocPort   = 0x1 << 4
	assocTarget = 0x2 << 4
	piv         = 0x80

	desigT10Vendor = 0x1
	desigNAA       = 0x3
	desigRelPort   = 0x4
	desigSCSIName  = 0x8
)

// t10VendorID is the T10 VENDOR IDENTIFICATION of the T10 vendor ID based
// designator. It is fixed (not LUConfig.Vendor) so the designator depends
// only on the volume.
const t10VendorID = "HASTOR  "

// maxDeviceIDPage bounds VPD page 83h. Initiators such as libiscsi walk
// the designators up to the PAGE LENGTH even when they asked for only 255
// bytes, so the page must fit in 255.
const maxDeviceIDPage = 255

// vpdDeviceIdentification returns VPD page 83h (SPC-4 "Device Identification
// VPD page") for nexus n: the LU's NAA and T10 vendor ID designators (from the
// VolumeID only), the relative target port and the SCSI target port name of the
// port n uses (iSCSI name + ",t,0x" + TPGT, SPC-4 "SCSI name string designator"
// and RFC 7143's SCSI port names), and the target device name. If the page
// would exceed 255 bytes (target names over ~90 bytes), the target device name
// and then the port name are left out.
func (lu *LU) vpdDeviceIdentification(n *Nexus) []byte {
	type desig struct {
		b0, b1 byte
		val    []byte
	}
	var tgtName string
	var port, tpgt uint16
	if n != nil {
		tgtName, port, tpgt = n.TargetName, n.RelativeTargetPort, n.TPGT
	}
	if t := lu.tgt.Load(); t != nil {
		tgtName = t.name
	}
	if port == 0 {
		port = 1 // relative port 0 is reserved (SPC-4 "relative target port designator")
	}
	ds := []desig{
		// Logical unit: NAA IEEE Registered Extended.
		{codeBinary, assocLU | desigNAA, lu.id.NAA[:]},
		// Logical unit: T10 vendor ID + serial number.
		{codeASCII, assocLU | desigT10Vendor, append([]byte(t10VendorID), lu.id.Serial...)},
		// Target port: relative target port identifier.
		{protoISCSI<<4 | codeBinary, piv | assocPort | desigRelPort, []byte{0, 0, byte(port >> 8), byte(port)}},
	}
	if tgtName != "" {
		ds = append(ds,
			// Target port: SCSI name string "<target>,t,0x<TPGT>".
			desig{protoISCSI<<4 | codeUTF8, piv | assocPort | desigSCSIName,
				scsiNameString(fmt.Sprintf("%s,t,0x%04x", tgtName, tpgt))},
			// Target device: SCSI name string "<target>".
			desig{protoISCSI<<4 | codeUTF8, piv | assocTarget | desigSCSIName, scsiNameString(tgtName)})
	}
	size := func() int {
		total := 4
		for _, d := range ds {
			total += 4 + len(d.val)
		}
		return total
	}
	for size() > maxDeviceIDPage {
		ds = ds[:len(ds)-1]
	}
	b := make([]byte, 4, size())
	b[1] = vpdDeviceID
	for _, d := range ds {
		b = append(b, d.b0, d.b1, 0, byte(len(d.val)))
		b = append(b, d.val...)
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-4))
	return b
}

// scsiNameString returns s null-terminated and padded with nulls to a
// multiple of 4 bytes, at most 256 (SPC-4 "SCSI name string designator").
func scsiNameString(s string) []byte {
	n := (len(s) + 1 + 3) &^ 3
	if n > 252 {
		n = 252
		s = s[:n-1]
	}
	b := make([]byte, n)
	copy(b, s)
	return b
}
