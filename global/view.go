package global

// The read side of the registry. Invariants:
//   - Each shard is an immutable map published through an atomic pointer. A
//     map, once stored, is never written again: writers clone the shard, change
//     the clone and store it. Readers therefore need no lock and never see a
//     half-made change; a reader may see the map of a moment ago.
//   - Only the registry's writer (holding Registry.mu) calls apply, so two
//     writers never race to replace the same shard.
//   - A batch clones each shard it touches once, so a change of k names costs
//     O(k + the size of the touched shards), and a merge that touches every
//     shard costs one copy of the table.

import (
	"hash/maphash"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/meshrt/mesh/codec"
)

const (
	shardBits = 8
	numShards = 1 << shardBits
)

type view struct {
	seed   maphash.Seed
	shards [numShards]atomic.Pointer[map[string]codec.PID]
}

func (v *view) init() { v.seed = maphash.MakeSeed() }

func (v *view) shard(name string) int {
	return int(maphash.String(v.seed, name) >> (64 - shardBits))
}

// lookup is the lock-free, allocation-free read.
func (v *view) lookup(name string) (codec.PID, bool) {
	m := v.shards[v.shard(name)].Load()
	if m == nil {
		return codec.PID{}, false
	}
	pid, ok := (*m)[name]
	return pid, ok
}

// change sets name to pid, or deletes it when del is set.
type change struct {
	shard int
	name  string
	pid   codec.PID
	del   bool
}

// apply publishes a batch of changes, cloning each touched shard once. It
// returns how the number of names changed. changes is reordered.
func (v *view) apply(changes []change) (delta int) {
	slices.SortFunc(changes, func(a, b change) int { return a.shard - b.shard })
	for i := 0; i < len(changes); {
		j := i
		for j < len(changes) && changes[j].shard == changes[i].shard {
			j++
		}
		p := &v.shards[changes[i].shard]
		var next map[string]codec.PID
		if old := p.Load(); old != nil {
			next = make(map[string]codec.PID, len(*old)+j-i)
			maps.Copy(next, *old)
		} else {
			next = make(map[string]codec.PID, j-i)
		}
		for _, c := range changes[i:j] {
			_, had := next[c.name]
			if c.del {
				if had {
					delete(next, c.name)
					delta--
				}
				continue
			}
			if !had {
				delta++
			}
			next[c.name] = c.pid
		}
		p.Store(&next)
		i = j
	}
	return delta
}

// all returns a copy of the whole view (for tests and debugging).
func (v *view) all() map[string]codec.PID {
	out := make(map[string]codec.PID)
	for i := range v.shards {
		if m := v.shards[i].Load(); m != nil {
			maps.Copy(out, *m)
		}
	}
	return out
}
