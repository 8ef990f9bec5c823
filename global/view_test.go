package global

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/meshrt/mesh/codec"
)

// The view answers exactly like a plain map through random batches of sets
// and deletes, small (one shard at a time) and large (every shard), with
// names moving between nodes and incarnations. Lookups use fresh copies of
// the names, so they compare bytes, not just pointers.
func TestViewMatchesAMap(t *testing.T) {
	nodes := []string{"a@h:1", "b@h:2", "c@h:3"}
	rng := rand.New(rand.NewPCG(3, 4))
	var v view
	v.init()
	ref := map[string]codec.PID{}
	size := 0
	for round := range 300 {
		batch := 1 + rng.IntN(4)
		if round%50 == 0 {
			batch = 5000
		}
		seen := map[string]bool{}
		var changes []change
		for range batch {
			name := fmt.Sprintf("k%d", rng.IntN(20000))
			if seen[name] {
				continue
			}
			seen[name] = true
			if rng.IntN(3) == 0 {
				changes = append(changes, v.del(name))
				delete(ref, name)
			} else {
				pid := codec.PID{Node: nodes[rng.IntN(len(nodes))], Incarnation: 1 + rng.Uint64N(3), ID: rng.Uint64()}
				changes = append(changes, v.set(name, pid))
				ref[name] = pid
			}
		}
		size += v.apply(changes)
		if size != len(ref) {
			t.Fatalf("round %d: delta says %d names, want %d", round, size, len(ref))
		}
	}
	if !maps.Equal(v.all(), ref) {
		t.Fatal("view content differs from the reference map")
	}
	for i := range 20000 {
		name := fmt.Sprintf("k%d", i)
		got, ok := v.lookup(name)
		want, wok := ref[name]
		if ok != wok || got != want {
			t.Fatalf("lookup(%s) = %v, %v; want %v, %v", name, got, ok, want, wok)
		}
	}
}
