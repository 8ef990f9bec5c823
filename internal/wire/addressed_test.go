package wire

import (
	"strings"
	"testing"
)

func TestParseAddressRefusesMalformedRecords(t *testing.T) {
	const (
		nm, rp, cl, um, cp = byte(AddrName), byte(AddrReply), byte(AddrCall), byte(AddrUnmonitor), byte(AddrCallPID)
	)
	for _, b := range [][]byte{
		nil, {0}, {9}, {nm}, {nm, 0}, {nm, 3, 'a'}, {nm, 1, 'a'},
		{rp}, {rp, 1}, {rp, 1, 0}, {cl, 1, 'a'}, {cl, 1, 'a', 1},
		{um, 1, 'a', 1, 0}, {cp}, {cp, 1}, {cp, 1, 2}, {cp, 0, 2, 0x41}, {cp, 0x80},
		{nm, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1},
	} {
		if _, err := ParseAddress(b); err == nil {
			t.Errorf("ParseAddress(%v) accepted", b)
		}
	}
}

// recordOf parses an addressed item as the receiving link does.
func recordOf(t testing.TB, item []byte) Message {
	t.Helper()
	f, k, err := NewFrameReader(DefaultMaxFrame, 0).Next(item)
	if err != nil || k != len(item) {
		t.Fatalf("frame: %v (%d of %d bytes)", err, k, len(item))
	}
	it := f.Messages()
	if !it.Next() {
		t.Fatalf("no record: %v", it.Err())
	}
	m := it.Message()
	if it.Next() || it.Err() != nil {
		t.Fatalf("more than one record: %v", it.Err())
	}
	return m
}

func TestAddressedRecordsRoundTrip(t *testing.T) {
	long := strings.Repeat("n", MaxAddrName)
	for _, k := range []AddrKind{AddrName, AddrReply, AddrCall, AddrUnmonitor} {
		for _, body := range []any{"body", strings.Repeat("b", 300)} {
			item, err := AppendAddressed(nil, 7, k, long, 1<<40, ReplyReleased, body)
			if err != nil {
				t.Fatal(err)
			}
			m := recordOf(t, item)
			a, err := ParseAddress(m.Term)
			if err != nil || m.To != 0 || m.From != 7 || a.Kind != k {
				t.Fatalf("kind %d: %+v, %v", k, a, err)
			}
			if k != AddrReply && string(a.Name) != long {
				t.Fatalf("kind %d: name %q", k, a.Name)
			}
			if k != AddrName && a.Ref != 1<<40 {
				t.Fatalf("kind %d: ref %d", k, a.Ref)
			}
			if k == AddrReply && a.Flags != ReplyReleased {
				t.Fatalf("flags %d", a.Flags)
			}
			if k != AddrUnmonitor {
				v, err := Message{Term: a.Body}.Decode(nil)
				if err != nil || v != body {
					t.Fatalf("kind %d: body %.20v, %v", k, v, err)
				}
			}
		}
	}
}

func TestCallPIDRecordRoundTrips(t *testing.T) {
	for _, body := range []any{"body", strings.Repeat("b", 300)} {
		item, err := AppendCallPID(nil, 7, 1<<33, 1<<40, body)
		if err != nil {
			t.Fatal(err)
		}
		m := recordOf(t, item)
		a, err := ParseAddress(m.Term)
		if err != nil || m.To != 0 || m.From != 7 || a.Kind != AddrCallPID || a.To != 1<<33 || a.Ref != 1<<40 {
			t.Fatalf("%+v, %v", a, err)
		}
		v, err := Message{Term: a.Body}.Decode(nil)
		if err != nil || v != body {
			t.Fatalf("body %.20v, %v", v, err)
		}
	}
	if _, err := AppendCallPID([]byte("keep"), 7, 1, 2, make(chan int)); err == nil {
		t.Fatal("an unencodable body was accepted")
	}
}

func FuzzParseAddress(f *testing.F) {
	if item, err := AppendCallPID(nil, 7, 3, 42, "body"); err == nil {
		f.Add(recordOf(f, item).Term)
	}
	for _, k := range []AddrKind{AddrName, AddrReply, AddrCall, AddrUnmonitor} {
		item, err := AppendAddressed(nil, 7, k, "name", 42, 0, "body")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(recordOf(f, item).Term)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAddress(b)
		if err != nil {
			return
		}
		if len(a.Name) > MaxAddrName || (a.Kind != AddrUnmonitor && len(a.Body) == 0) {
			t.Fatalf("accepted %v as %+v", b, a)
		}
	})
}
