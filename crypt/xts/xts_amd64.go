//go:build amd64 && !purego

package xts

import "golang.org/x/sys/cpu"

// The assembly routines process n bytes (a positive multiple of sectorSize)
// from src to dst as consecutive data units numbered unit, unit+1, ...
// rk is the data key schedule (encryption or decryption order), tk key2's
// encryption schedule, nr the number of rounds (10 or 14).

//go:noescape
func xtsEncAESNI(rk, tk *byte, nr int, dst, src *byte, n, sectorSize int, unit uint64)

//go:noescape
func xtsDecAESNI(rk, tk *byte, nr int, dst, src *byte, n, sectorSize int, unit uint64)

//go:noescape
func xtsEncVAES(rk, tk *byte, nr int, dst, src *byte, n, sectorSize int, unit uint64)

//go:noescape
func xtsDecVAES(rk, tk *byte, nr int, dst, src *byte, n, sectorSize int, unit uint64)

// hasAESNI: the AES-NI path needs AES-NI and SSE2 (always present on amd64).
func hasAESNI() bool { return cpu.X86.HasAES }

// hasVAES: the VAES path uses AVX-512F/BW (EVEX byte shifts on ZMM), VAES and
// VPCLMULQDQ on ZMM; x/sys/cpu also checks that the OS saves ZMM state.
func hasVAES() bool {
	x := &cpu.X86
	return hasAESNI() && x.HasAVX512F && x.HasAVX512VL && x.HasAVX512BW &&
		x.HasAVX512VAES && x.HasAVX512VPCLMULQDQ
}

// supportedImpls lists the implementations this CPU can run, best last.
func supportedImpls() []impl {
	s := []impl{implGeneric}
	if hasAESNI() {
		s = append(s, implAESNI)
	}
	if hasVAES() {
		s = append(s, implVAES)
	}
	return s
}

func bestImpl() impl {
	s := supportedImpls()
	return s[len(s)-1]
}

// crypt runs the chosen implementation; len(src) is a positive multiple of
// sectorSize and dst is at least as long.
func (c *Cipher) crypt(dst, src []byte, sectorSize int, unit uint64, decrypt bool) {
	st := c.st
	switch {
	case c.impl == implVAES && !decrypt:
		xtsEncVAES(&st[encOff], &st[tweakOff], c.nr, &dst[0], &src[0], len(src), sectorSize, unit)
	case c.impl == implVAES:
		xtsDecVAES(&st[decOff], &st[tweakOff], c.nr, &dst[0], &src[0], len(src), sectorSize, unit)
	case c.impl == implAESNI && !decrypt:
		xtsEncAESNI(&st[encOff], &st[tweakOff], c.nr, &dst[0], &src[0], len(src), sectorSize, unit)
	case c.impl == implAESNI:
		xtsDecAESNI(&st[decOff], &st[tweakOff], c.nr, &dst[0], &src[0], len(src), sectorSize, unit)
	default:
		c.cryptGeneric(dst, src, sectorSize, unit, decrypt)
	}
}
