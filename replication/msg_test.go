package replication

import (
	"testing"

	"hastor/replication/genid"
)

func TestMsgRoundTrip(t *testing.T) {
	for _, m := range []Msg{
		{Type: MsgWrite, ID: 7, Off: 4096, Len: 8192, Flags: FlagFUA},
		{Type: MsgWriteAck, ID: 1 << 62, Status: 1},
		{Type: MsgState, Role: Primary, Disk: DiskUpToDate, Protocol: ProtocolB, Size: 1 << 30, Changed: 12,
			GFlags: genid.Flags{Primary: true, Consistent: true, Tiebreak: true}, PrimaryAtSplit: true,
			UUIDs: genid.Set{Current: 1, Bitmap: 2, History: [2]genid.UUID{3, 4}}},
	} {
		got, err := decodeMsg(m.Type, m.encode(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got != m {
			t.Fatalf("round trip: %+v, want %+v", got, m)
		}
	}
}

// FuzzMsg checks that decoding any meta never panics and that whatever
// decodes re-encodes to the same bytes.
func FuzzMsg(f *testing.F) {
	f.Add(uint8(MsgWrite), (&Msg{Type: MsgWrite, ID: 1, Off: 512, Len: 512}).encode(nil))
	f.Add(uint8(MsgState), (&Msg{Type: MsgState, Role: Primary, Size: 1 << 20}).encode(nil))
	f.Add(uint8(0), []byte{})
	f.Fuzz(func(t *testing.T, typ uint8, meta []byte) {
		m, err := decodeMsg(MsgType(typ), meta)
		if err != nil {
			return
		}
		if m.Off < 0 || m.Len < 0 {
			t.Fatalf("negative range accepted: %+v", m)
		}
		m2, err := decodeMsg(m.Type, m.encode(nil))
		if err != nil || m2 != m {
			t.Fatalf("re-decode: %+v %v, want %+v", m2, err, m)
		}
	})
}
