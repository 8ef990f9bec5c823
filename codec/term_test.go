package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

type point struct {
	X, Y int32
	Tag  string
}

type shape struct {
	Name     string
	Points   []point
	Origin   *point
	Corner   [2]float32
	Attrs    map[string]int
	Children []*shape
	Any      any
	Owner    PID
	Blob     []byte
	At       time.Time
}

// celsius travels through its own binary marshalling.
type celsius float64

func (c celsius) AppendBinary(b []byte) ([]byte, error) {
	return append(b, []byte(strings.Repeat("c", 1))...), nil
}

func (c *celsius) UnmarshalBinary(b []byte) error {
	if len(b) != 1 || b[0] != 'c' {
		return errors.New("bad celsius")
	}
	*c = 0
	return nil
}

func init() {
	MustRegister("test.point", point{})
	MustRegister("test.shape", shape{})
	MustRegister("test.shapeptr", &shape{})
	MustRegister("test.celsius", celsius(0))
}

// genValue builds a random nested term using every builtin kind.
func genValue(r *rand.Rand, depth int) any {
	n := 26
	if depth > 3 {
		n = 19 // scalars only
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return int(r.Int64()) >> r.IntN(64)
	case 3:
		return int8(r.Int())
	case 4:
		return int16(r.Int())
	case 5:
		return int32(r.Int())
	case 6:
		return r.Int64() - r.Int64()
	case 7:
		return uint(r.Uint64() >> r.IntN(64))
	case 8:
		return uint8(r.Uint32())
	case 9:
		return uint16(r.Uint32())
	case 10:
		return r.Uint32()
	case 11:
		return r.Uint64()
	case 12:
		return uintptr(r.Uint32())
	case 13:
		return float32(r.NormFloat64())
	case 14:
		return r.NormFloat64() * math.MaxFloat32
	case 15:
		return randString(r)
	case 16:
		return Atom(randString(r))
	case 17:
		if r.IntN(5) == 0 {
			return []byte(nil)
		}
		return []byte(randString(r))
	case 18:
		if r.IntN(2) == 0 {
			return PID{Node: "a@h:1", Incarnation: r.Uint64(), ID: r.Uint64N(1000)}
		}
		return Ref{Node: []string{"", "n@h:1", "b"}[r.IntN(3)], Incarnation: r.Uint64(), ID: r.Uint64()}
	case 19, 20:
		if r.IntN(8) == 0 {
			return Tuple(nil)
		}
		t := make(Tuple, r.IntN(5))
		for i := range t {
			t[i] = genValue(r, depth+1)
		}
		return t
	case 21, 22:
		if r.IntN(8) == 0 {
			return []any(nil)
		}
		l := make([]any, r.IntN(5))
		for i := range l {
			l[i] = genValue(r, depth+1)
		}
		return l
	case 23, 24:
		if r.IntN(8) == 0 {
			return map[string]any(nil)
		}
		m := map[string]any{}
		for range r.IntN(5) {
			m[randString(r)] = genValue(r, depth+1)
		}
		return m
	default:
		return point{X: int32(r.Int()), Y: -5, Tag: randString(r)}
	}
}

func randString(r *rand.Rand) string {
	b := make([]byte, r.IntN(40))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	if r.IntN(10) == 0 {
		return strings.Repeat("x", 1500) // over the single-allocation box size
	}
	return string(b)
}

func TestRoundTripPreservesGoTypes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		v := genValue(r, 0)
		b, err := Marshal(v)
		if err != nil {
			t.Fatalf("case %d: Marshal(%#v): %v", i, v, err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("case %d: Unmarshal(%x): %v", i, b, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("case %d: round trip changed the value\n sent %#v\n  got %#v", i, v, got)
		}
		b2, _ := Marshal(got)
		if string(b2) != string(b) {
			t.Fatalf("case %d: encoding is not deterministic", i)
		}
	}
}

