// Package pdu encodes and decodes iSCSI protocol data units (RFC 7143 §11).
//
// A PDU on the wire is a 48-byte Basic Header Segment (BHS), optional
// Additional Header Segments, an optional header digest, a data segment padded
// to a multiple of four bytes and an optional data digest. This package gives
// typed access to the BHS fields of every opcode, the CRC32C digest, and the
// framing rules (lengths, padding). It does no I/O of its own beyond the
// helpers that read exactly one header from a reader: the connection code in
// package target decides where each data segment lands, so that SCSI data can
// be read straight into the aligned buffer that will be written to disk.
//
// Callers validate a header once with Header.Validate (or the typed decoders)
// and then trust its fields.
package pdu
