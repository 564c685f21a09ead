// Package crypt is hastor's encryption at rest: LUNs stored as LUKS2
// volumes (aes-xts-plain64), readable by cryptsetup and dm-crypt.
//
//   - Device is a blockdev.Device over a volume's data area. It encrypts
//     each write in the caller's buffer, in place (blockdev.Device allows
//     it), and decrypts each read in place, so the data path makes no extra
//     copy. It starts locked: every transfer fails with ErrLocked, and the
//     target reports NOT READY, until Unlock gives it a Key.
//   - Key holds the AES-XTS key schedules in memory that is mlock'd,
//     excluded from core dumps and zeroed by Destroy; the raw volume key is
//     not kept. Device.Close destroys its Key.
//   - Volume ties a Device to the LUKS2 header on the same path (package
//     luks2): OpenVolume maps the data segment, Volume.Unlock opens a
//     keyslot with a passphrase. hastord only reads the header; hastorctl
//     writes it.
//
// Subpackages: xts is the AES-XTS cipher (AES-NI and VAES assembly on
// amd64, pure Go elsewhere); luks2 is the on-disk format.
//
// Replication (a later layer) sits below Device: only ciphertext reaches
// the peer and its disk.
package crypt