func TestRoundTripKeepsDistinctions(t *testing.T) {
	cases := []struct {
		name string
		v    any
	}{
		{"int stays int", 7},
		{"uint8 stays uint8", uint8(7)},
		{"float32 stays float32", float32(1.5)},
		{"empty tuple stays empty, non-nil", Tuple{}},
		{"empty list stays empty, non-nil", []any{}},
		{"empty map stays empty, non-nil", map[string]any{}},
		{"nil tuple stays nil", Tuple(nil)},
		{"nil stays nil", nil},
		{"bytes are not a string", []byte("x")},
		{"string is not bytes", "x"},
		{"atom is not a string", Atom("normal")},
		{"empty bytes stay empty", []byte{}},
		{"PID", PID{Node: "n@h:1", Incarnation: 9, ID: 3}},
		{"zero Ref", Ref{}},
		{"registered struct", point{X: 1, Y: -2, Tag: "p"}},
		{"binary appender type", celsius(0)},
		{"nested registered struct", shape{
			Name: "s", Points: []point{{1, 2, "a"}}, Origin: &point{3, 4, "o"}, Corner: [2]float32{1, 2},
			Attrs: map[string]int{"a": 1, "b": 2}, Children: []*shape{{Name: "child", Attrs: map[string]int{}}, nil},
			Any: Tuple{Atom("ok"), 1}, Owner: PID{Node: "x", ID: 1}, Blob: []byte{}, At: time.Unix(5, 6).UTC(),
		}},
		{"registered pointer type", &shape{Name: "p"}},
		{"nil registered pointer", (*shape)(nil)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.v) || reflect.TypeOf(got) != reflect.TypeOf(c.v) {
				t.Fatalf("sent %#v (%T), got %#v (%T)", c.v, c.v, got, got)
			}
		})
	}
}

type unregistered struct{ A int }

type cyclic struct {
	Next *cyclic
}

func TestUnencodableValuesAreErrors(t *testing.T) {
	MustRegister("test.cyclic", &cyclic{})
	loop := &cyclic{}
	loop.Next = loop
	selfList := []any{nil}
	selfList[0] = selfList
	selfMap := map[string]any{}
	selfMap["me"] = selfMap
	cases := []struct {
		name string
		v    any
	}{
		{"chan", make(chan int)},
		{"func", func() {}},
		{"complex", complex(1, 2)},
		{"unregistered struct", unregistered{1}},
		{"unregistered inside a list", []any{1, unregistered{}}},
		{"cycle through pointers", loop},
		{"cycle through a slice", selfList},
		{"cycle through a map", selfMap},
		{"registered struct holding a chan in any", shape{Any: make(chan int)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Marshal(c.v)
			if !errors.Is(err, ErrUnencodable) {
				t.Fatalf("Marshal = %x, %v; want ErrUnencodable", b, err)
			}
			dst := []byte("keep")
			out, err := AppendTerm(dst, c.v)
			if err == nil || string(out) != "keep" {
				t.Fatalf("AppendTerm on error changed dst to %q", out)
			}
		})
	}
}

func TestRegisterRefusesConflicts(t *testing.T) {
	type other struct{ B int }
	type withChan struct{ C chan int }
	type withHidden struct {
		Shown  int
		hidden int
	}
	_ = withHidden{}.hidden
	type nestedHidden struct{ In withHidden }
	cases := []struct {
		name   string
		reg    string
		sample any
		want   error
	}{
		{"same name and type again is fine", "test.point", point{}, nil},
		{"name taken by another type", "test.point", other{}, ErrRegister},
		{"type registered under another name", "test.point2", point{}, ErrRegister},
		{"builtin type", "test.int", 0, ErrRegister},
		{"empty name", "", other{}, ErrRegister},
		{"nil sample", "test.nil", nil, ErrRegister},
		{"chan field", "test.withchan", withChan{}, ErrUnencodable},
		{"unexported field", "test.hidden", withHidden{}, ErrRegister},
		{"unexported field of a nested struct", "test.nestedhidden", nestedHidden{}, ErrRegister},
		{"builtin everyday type", "test.strings", []string{}, ErrRegister},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := Register(c.reg, c.sample); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Register = %v, want %v", err, c.want)
			}
		})
	}
}

