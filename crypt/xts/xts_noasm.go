//go:build !amd64 || purego

package xts

func supportedImpls() []impl { return []impl{implGeneric} }

func bestImpl() impl { return implGeneric }

func (c *Cipher) crypt(dst, src []byte, sectorSize int, unit uint64, decrypt bool) {
	c.cryptGeneric(dst, src, sectorSize, unit, decrypt)
}
