package global

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
)

var wireEntry = Entry{
	Name:    "svc",
	PID:     codec.PID{Node: "a@h:1", Incarnation: 1 << 40, ID: 300},
	Version: 77,
	Origin:  "b@h:2",
}

func opsFrame(ops ...op) []byte {
	var w frameWriter
	for _, o := range ops {
		w.add(o.kind, &o.e)
	}
	return w.take()
}

func TestOpsRoundTrip(t *testing.T) {
	want := []op{
		{opAdd, wireEntry},
		{opRemove, wireEntry},
		{opRegisterReq, Entry{Name: strings.Repeat("n", MaxNameLen), PID: codec.PID{Node: "c@h:3"}, Origin: "a@h:1"}},
		{opUnregisterReq, wireEntry},
	}
	got, err := decodeOps(opsFrame(want...), "a@h:1", MaxNameLen)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got[0].e.PID.Node != got[1].e.PID.Node || got[0].e.PID.Node != "a@h:1" {
		t.Fatal("node names not shared")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	own := map[string]Entry{}
	for _, n := range []string{"x", "y", "z"} {
		e := wireEntry
		e.Name = n
		own[n] = e
	}
	for _, m := range []map[string]Entry{{}, own} {
		got, err := decodeSnapshot(encodeSnapshot(m), "a@h:1", MaxNameLen)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, m) {
			t.Fatalf("got %v, want %v", got, m)
		}
	}
}

func TestDecodersRefuseMalformedFrames(t *testing.T) {
	good := opsFrame(op{opAdd, wireEntry})
	withVersion := func(v uint64) []byte {
		e := wireEntry
		e.Version = v
		return opsFrame(op{opAdd, e})
	}
	longName := wireEntry
	longName.Name = strings.Repeat("n", MaxNameLen+1)
	emptyNode := wireEntry
	emptyNode.PID.Node = ""
	hugeCount := binary.AppendUvarint([]byte{frameOps}, 1<<62)
	tests := []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"snapshot kind", encodeSnapshot(nil)},
		{"unknown frame kind", []byte{0x7f, 0}},
		{"no count", []byte{frameOps}},
		{"count past the data", hugeCount},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(slices.Clone(good), 0)},
		{"unknown op", append([]byte{frameOps, 1, 9}, good[3:]...)},
		{"name over the limit", opsFrame(op{opAdd, longName})},
		{"empty node name", opsFrame(op{opAdd, emptyNode})},
		{"version over the limit", withVersion(maxVersion + 1)},
		{"bad varint", append([]byte{frameOps, 1, byte(opAdd)}, bytes.Repeat([]byte{0xff}, 11)...)},
		// add "svc", pid node: reference 0 to a table still empty
		{"node reference outside the table", []byte{frameOps, 1, byte(opAdd), 3, 's', 'v', 'c', 0, 0, 1, 1, 1, 0, 0}},
		// pid node written out (table of one), origin: reference 1
		{"node reference past the table", []byte{frameOps, 1, byte(opAdd), 1, 's', 1, 'a', 1, 1, 1, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeOps(tt.frame, "a@h:1", MaxNameLen); !errors.Is(err, ErrMalformed) {
				t.Fatalf("decodeOps = %v, want ErrMalformed", err)
			}
		})
	}
	if _, err := decodeOps(withVersion(maxVersion), "", MaxNameLen); err != nil {
		t.Fatalf("largest version refused: %v", err)
	}
}

func TestSnapshotDecoderRefusesForeignAndDuplicateNames(t *testing.T) {
	b := encodeSnapshot(map[string]Entry{"svc": wireEntry})
	if _, err := decodeSnapshot(b, "other@h:9", MaxNameLen); !errors.Is(err, ErrMalformed) {
		t.Fatalf("foreign entry: %v", err)
	}
	dup := binary.AppendUvarint([]byte{frameSnapshot}, 2)
	dup = appendEntry(dup, &wireEntry)
	dup = appendEntry(dup, &wireEntry)
	if _, err := decodeSnapshot(dup, wireEntry.PID.Node, MaxNameLen); !errors.Is(err, ErrMalformed) {
		t.Fatalf("duplicate name: %v", err)
	}
}

