package global

import (
	"fmt"
	"testing"

	"github.com/meshrt/mesh/codec"
)

// BenchmarkViewLookup isolates the read path: the view against a plain Go map
// (no lock, no writer) holding the same names. The lookups use the stored
// strings, so name comparisons take the equal-pointer shortcut in both.
//
//	go test -run '^$' -bench ViewLookup -count 5 ./global/
func BenchmarkViewLookup(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("svc-%d", i)
		}
		var v view
		v.init()
		var cs []change
		m := map[string]codec.PID{}
		for i, k := range keys {
			p := codec.PID{Node: "n@h:1", Incarnation: 1, ID: uint64(i) + 1}
			cs = append(cs, v.set(k, p))
			m[k] = p
		}
		v.apply(cs)
		b.Run(fmt.Sprintf("n=%d/view", n), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := v.lookup(keys[i]); !ok {
						panic(keys[i])
					}
					if i++; i == len(keys) {
						i = 0
					}
				}
			})
		})
		b.Run(fmt.Sprintf("n=%d/map", n), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := m[keys[i]]; !ok {
						panic(keys[i])
					}
					if i++; i == len(keys) {
						i = 0
					}
				}
			})
		})
	}
}
