package codec

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata golden files and the fuzz seed corpus")

// goldenTerms pins the wire encoding of every term kind. Changing any of
// these bytes breaks compatibility with deployed nodes: bump Version instead.
func goldenTerms() []struct {
	name string
	v    any
} {
	return []struct {
		name string
		v    any
	}{
		{"nil", nil}, {"true", true}, {"false", false},
		{"int", -300}, {"int8", int8(-2)}, {"int16", int16(-300)}, {"int32", int32(1 << 20)}, {"int64", int64(-1 << 40)},
		{"uint", uint(300)}, {"uint8", uint8(200)}, {"uint16", uint16(65535)}, {"uint32", uint32(1 << 31)},
		{"uint64", uint64(1 << 63)}, {"uintptr", uintptr(7)},
		{"float32", float32(1.5)}, {"float64", -2.25},
		{"string", "héllo"}, {"empty string", ""}, {"bytes", []byte{0, 1, 2}}, {"nil bytes", []byte(nil)},
		{"atom", Atom("normal")},
		{"tuple", Tuple{Atom("ok"), 1}}, {"empty tuple", Tuple{}}, {"nil tuple", Tuple(nil)},
		{"list", []any{"a", []any{}}}, {"nil list", []any(nil)},
		{"map", map[string]any{"b": 2, "a": 1, "c": map[string]any{}}}, {"nil map", map[string]any(nil)},
		{"pid", PID{Node: "a@h:1", Incarnation: 0x0102030405060708, ID: 300}},
		{"ref", Ref{Node: "a@h:1", Incarnation: 1, ID: 2}},
		{"registered struct", point{X: 1, Y: -1, Tag: "p"}},
		{"registered binary type", celsius(0)},
	}
}

// goldenFrames pins the frame layout of every kind.
func goldenFrames(t testing.TB) []struct {
	name string
	b    []byte
} {
	a := PID{Node: "a@h:1", Incarnation: 5, ID: 9}
	b := PID{Node: "b@h:2", Incarnation: 6, ID: 10}
	ref := Ref{Node: "a@h:1", Incarnation: 5, ID: 77}
	must := func(out []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	batch := NewBatcher(BatcherOptions{}).Drain(nil, [][]byte{must(AppendMessage(nil, 1, 2, "x")), must(AppendMessage(nil, 300, 2, Atom("y")))})
	var fr Fragmenter
	if err := fr.Reset(3, must(AppendMessage(nil, 1, 2, "abcdef")), 4); err != nil {
		t.Fatal(err)
	}
	frag := fr.Next(nil)
	return []struct {
		name string
		b    []byte
	}{
		{"message item", must(AppendMessage(nil, 1, 2, "hi"))},
		{"batch of two", batch},
		{"first fragment", frag},
		{"spawn request", must((&SpawnRequest{Req: 1, From: a, Actor: "w", Args: []any{1}, Link: true}).Append(nil))},
		{"spawn reply", must((&SpawnReply{Req: 1, PID: b, Code: SpawnFailed, Err: "e"}).Append(nil))},
		{"link", must((&Link{a, b}).Append(nil, KindLink))},
		{"unlink", must((&Link{a, b}).Append(nil, KindUnlink))},
		{"exit", must((&Exit{a, b, Atom("kill"), true}).Append(nil))},
		{"monitor", must((&Monitor{a, b, ref}).Append(nil, KindMonitor))},
		{"demonitor", must((&Monitor{a, b, ref}).Append(nil, KindDemonitor))},
		{"down", must((&Down{ref, a, b, Atom("noproc")}).Append(nil))},
		{"registry", must((&Registry{[]byte{1, 2}}).Append(nil))},
		{"tick", must((&Tick{1, 1000}).Append(nil, KindTick))},
		{"tock", must((&Tick{1, 1000}).Append(nil, KindTock))},
		{"nodes", must((&Nodes{[]string{"a@h:1"}}).Append(nil))},
		{"hello", must((&Hello{Version: 1, Node: "a@h:1", Incarnation: 5, Features: SupportedFeatures}).Append(nil))},
		{"proof", must((&Proof{[32]byte{1}}).Append(nil))},
	}
}

func readGolden(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	defer f.Close()
	m := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("bad golden line %q", line)
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		m[name] = b
	}
	return m
}

func writeGolden(t *testing.T, path string, names []string, bs [][]byte) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("# Wire format pinned by golden_test.go; regenerate with go test -run Golden -update.\n")
	for i, n := range names {
		fmt.Fprintf(&sb, "%s: %x\n", n, bs[i])
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGoldenTermsPinTheEncoding(t *testing.T) {
	path := filepath.Join("testdata", "golden_terms.txt")
	cases := goldenTerms()
	if *update {
		var names []string
		var bs [][]byte
		for _, c := range cases {
			b, err := Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			names, bs = append(names, c.name), append(bs, b)
		}
		writeGolden(t, path, names, bs)
	}
	g := readGolden(t, path)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, ok := g[c.name]
			if !ok {
				t.Fatal("missing from the golden file")
			}
			b, err := Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != string(want) {
				t.Fatalf("encoding changed:\n got %x\nwant %x", b, want)
			}
			v, err := Unmarshal(want)
			if err != nil || !reflect.DeepEqual(v, c.v) {
				t.Fatalf("golden bytes decode to %#v, %v", v, err)
			}
		})
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
		writeGolden(t, path, names, bs)
	}
	g := readGolden(t, path)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, ok := g[c.name]
			if !ok {
				t.Fatal("missing from the golden file")
			}
			if string(c.b) != string(want) {
				t.Fatalf("layout changed:\n got %x\nwant %x", c.b, want)
			}
			f, n, err := NewFrameReader(nil, 0).Next(want)
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
