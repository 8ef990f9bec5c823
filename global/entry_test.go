package global

import (
	"math/rand/v2"
	"testing"

	"github.com/meshrt/mesh/codec"
)

func TestWinsRule(t *testing.T) {
	pid := func(node string, inc, id uint64) codec.PID { return codec.PID{Node: node, Incarnation: inc, ID: id} }
	base := Entry{Name: "svc", PID: pid("b@h:1", 5, 10), Version: 7, Origin: "b@h:1"}
	with := func(f func(*Entry)) Entry { e := base; f(&e); return e }
	tests := []struct {
		name string
		a, b Entry
		want bool // Wins(a, b)
	}{
		{"lower version wins", with(func(e *Entry) { e.Version = 6 }), base, true},
		{"higher version loses", with(func(e *Entry) { e.Version = 8 }), base, false},
		{"version decides before the pid", with(func(e *Entry) { e.Version = 6; e.PID.Node = "z@h:1" }), base, true},
		{"same version: lower node name wins", with(func(e *Entry) { e.PID.Node = "a@h:1" }), base, true},
		{"same version: higher node name loses", with(func(e *Entry) { e.PID.Node = "c@h:1" }), base, false},
		{"same node: lower incarnation wins", with(func(e *Entry) { e.PID.Incarnation = 4 }), base, true},
		{"same incarnation: lower id wins", with(func(e *Entry) { e.PID.ID = 9 }), base, true},
		{"same id: higher id loses", with(func(e *Entry) { e.PID.ID = 11 }), base, false},
		{"same pid: lower origin wins", with(func(e *Entry) { e.Origin = "a@h:1" }), base, true},
		{"same pid: higher origin loses", with(func(e *Entry) { e.Origin = "c@h:1" }), base, false},
		{"identical entries: neither wins", base, base, false},
		{"the name plays no part", with(func(e *Entry) { e.Name = "aaa" }), base, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Wins(tt.a, tt.b); got != tt.want {
				t.Fatalf("Wins(%+v, %+v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

// The rule is a strict total order: every node picks the same winner from
// the same candidates, whatever order it learnt them in.
func TestWinsIsAStrictTotalOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nodes := []string{"a@h:1", "b@h:1", "c@h:1"}
	rnd := func() Entry {
		return Entry{
			Name:    "svc",
			PID:     codec.PID{Node: nodes[rng.IntN(3)], Incarnation: uint64(rng.IntN(2)), ID: uint64(rng.IntN(3))},
			Version: uint64(rng.IntN(3)),
			Origin:  nodes[rng.IntN(3)],
		}
	}
	for range 20000 {
		a, b, c := rnd(), rnd(), rnd()
		if Wins(a, a) {
			t.Fatalf("Wins(a, a) for %+v", a)
		}
		if a != b && Wins(a, b) == Wins(b, a) {
			t.Fatalf("not exactly one of Wins(a,b), Wins(b,a): %+v %+v", a, b)
		}
		if Wins(a, b) && Wins(b, c) && !Wins(a, c) {
			t.Fatalf("not transitive: %+v %+v %+v", a, b, c)
		}
	}
}
