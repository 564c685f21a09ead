// Package xts implements XTS-AES (IEEE Std 1619-2007, NIST SP 800-38E) for
// encrypting LUN blocks at rest, at memory speed.
//
// A Cipher is keyed with a double-length key (key1 || key2, 32 or 64 bytes
// for AES-128 or AES-256) and encrypts whole buffers of data units
// ("sectors") in place with EncryptSectors/DecryptSectors. The tweak of a data
// unit is its number as a 64-bit little-endian integer zero-padded to 16
// bytes, as dm-crypt's "plain64" IV and golang.org/x/crypto/xts use.
// Ciphertext stealing is not implemented: every data unit is a multiple of
// 16 bytes.
//
// Implementations, chosen once at New time: "vaes-avx512" (VAES and
// VPCLMULQDQ on ZMM registers, 32 blocks in flight), "aesni" (AES-NI, 8
// blocks in flight) and "generic" (portable Go, also forced by the purego
// build tag). All key-derived material (both halves' round keys, the
// decryption schedule) lives in one StateSize-byte array which NewInState
// lets the caller place, for example in mlock'd memory.
//
// Callers' duties:
//   - Validate sizes at the edge. EncryptSectors and DecryptSectors panic if
//     sectorSize is not a positive multiple of 16 or len(buf) is not a
//     multiple of sectorSize; Encrypt and Decrypt panic like
//     golang.org/x/crypto/xts does. These are programmer errors, not input.
//   - Never reuse a (key, data unit number) pair for different content if
//     that matters to the threat model: XTS is a deterministic mode.
//   - A Cipher is read-only after construction and safe for concurrent use;
//     Wipe must not race with any other call and ends the Cipher's life.
package xts
