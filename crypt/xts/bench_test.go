package xts

import (
	"crypto/aes"
	"fmt"
	"testing"

	xxts "golang.org/x/crypto/xts"
)

// benchBufSize is the bytes processed per operation: a whole I/O buffer of
// sectors, as hastor encrypts them.
const benchBufSize = 64 << 10

// BenchmarkEncrypt/aes{128,256}/{512,4096}/{vaes-avx512,aesni,generic,x-crypto}
func BenchmarkEncrypt(b *testing.B) { benchXTS(b, false) }

// BenchmarkDecrypt is BenchmarkEncrypt for decryption.
func BenchmarkDecrypt(b *testing.B) { benchXTS(b, true) }

func benchXTS(b *testing.B, decrypt bool) {
	for _, keyLen := range []int{32, 64} {
		key := make([]byte, keyLen)
		for i := range key {
			key[i] = byte(i + 1)
		}
		for _, ss := range []int{512, 4096} {
			buf := make([]byte, benchBufSize)
			prefix := fmt.Sprintf("aes%d/%d/", keyLen*4, ss)
			for _, im := range testImpls(b) {
				c := newImpl(b, key, im)
				b.Run(prefix+im.String(), func(b *testing.B) {
					b.SetBytes(int64(len(buf)))
					b.ReportAllocs()
					for b.Loop() {
						if decrypt {
							c.DecryptSectors(buf, ss, 1000)
						} else {
							c.EncryptSectors(buf, ss, 1000)
						}
					}
				})
			}
			ref, err := xxts.NewCipher(aes.NewCipher, key)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(prefix+"x-crypto", func(b *testing.B) {
				b.SetBytes(int64(len(buf)))
				b.ReportAllocs()
				for b.Loop() {
					for i, u := 0, uint64(1000); i < len(buf); i, u = i+ss, u+1 {
						s := buf[i : i+ss]
						if decrypt {
							ref.Decrypt(s, s, u)
						} else {
							ref.Encrypt(s, s, u)
						}
					}
				}
			})
		}
	}
}
