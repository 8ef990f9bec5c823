package global

// The read side of the registry. Invariants:
//   - The view is 4096 shards, chosen by the top bits of the name's hash.
//     Each shard is an immutable hash table published through an atomic
//     pointer: a table, once stored, is never written again; writers build a
//     new one from the old one and the changes, and store it. Readers need no
//     lock and never see a half-made change; they may see the table of a
//     moment ago. (Measured against Go maps per shard, the flat tables with
//     the hash stored in each slot save two dependent cache misses per
//     lookup on large tables; see bench/global_test.go.)
//   - Only the registry's writer (holding Registry.mu) calls apply, so two
//     writers never race to replace the same shard.
//   - A batch rebuilds each shard it touches once, so a change of k names costs
//     O(k + the size of the touched shards), and a merge that touches every
//     shard costs one copy of the table.

import (
	"hash/maphash"
	"slices"
	"sync/atomic"

	"github.com/meshrt/mesh/codec"
)

const (
	shardBits = 12
	numShards = 1 << shardBits
)

// table is one immutable shard: an open-addressing hash table with linear
// probing, at most half full, so a probe sequence always ends on an empty
// slot. A slot holds the full hash, so a lookup compares names only on a hash
// match.
type table struct {
	mask  uint64
	slots []slot
}

type slot struct {
	hash uint64
	name string // "" marks an empty slot (names are never empty)
	pid  codec.PID
}

type view struct {
	seed   maphash.Seed
	shards [numShards]atomic.Pointer[table]
	live   []slot // apply's scratch (writer only)
}

func (v *view) init() { v.seed = maphash.MakeSeed() }

func (v *view) hash(name string) uint64 { return maphash.String(v.seed, name) }

func shardOf(h uint64) int { return int(h >> (64 - shardBits)) }

// lookup is the lock-free, allocation-free read.
func (v *view) lookup(name string) (codec.PID, bool) {
	h := v.hash(name)
	t := v.shards[shardOf(h)].Load()
	if t == nil {
		return codec.PID{}, false
	}
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.name == "" {
			return codec.PID{}, false
		}
		if s.hash == h && s.name == name {
			return s.pid, true
		}
	}
}

// change sets name to pid, or deletes it when del is set.
type change struct {
	hash uint64
	name string
	pid  codec.PID
	del  bool
}

func (v *view) set(name string, pid codec.PID) change {
	return change{hash: v.hash(name), name: name, pid: pid}
}

func (v *view) del(name string) change {
	return change{hash: v.hash(name), name: name, del: true}
}

// apply publishes a batch of changes (at most one per name), rebuilding each
// touched shard once. It returns how the number of names changed. changes
// is reordered.
func (v *view) apply(changes []change) (delta int) {
	slices.SortFunc(changes, func(a, b change) int { return shardOf(a.hash) - shardOf(b.hash) })
	live := v.live
	for i := 0; i < len(changes); {
		sh := shardOf(changes[i].hash)
		j := i + 1
		for j < len(changes) && shardOf(changes[j].hash) == sh {
			j++
		}
		batch := changes[i:j]
		var byName map[string]int // index into batch, for big batches
		if len(batch) > 8 {
			byName = make(map[string]int, len(batch))
			for k, c := range batch {
				byName[c.name] = k
			}
		}
		find := func(name string) int {
			if byName != nil {
				if k, ok := byName[name]; ok {
					return k
				}
				return -1
			}
			for k := range batch {
				if batch[k].name == name {
					return k
				}
			}
			return -1
		}
		used := make([]bool, len(batch))
		live = live[:0]
		if old := v.shards[sh].Load(); old != nil {
			for _, s := range old.slots {
				if s.name == "" {
					continue
				}
				if k := find(s.name); k >= 0 {
					used[k] = true
					if batch[k].del {
						delta--
						continue
					}
					s.pid = batch[k].pid
				}
				live = append(live, s)
			}
		}
		for k, c := range batch {
			if !used[k] && !c.del {
				live = append(live, slot{hash: c.hash, name: c.name, pid: c.pid})
				delta++
			}
		}
		v.shards[sh].Store(newTable(live))
		i = j
	}
	clear(live)
	v.live = live[:0]
	return delta
}

func newTable(live []slot) *table {
	if len(live) == 0 {
		return nil
	}
	size := uint64(8)
	for size < 2*uint64(len(live)) {
		size <<= 1
	}
	t := &table{mask: size - 1, slots: make([]slot, size)}
	for _, s := range live {
		i := s.hash & t.mask
		for t.slots[i].name != "" {
			i = (i + 1) & t.mask
		}
		t.slots[i] = s
	}
	return t
}

// all returns a copy of the whole view (for tests and debugging).
func (v *view) all() map[string]codec.PID {
	out := make(map[string]codec.PID)
	for i := range v.shards {
		if t := v.shards[i].Load(); t != nil {
			for _, s := range t.slots {
				if s.name != "" {
					out[s.name] = s.pid
				}
			}
		}
	}
	return out
}