func FuzzDecodeOps(f *testing.F) {
	f.Add(opsFrame(op{opAdd, wireEntry}, op{opUnregisterReq, wireEntry}))
	f.Add([]byte{frameOps, 0})
	req := wireEntry
	req.PID.Node = wireEntry.Origin // a request for a process of the receiving node
	f.Add(opsFrame(op{opRegisterReq, req}, op{opAdd, wireEntry}, op{opUnregisterReq, req}, op{opRemove, wireEntry}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ops, err := decodeOps(b, "a@h:1", MaxNameLen)
		if err != nil {
			if ops != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v with %d ops", err, len(ops))
			}
			return
		}
		if len(ops) > 0 {
			// What decodes re-encodes to what decodes the same.
			again, err := decodeOps(opsFrame(ops...), "a@h:1", MaxNameLen)
			if err != nil || !slices.Equal(again, ops) {
				t.Fatalf("round trip: %v %v != %v", err, again, ops)
			}
		}
		// A registry applies it or refuses it as malformed, never panics.
		h := &lockedHost{name: wireEntry.Origin}
		r := New(h)
		h.r.Store(r)
		if err := r.Merge(wireEntry.PID.Node, encodeSnapshot(nil)); err != nil {
			t.Fatal(err)
		}
		if err := r.Handle(wireEntry.PID.Node, b); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Handle: %v", err)
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(encodeSnapshot(map[string]Entry{"svc": wireEntry, "other": {Name: "other", PID: wireEntry.PID, Version: 1, Origin: "a@h:1"}}))
	f.Add(encodeSnapshot(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeSnapshot(b, wireEntry.PID.Node, MaxNameLen)
		if err != nil {
			if m != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v with %d entries", err, len(m))
			}
			return
		}
		again, err := decodeSnapshot(encodeSnapshot(m), wireEntry.PID.Node, MaxNameLen)
		if err != nil || !maps.Equal(again, m) {
			t.Fatalf("round trip: %v", err)
		}
		// A registry accepts whatever decodes.
		c := newSimCluster(t, 1, 1, 0)
		if err := c.nodes[0].r.Merge(wireEntry.PID.Node, b); err != nil {
			t.Fatalf("Merge of a decodable snapshot: %v", err)
		}
		if c.nodes[0].r.Len() != len(m) {
			t.Fatalf("Len %d after merging %d names", c.nodes[0].r.Len(), len(m))
		}
	})
}

func TestNodeNamesAreSentOnceAFrame(t *testing.T) {
	// Entries of one node, registered through another: the two node names
	// are written out once and referred to after that.
	e2 := wireEntry
	e2.Name, e2.PID.ID, e2.Origin = "other", 301, wireEntry.PID.Node
	f := opsFrame(op{opAdd, wireEntry}, op{opRemove, e2}, op{opAdd, wireEntry})
	if got := bytes.Count(f, []byte(wireEntry.PID.Node)); got != 1 {
		t.Errorf("pid node written %d times in the frame, want once", got)
	}
	ops, err := decodeOps(f, "", MaxNameLen)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3 || ops[0].e != wireEntry || ops[1].e != e2 || ops[2].e != wireEntry {
		t.Fatalf("decoded %v", ops)
	}
	// A later frame starts a new table.
	if g := opsFrame(op{opAdd, e2}); bytes.Count(g, []byte(wireEntry.PID.Node)) != 1 {
		t.Fatalf("a new frame refers to an old frame's table: %x", g)
	}
}

func TestSnapshotOf100kNamesFitsOneControlFrame(t *testing.T) {
	own := make(map[string]Entry, 100_000)
	for i := range 100_000 {
		name := "service-" + strings.Repeat("x", i%8) + string(rune('a'+i%26)) + strconv.Itoa(i)
		own[name] = Entry{Name: name, PID: codec.PID{Node: "node-17@10.20.30.40:4370", Incarnation: 0xdeadbeefcafe1234, ID: uint64(i) + 1},
			Version: uint64(i) + 1, Origin: "node-03@10.20.30.41:4370"}
	}
	b := encodeSnapshot(own)
	if len(b) > wire.DefaultMaxFrame-64 {
		t.Fatalf("snapshot of 100 000 names is %d bytes, over one frame (%d)", len(b), wire.DefaultMaxFrame)
	}
	got, err := decodeSnapshot(b, "node-17@10.20.30.40:4370", MaxNameLen)
	if err != nil || !maps.Equal(got, own) {
		t.Fatalf("round trip: %v (%d of %d entries)", err, len(got), len(own))
	}
	t.Logf("100 000 names: %d bytes, %.1f a name", len(b), float64(len(b))/100_000)
}