func TestDecodeUnknownTypeNameGivesAnUnknownThatReencodesTheSame(t *testing.T) {
	b := []byte{tagUser, 3, 'z', 'z', 'z', 2, 7, 8}
	v, err := Unmarshal(b)
	if err != nil || !reflect.DeepEqual(v, Unknown{Type: "zzz", Data: []byte{7, 8}}) {
		t.Fatalf("got %#v, %v; want Unknown{zzz, [7 8]}", v, err)
	}
	again, err := Marshal(v)
	if err != nil || string(again) != string(b) {
		t.Fatalf("re-encoded %x, %v; want %x", again, err, b)
	}
	// A registered type's value reaches a node that does not know it as an
	// Unknown, nested or not.
	p, _ := Marshal(point{X: 1, Y: 2, Tag: "p"})
	p[2] = 'X' // "test.point" becomes "Xest.point", a name nobody registered
	v, err = Unmarshal(p)
	if u, ok := v.(Unknown); err != nil || !ok || u.Type != "Xest.point" {
		t.Fatalf("got %#v, %v", v, err)
	}
}

func TestDecodeRefusesOverLimitsBeforeAllocating(t *testing.T) {
	deep := []byte{}
	for range 200 {
		deep = append(deep, tagList, 1)
	}
	deep = append(deep, tagNil)
	cases := []struct {
		name string
		b    []byte
		lim  *Limits
		want error
	}{
		{"depth", deep, nil, ErrLimit},
		{"string longer than MaxString", append([]byte{tagString, 10}, "0123456789"...), &Limits{MaxString: 5}, ErrLimit},
		{"count larger than the input", []byte{tagList, 0x80, 0x80, 0x01}, nil, ErrTruncated},
		{"count larger than MaxElems", []byte{tagList, 0xff, 0xff, 0xff, 0xff, 0x0f}, nil, ErrLimit},
		{"too many elements", []byte{tagList, 3, 0, 0, 0}, &Limits{MaxElems: 2}, ErrLimit},
		{"huge string length", []byte{tagString, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, nil, ErrLimit},
		{"message over MaxMessage", make([]byte, 100), &Limits{MaxMessage: 10}, ErrLimit},
		{"truncated PID", []byte{tagPID, 1, 'a', 1, 2}, nil, ErrTruncated},
		{"unknown tag", []byte{0xee}, nil, ErrCorrupt},
		{"overlong varint", []byte{tagInt, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, nil, ErrCorrupt},
		{"int16 out of range", []byte{tagInt16, 0xff, 0xff, 0x7f}, nil, ErrCorrupt},
		{"duplicate map key", []byte{tagMap, 2, 1, 'a', 0, 1, 'a', 0}, nil, ErrCorrupt},
		{"empty input", nil, nil, ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := DecodeTerm(c.b, c.lim); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestUnmarshalRefusesTrailingBytes(t *testing.T) {
	if _, err := Unmarshal([]byte{tagNil, tagNil}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
}

func TestHotPathAllocations(t *testing.T) {
	msg := strings.Repeat("m", 64)
	pid := PID{Node: "node@host:4000", Incarnation: 77, ID: 12}
	buf := make([]byte, 0, 512)
	var tuple any = Tuple{pid, Atom("ok"), 1, 2.5, []byte("x"), map[string]any{"k": 1}}
	var msgv any = msg // Send receives an any: boxing is the caller's
	if n := testing.AllocsPerRun(200, func() {
		buf, _ = AppendTerm(buf[:0], msgv)
		buf, _ = AppendTerm(buf, tuple)
	}); n != 0 {
		t.Errorf("encode: %v allocs/op, want 0", n)
	}
	sb, _ := Marshal(msg)
	if n := testing.AllocsPerRun(200, func() {
		if _, _, err := DecodeTerm(sb, nil); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("decode of a 64-byte string: %v allocs/op, want <= 1", n)
	}
	ab, _ := Marshal(Atom("noconnection"))
	if n := testing.AllocsPerRun(200, func() { Unmarshal(ab) }); n > 1 {
		t.Errorf("decode of an atom: %v allocs/op, want <= 1", n)
	}
	pb, _ := Marshal(pid)
	Unmarshal(pb) // interns the node name
	if n := testing.AllocsPerRun(200, func() { Unmarshal(pb) }); n > 1 {
		t.Errorf("decode of a PID: %v allocs/op, want <= 1 (the box)", n)
	}
}

// A small tuple or list decodes with one allocation for its elements and
// its header together: {PID, string} is three allocations (the sequence,
// the PID's box, the string's box), not four. Larger ones take two.
func TestSmallSequencesDecodeInOneAllocation(t *testing.T) {
	pid := PID{Node: "node@host:4000", Incarnation: 77, ID: 12}
	tests := []struct {
		name   string
		v      any
		allocs float64
	}{
		{"{PID, string}", Tuple{pid, strings.Repeat("x", 64)}, 3},
		{"{PID}", Tuple{pid}, 2},
		{"{PID, int, int, int}", Tuple{pid, 1, 2, 3}, 2},
		{"{int, PID}", Tuple{1, pid}, 2},
		{"[int, int]", []any{1, 2}, 1},
		{"{int, int, int}", Tuple{1, 2, 3}, 1},
		{"{PID, 1, 2, 3, 4}", Tuple{pid, 1, 2, 3, 4}, 3},
		{"[1 2 3 4 5]", []any{1, 2, 3, 4, 5}, 2},
		{"{}", Tuple{}, 1},
		{"[]", []any{}, 1},
	}
	for _, tt := range tests {
		b, err := Marshal(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Unmarshal(b); err != nil || !reflect.DeepEqual(got, tt.v) {
			t.Fatalf("%s: decoded %#v, %v", tt.name, got, err)
		}
		if n := testing.AllocsPerRun(200, func() { _, _, _ = DecodeTerm(b, nil) }); n != tt.allocs {
			t.Errorf("%s: %v allocs/op, want %v", tt.name, n, tt.allocs)
		}
	}
}

// Sequences decoded into a shared block stay intact across collections,
// whether the sequence, an element or a sub-slice is what is kept, and a
// kept sequence's elements can be changed and appended to like any slice.
func TestSmallSequencesSurviveGC(t *testing.T) {
	type kept struct{ whole, elem, sub, want any }
	var keep []kept
	for i := range 2000 {
		pid := PID{Node: "n@h:1", Incarnation: uint64(i), ID: uint64(i)}
		want := Tuple{pid, strings.Repeat("y", i%70), int64(i)}[:1+i%3]
		b, _ := Marshal(want)
		v, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		tp := v.(Tuple)
		keep = append(keep, kept{elem: tp[0], sub: tp[len(tp)-1:], want: want})
		if i%2 == 0 {
			keep[i].whole = v
		}
		if i%500 == 0 {
			runtime.GC()
		}
	}
	for range 3 {
		runtime.GC()
	}
	for i, k := range keep {
		w := k.want.(Tuple)
		if k.elem != w[0] || !reflect.DeepEqual(k.sub, w[len(w)-1:]) {
			t.Fatalf("value %d: element %#v, tail %#v; want %#v", i, k.elem, k.sub, w)
		}
		if k.whole != nil {
			got := k.whole.(Tuple)
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("value %d: %#v, want %#v", i, got, w)
			}
			got[0] = "changed"
			if got = append(got, "more"); got[0] != "changed" || got[len(got)-1] != "more" || k.elem != w[0] {
				t.Fatalf("value %d: after a change and an append: %#v (its element kept apart: %#v)", i, got, k.elem)
			}
		}
	}
}

// An element kept alone keeps nothing else of its message: a server that
// keeps the caller's PID of each {From, Request} it handled does not keep
// the requests.
func TestAKeptPIDDoesNotKeepItsMessage(t *testing.T) {
	b, err := Marshal(Tuple{PID{Node: "n@h:1", Incarnation: 1, ID: 2}, make([]byte, 1<<20)})
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	kept := make([]any, 0, 32)
	for range 32 {
		v, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, v.(Tuple)[0])
	}
	if grew := int64(heap()) - int64(before); grew > 16<<20 {
		t.Fatalf("32 kept PIDs hold %d MiB: their 1-MiB messages were kept with them", grew>>20)
	}
	runtime.KeepAlive(kept)
}

func TestBoxedStringsSurviveGC(t *testing.T) {
	var keep []any
	for i := range 2000 {
		b, _ := Marshal(strings.Repeat(string(rune('a'+i%26)), 1+i%100))
		v, _ := Unmarshal(b)
		keep = append(keep, v)
	}
	for range 3 {
		runtimeGC()
	}
	for i, v := range keep {
		if v.(string) != strings.Repeat(string(rune('a'+i%26)), 1+i%100) {
			t.Fatalf("string %d corrupted after GC", i)
		}
	}
}

// DecodeTermSlab carves small strings and atoms from the slab, several to
// a block, and they stay intact through collections while the slab moves
// on; large ones and empty ones are boxed as DecodeTerm boxes them.
func TestSlabBoxesSurviveGCAndMatchDecodeTerm(t *testing.T) {
	var slab []byte
	var keep []any
	var want []any
	for i := range 3000 {
		var v any = strings.Repeat(string(rune('a'+i%26)), i%300)
		if i%3 == 0 {
			v = Atom(v.(string))
		}
		b, _ := Marshal(v)
		got, n, err := DecodeTermSlab(b, nil, &slab)
		if err != nil || n != len(b) {
			t.Fatalf("value %d: n=%d err=%v", i, n, err)
		}
		keep, want = append(keep, got), append(want, v)
		if i%500 == 0 {
			runtimeGC()
		}
	}
	for range 3 {
		runtimeGC()
	}
	for i := range keep {
		if keep[i] != want[i] {
			t.Fatalf("value %d: got %T %.20q, want %T %.20q", i, keep[i], keep[i], want[i], want[i])
		}
	}
	b, _ := Marshal(strings.Repeat("x", 64))
	b2, _ := Marshal(strings.Repeat("y", 64))
	if n := testing.AllocsPerRun(1000, func() {
		_, _, _ = DecodeTermSlab(b, nil, &slab)
		_, _, _ = DecodeTermSlab(b2, nil, &slab)
	}); n > 0.4 {
		t.Errorf("DecodeTermSlab of two 64-byte strings in turn: %v allocs/op, want a slab's share (< 0.4)", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = DecodeTerm(b, nil) }); n != 1 {
		t.Errorf("DecodeTerm of a 64-byte string: %v allocs/op, want 1 (the box)", n)
	}
}

// A small string or atom equal to the last box carved from the slab is that
// box: no memory taken, the same value (of its own type: a string never
// stands for an atom of the same bytes); a different one is carved and
// becomes the last.
func TestSlabReusesTheLastBox(t *testing.T) {
	var slab []byte
	dec := func(v any) any {
		t.Helper()
		b, _ := Marshal(v)
		got, n, err := DecodeTermSlab(b, nil, &slab)
		if err != nil || n != len(b) || got != v {
			t.Fatalf("decoding %T %q: %T %q, n=%d, err=%v", v, v, got, got, n, err)
		}
		return got
	}
	data := func(v any) uintptr { return uintptr((*eface)(unsafe.Pointer(&v)).data) }
	x := strings.Repeat("x", 64)
	first := dec(x)
	used := len(slab)
	if again := dec(x); data(again) != data(first) || len(slab) != used {
		t.Fatalf("the same string again: a new box (slab %d -> %d bytes used)", used, len(slab))
	}
	xb, _ := Marshal(x)
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = DecodeTermSlab(xb, nil, &slab) }); n != 0 {
		t.Errorf("a repeated 64-byte string: %v allocs/op, want 0", n)
	}
	atom := dec(Atom(x))
	if data(atom) == data(first) {
		t.Fatal("an atom shares the box of a string with its bytes")
	}
	if data(dec(Atom(x))) != data(atom) {
		t.Fatal("the same atom again: a new box")
	}
	if data(dec(x)) == data(first) {
		t.Fatal("a string after an atom: the older string's box, want a new one (one last box)")
	}
	// Strings inside a tuple are boxes like any other.
	tb, _ := Marshal(Tuple{x, x})
	tv, _, err := DecodeTermSlab(tb, nil, &slab)
	tup, ok := tv.(Tuple)
	if err != nil || !ok || len(tup) != 2 || tup[0] != any(x) || tup[1] != any(x) {
		t.Fatalf("a tuple of two strings: %v, %v", tv, err)
	}
	if data(tup[0]) != data(tup[1]) {
		t.Fatal("two equal strings in one tuple: two boxes")
	}
	runtimeGC()
	if first != any(x) || tup[1] != any(x) {
		t.Fatal("a shared box changed after a collection")
	}
}

// A slab the caller made itself (against DecodeTermSlab's contract), of a
// slab's size and full of garbage, never makes a decode read outside it or
// return a wrong value: its header does not check out, and it is replaced.
func TestSlabWithGarbageHeaderIsNotTrusted(t *testing.T) {
	x := strings.Repeat("x", 64)
	b, _ := Marshal(x)
	for _, fill := range []byte{0x00, 0x08, 0x10, 0x41, 0xff} {
		slab := make([]byte, 512, 1024)
		for i := range slab {
			slab[i] = fill
		}
		got, _, err := DecodeTermSlab(b, nil, &slab)
		if err != nil || got != any(x) {
			t.Fatalf("fill %#x: %q, %v", fill, got, err)
		}
	}
	// A header pointing at a string header that points elsewhere.
	slab := make([]byte, 64, 1024)
	binary.LittleEndian.PutUint64(slab, 16)
	binary.LittleEndian.PutUint64(slab[8:], kindString)
	*(*string)(unsafe.Pointer(&slab[16])) = x // its bytes are not in the slab
	got, _, err := DecodeTermSlab(b, nil, &slab)
	if err != nil || got != any(x) || unsafe.StringData(got.(string)) == unsafe.StringData(x) {
		t.Fatalf("a foreign string header was trusted: %q, %v", got, err)
	}
}

// The regression of "a valid 32 MiB message of 16.7 M empty maps held a loop
// 3.6 s and 1.17 GiB": a decode allocates at most MaxExpansion bytes per
// input byte (plus DecodeSlack), measured with runtime.MemStats.TotalAlloc.
func TestDecodeCannotAmplifyMemoryPastMaxExpansion(t *testing.T) {
	dense := func(n int, elem ...byte) []byte {
		b := appendUvarint([]byte{tagList}, uint64(n))
		for range n {
			b = append(b, elem...)
		}
		return b
	}
	cases := []struct {
		name string
		in   []byte
	}{
		{"empty maps", dense(1<<19, tagMap, 0)},
		{"empty tuples", dense(1<<19, tagTuple, 0)},
		{"one-byte strings", dense(1<<19, tagString, 1, 'x')},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			v, _, err := DecodeTerm(c.in, nil)
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc
			// The charge is an estimate of each value's allocation: a
			// quarter of margin keeps the test off the runtime's details.
			bound := uint64(DefaultMaxExpansion*len(c.in)+DecodeSlack) * 5 / 4
			t.Logf("%d input bytes: %v, %d bytes allocated (bound %d)", len(c.in), err, allocated, bound)
			if err == nil {
				if allocated > bound {
					t.Fatalf("decoded with %d bytes allocated, over the bound %d", allocated, bound)
				}
				return
			}
			if !errors.Is(err, ErrLimit) || v != nil {
				t.Fatalf("err = %v, want ErrLimit", err)
			}
			if allocated > bound {
				t.Fatalf("refused after allocating %d bytes, over the bound %d", allocated, bound)
			}
		})
	}
	// A tighter expansion refuses what the default passes.
	in := dense(1<<16, tagString, 1, 'x')
	if _, _, err := DecodeTerm(in, nil); err != nil {
		t.Fatalf("default limits: %v", err)
	}
	if _, _, err := DecodeTerm(in, &Limits{MaxExpansion: 1}); !errors.Is(err, ErrLimit) {
		t.Fatalf("MaxExpansion 1: err = %v, want ErrLimit", err)
	}
}

// Ordinary values decode within the default expansion: lists of nils,
// small ints, short strings, PIDs, and a struct of slices.
func TestOrdinaryValuesDecodeWithinTheDefaultExpansion(t *testing.T) {
	many := func(n int, v any) []any {
		xs := make([]any, n)
		for i := range xs {
			xs[i] = v
		}
		return xs
	}
	for _, v := range []any{
		many(1<<18, nil), many(1<<18, 7), many(1<<18, 1<<40), many(1<<18, "ab"),
		many(1<<16, PID{Node: "n@h:1", ID: 3}), many(1<<16, []byte("xyz")),
		map[string]any{"a": many(1<<16, Atom("ok"))},
	} {
		b, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Unmarshal(b); err != nil {
			t.Fatalf("%T of %d bytes: %v", v, len(b), err)
		}
	}
}

// Everyday values travel without registration, as the types the package
// documents.
func TestEverydayValuesTravelWithoutRegistration(t *testing.T) {
	at := time.Date(2026, 12, 5, 17, 30, 0, 123456789, time.FixedZone("X", 3600))
	cases := []struct {
		name string
		v    any
		want any
	}{
		{"strings", []string{"a", "", "ccc"}, nil},
		{"empty strings", []string{}, nil},
		{"nil strings", []string(nil), nil},
		{"ints", []int{0, -1, 1 << 40}, nil},
		{"nil ints", []int(nil), nil},
		{"string map", map[string]string{"b": "2", "a": "1"}, nil},
		{"empty string map", map[string]string{}, nil},
		{"nil string map", map[string]string(nil), nil},
		{"int map", map[string]int{"x": -5, "y": 7}, nil},
		{"nil int map", map[string]int(nil), nil},
		{"duration", 1500 * time.Millisecond, nil},
		{"negative duration", -time.Second, nil},
		{"error", errors.New("disk full"), Error("disk full")},
		{"wrapped error", fmt.Errorf("write: %w", ErrLimit), Error("write: codec: limit exceeded")},
		{"inside a tuple", Tuple{Atom("error"), errors.New("x"), []string{"y"}}, Tuple{Atom("error"), Error("x"), []string{"y"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			v, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if want == nil {
				want = c.v
			}
			if !reflect.DeepEqual(v, want) || reflect.TypeOf(v) != reflect.TypeOf(want) {
				t.Fatalf("got %#v (%T), want %#v (%T)", v, v, want, want)
			}
		})
	}
	t.Run("time", func(t *testing.T) {
		b, err := Marshal(at)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Unmarshal(b)
		got, ok := v.(time.Time)
		if err != nil || !ok || !got.Equal(at) {
			t.Fatalf("got %#v, %v", v, err)
		}
		if _, off := got.Zone(); off != 3600 {
			t.Fatalf("zone offset %d, want 3600", off)
		}
	})
	t.Run("error identity does not travel", func(t *testing.T) {
		b, _ := Marshal(ErrLimit)
		v, _ := Unmarshal(b)
		if err, ok := v.(error); !ok || errors.Is(err, ErrLimit) || err.Error() != ErrLimit.Error() {
			t.Fatalf("got %#v", v)
		}
	})
}

// SplitTerm's head and body are AppendTerm's encoding of a []byte or a
// string, the body not copied; any other value (a nil []byte included) is
// declined with dst unchanged.
func TestSplitTermIsAppendTermInTwo(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 300)
	for _, v := range []any{[]byte{}, []byte("abc"), big, "", "hello", string(big)} {
		want, err := AppendTerm([]byte("pre"), v)
		if err != nil {
			t.Fatal(err)
		}
		head, body, ok := SplitTerm([]byte("pre"), v)
		if !ok || !bytes.Equal(append(head, body...), want) {
			t.Fatalf("%T %d bytes: SplitTerm = %q + %d bytes, %v; want %q", v, len(want), head, len(body), ok, want)
		}
	}
	if _, body, _ := SplitTerm(nil, big); &body[0] != &big[0] {
		t.Fatal("the body of a []byte is a copy")
	}
	for _, v := range []any{[]byte(nil), 5, Atom("a"), Tuple{"x"}} {
		if head, body, ok := SplitTerm([]byte("pre"), v); ok || string(head) != "pre" || body != nil {
			t.Fatalf("%T: SplitTerm = %q, %v, %v; want declined", v, head, body, ok)
		}
	}
}

// AppendList encodes a list as AppendTerm does (nil, empty, nested, an
// unencodable element: the same bytes or the same error, dst unchanged in
// length), without the list boxed into an interface value: no allocation.
func TestAppendListEncodesAsAppendTermWithoutBoxing(t *testing.T) {
	head := []byte("head")
	for _, xs := range [][]any{nil, {}, {1, "two", []any{3.0, nil}}, {make(chan int)}} {
		want, werr := AppendTerm(bytes.Clone(head), xs)
		got, gerr := AppendList(bytes.Clone(head), xs)
		if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("AppendList(%#v) = %x, %v; AppendTerm gives %x, %v", xs, got, gerr, want, werr)
		}
	}
	xs := []any{int64(1), "two"}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(200, func() { buf, _ = AppendList(buf[:0], xs) }); n != 0 {
		t.Errorf("AppendList: %v allocs/op, want 0", n)
	}
}
