package luks2

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Dump writes a human-readable description of the header, in the layout
// of cryptsetup luksDump. It prints salts and digests (public) but never
// key material.
func (v *Volume) Dump(w io.Writer) error {
	hs := v.state()
	md, h := hs.md, hs.hdr
	b := bufio.NewWriter(w)
	orNone := func(s, none string) string {
		if s == "" {
			return none
		}
		return s
	}
	fmt.Fprintf(b, "LUKS header information\n")
	fmt.Fprintf(b, "Version:       \t2\n")
	fmt.Fprintf(b, "Epoch:         \t%d\n", h.seqID)
	fmt.Fprintf(b, "Metadata area: \t%d [bytes]\n", h.hdrSize)
	fmt.Fprintf(b, "Keyslots area: \t%d [bytes]\n", md.keyslotsSize)
	fmt.Fprintf(b, "UUID:          \t%s\n", h.uuid)
	fmt.Fprintf(b, "Label:         \t%s\n", orNone(h.label, "(no label)"))
	fmt.Fprintf(b, "Subsystem:     \t%s\n", orNone(h.subsystem, "(no subsystem)"))
	fmt.Fprintf(b, "Flags:       \t%s\n", orNone(strings.Join(md.flags, " "), "(no flags)"))
	for _, w := range hs.warnings {
		fmt.Fprintf(b, "Warning:       \t%s\n", w)
	}
	fmt.Fprintf(b, "\nData segments:\n")
	fmt.Fprintf(b, "  %s: crypt\n", md.segID)
	fmt.Fprintf(b, "\toffset: %d [bytes]\n", md.segOffset)
	if md.segSize < 0 {
		fmt.Fprintf(b, "\tlength: (whole device)\n")
	} else {
		fmt.Fprintf(b, "\tlength: %d [bytes]\n", md.segSize)
	}
	fmt.Fprintf(b, "\tcipher: %s\n", md.encryption)
	fmt.Fprintf(b, "\tsector: %d [bytes]\n", md.sectorSize)
	fmt.Fprintf(b, "\nKeyslots:\n")
	prio := map[int]string{PriorityIgnore: "ignored", PriorityNormal: "normal", PriorityHigh: "preferred"}
	for _, id := range md.sortedSlots() {
		ks := md.slots[id]
		fmt.Fprintf(b, "  %d: luks2\n", id)
		fmt.Fprintf(b, "\tKey:        %d bits\n", 8*ks.keySize)
		fmt.Fprintf(b, "\tPriority:   %s\n", prio[ks.priority])
		fmt.Fprintf(b, "\tCipher:     aes-xts-plain64\n")
		fmt.Fprintf(b, "\tCipher key: %d bits\n", 8*ks.areaKey)
		fmt.Fprintf(b, "\tPBKDF:      %s\n", ks.kdf.Type)
		if ks.kdf.Type == "pbkdf2" {
			fmt.Fprintf(b, "\tHash:       %s\n", ks.kdf.Hash)
			fmt.Fprintf(b, "\tIterations: %d\n", ks.kdf.Iterations)
		} else {
			fmt.Fprintf(b, "\tTime cost:  %d\n", ks.kdf.Time)
			fmt.Fprintf(b, "\tMemory:     %d\n", ks.kdf.MemoryKiB)
			fmt.Fprintf(b, "\tThreads:    %d\n", ks.kdf.Threads)
		}
		hexBlock(b, "\tSalt:       ", ks.salt)
		fmt.Fprintf(b, "\tAF stripes: %d\n", ks.stripes)
		fmt.Fprintf(b, "\tAF hash:    %s\n", ks.afHash)
		fmt.Fprintf(b, "\tArea offset:%d [bytes]\n", ks.areaOffset)
		fmt.Fprintf(b, "\tArea length:%d [bytes]\n", ks.areaSize)
		fmt.Fprintf(b, "\tDigest ID:  %s\n", ks.digest)
	}
	fmt.Fprintf(b, "Tokens:\n")
	for _, m := range md.tokens.m {
		var t struct {
			Type     string   `json:"type"`
			Keyslots []string `json:"keyslots"`
		}
		_ = unmarshalExact(m.val, &t) // validated at parse time
		fmt.Fprintf(b, "  %s: %s\n", m.key, t.Type)
		if len(t.Keyslots) > 0 {
			fmt.Fprintf(b, "\tKeyslot:    %s\n", strings.Join(t.Keyslots, ", "))
		}
	}
	fmt.Fprintf(b, "Digests:\n")
	for _, m := range md.digests.m {
		d := md.digs[m.key]
		if d == nil {
			continue
		}
		fmt.Fprintf(b, "  %s: pbkdf2\n", d.id)
		fmt.Fprintf(b, "\tHash:       %s\n", d.hash)
		fmt.Fprintf(b, "\tIterations: %d\n", d.iterations)
		hexBlock(b, "\tSalt:       ", d.salt)
		hexBlock(b, "\tDigest:     ", d.digest)
	}
	return b.Flush()
}

// hexBlock prints b as hex, 16 bytes per line, continuation lines
// indented to the value column.
func hexBlock(w io.Writer, label string, b []byte) {
	indent := "\t" + strings.Repeat(" ", len(label)-1)
	for i := 0; i < len(b) || i == 0; i += 16 {
		if i == 0 {
			fmt.Fprint(w, label)
		} else {
			fmt.Fprint(w, indent)
		}
		for _, c := range b[i:min(i+16, len(b))] {
			fmt.Fprintf(w, "%02x ", c)
		}
		fmt.Fprintln(w)
	}
}
