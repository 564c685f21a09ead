// Package luks2 reads and writes LUKS2 volume headers compatible with
// cryptsetup (2.x), so hastor can open volumes cryptsetup made and
// cryptsetup can open volumes hastor made.
//
// It implements the LUKS2 On-Disk Format Specification (M. Broz, v1.0.0+)
// and, for the anti-forensic splitter, the LUKS1 specification:
//
//   - two header copies, each a 4096-byte binary header (magic "LUKS\xba\xbe"
//     at offset 0, "SKUL\xba\xbe" at offset hdr_size) followed by a JSON
//     area; metadata sizes 16 KiB .. 4 MiB are read, 16 KiB is written;
//     the sha256 checksum covers binary header and JSON area with the
//     checksum field zeroed;
//   - keyslots of type luks2: argon2id, argon2i or pbkdf2 (sha1/sha256/
//     sha512), AF splitter (4000 stripes, sha256 for new keyslots),
//     area encrypted with aes-xts-plain64, 512-byte sectors numbered from
//     the start of the area;
//   - a pbkdf2 digest over the volume key linking keyslots and segment;
//   - exactly one data segment: crypt, aes-xts-plain64, 512- or 4096-byte
//     sectors, 256- or 512-bit key, iv_tweak 0, size "dynamic" or fixed.
//
// Everything else (other ciphers, integrity, several segments, an
// in-progress reencryption, any mandatory requirement, detached headers)
// is refused with ErrUnsupported. Tokens, unknown fields and config flags
// are kept byte-for-byte when the metadata is rewritten; removing a
// keyslot removes references to it from digests and tokens, as cryptsetup
// does.
//
// # Reading
//
// Open reads and verifies both copies and uses the valid one with the
// highest seqid; Warnings reports a damaged or outdated copy. If the
// primary is unreadable the secondary is searched at every allowed
// offset. Open, Unlock, UnlockSlot, Dump and BackupHeader never write.
//
// # Writing
//
// AddKey, ChangeKey, RemoveKey, ForceRemoveKey and Erase first re-read and
// verify the header (so changes made meanwhile by cryptsetup are seen; a
// different UUID gives ErrChanged), then write keyslot area material and
// sync, then write the primary header with seqid+1, sync, the secondary,
// sync. A crash at any point leaves a volume that opens with the old or the
// new state; a copy that was damaged is repaired by the write. Keyslot
// areas are wiped with random data (and synced) before the metadata drops
// them. RemoveKey refuses to remove the last keyslot (ErrLastKeyslot);
// ForceRemoveKey and Erase do it on purpose.
//
// Format overwrites everything below the data offset (default 16 MiB)
// without looking at what was there: the caller checks for an existing
// volume first.
//
// # Caller duties
//
//   - Storage.Sync must make earlier writes durable; the crash-safety
//     argument depends on it.
//   - Volume keys returned by Format, Unlock and UnlockSlot belong to the
//     caller, who zeroes them after use. The package zeroes its own
//     derived keys and AF material; copies it cannot reach remain
//     (crypto/pbkdf2 takes the passphrase as a string, argon2's work
//     memory is left to the garbage collector).
//   - Nothing here logs; Dump prints salts and digests but no key material.
//     Header backups contain the keyslots: protect them like the key.
//   - Unlock runs the KDF the header names. A hostile header can make it
//     slow (argon2 memory is capped at 4 GiB, as in cryptsetup); open
//     untrusted images with that in mind.
//   - Default KDF parameters (PBKDF zero value) run a benchmark of about
//     2 s and use up to 1 GiB; call Benchmark once and pass its result to
//     amortize it, or pass explicit parameters.
//   - A Volume is safe for concurrent use, but two Volumes (or a Volume
//     and cryptsetup) changing one device at the same time race: hold an
//     external lock.
package luks2
