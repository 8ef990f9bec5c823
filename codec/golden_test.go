package codec

import (
	"flag"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/testutil"
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
		{"strings", []string{"a", ""}}, {"nil strings", []string(nil)},
		{"ints", []int{-1, 300}}, {"nil ints", []int(nil)},
		{"string map", map[string]string{"b": "2", "a": "1"}}, {"nil string map", map[string]string(nil)},
		{"int map", map[string]int{"b": -2, "a": 1}}, {"nil int map", map[string]int(nil)},
		{"time", time.Date(2026, 12, 5, 17, 30, 0, 5, time.UTC)},
		{"duration", -1500 * time.Millisecond},
		{"error", Error("disk full")},
		{"unknown registered type", Unknown{Type: "elsewhere.T", Data: []byte{1, 2}}},
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
		testutil.WriteGolden(t, path, names, bs)
	}
	g := testutil.ReadGolden(t, path)
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
