package wire

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata golden files and the fuzz seed corpus")

// goldenFrames pins the frame layout of every kind. Changing any of these
// bytes breaks compatibility with deployed nodes: bump Version instead.
func goldenFrames(t testing.TB) []struct {
	name string
	b    []byte
} {
	a := codec.PID{Node: "a@h:1", Incarnation: 5, ID: 9}
	b := codec.PID{Node: "b@h:2", Incarnation: 6, ID: 10}
	ref := codec.Ref{Node: "a@h:1", Incarnation: 5, ID: 77}
	must := func(out []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	batch := NewBatcher(BatcherOptions{}).Drain(nil, [][]byte{must(AppendMessage(nil, 1, 2, "x", 0)), must(AppendMessage(nil, 300, 2, codec.Atom("y"), 0))})
	var fr Fragmenter
	if err := fr.Reset(3, must(AppendMessage(nil, 1, 2, "abcdef", 0)), 4); err != nil {
		t.Fatal(err)
	}
	frag := fr.Next(nil)
	return []struct {
		name string
		b    []byte
	}{
		{"message item", must(AppendMessage(nil, 1, 2, "hi", 0))},
		{"batch of two", batch},
		{"first fragment", frag},
		{"spawn request", (&SpawnRequest{Req: 1, From: a, Actor: "w", Args: must(codec.AppendTerm(nil, []any{1})), Link: true}).Append(nil)},
		{"spawn reply", (&SpawnReply{Req: 1, PID: b, Code: SpawnFailed, Err: "e"}).Append(nil)},
		{"link", (&Link{a, b}).Append(nil)},
		{"unlink", (&Unlink{a, b}).Append(nil)},
		{"exit", (&Exit{a, b, codec.Atom("kill"), true}).Append(nil)},
		{"monitor", (&Monitor{a, b, ref}).Append(nil)},
		{"demonitor", (&Demonitor{a, b, ref}).Append(nil)},
		{"down", (&Down{ref, a, b, codec.Atom("noproc")}).Append(nil)},
		{"registry", (&Registry{[]byte{1, 2}}).Append(nil)},
		{"tick", (&Tick{1, 1000}).Append(nil)},
		{"tock", (&Tock{1, 1000}).Append(nil)},
		{"nodes", (&Nodes{[]string{"a@h:1"}}).Append(nil)},
		{"sync", (&Sync{7}).Append(nil)},
		{"ack", (&Ack{7}).Append(nil)},
	}
}

func TestGoldenFramesPinTheLayout(t *testing.T) {
	path := filepath.Join("testdata", "golden_frames.txt")
	cases := goldenFrames(t)
	if *update {
		var names []string
		var bs [][]byte
		for _, c := range cases {
			names, bs = append(names, c.name), append(bs, c.b)
		}
		testutil.WriteGolden(t, path, names, bs)
	}
	g := testutil.ReadGolden(t, path)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, ok := g[c.name]
			if !ok {
				t.Fatal("missing from the golden file")
			}
			if string(c.b) != string(want) {
				t.Fatalf("layout changed:\n got %x\nwant %x", c.b, want)
			}
			f, n, err := NewFrameReader(0, 0).Next(want)
			if err != nil || n != len(want) {
				t.Fatalf("golden frame does not parse: n=%d err=%v", n, err)
			}
			if f.Kind != KindBatch && f.Kind != KindFragment {
				if _, err := DecodeControl(f, nil); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
