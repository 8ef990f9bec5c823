package global

// The read side of the registry. Invariants:
//   - The view is 4096 shards, chosen by the top bits of the name's hash.
//     Each shard is an immutable hash table published through an atomic
//     pointer: a table, once stored, is never written again; writers build a
//     new one from the old one and the changes, and store it. Readers need no
//     lock and never see a half-made change; they may see the table of a
//     moment ago.
//   - A table is one allocation of 32-byte slots: slot 0 is the header (its
//     id field holds the mask), slots 1..mask+1 are an open-addressing table
//     with linear probing, at most 3/4 full, so a probe always ends on an
//     empty slot. A slot holds 32 bits of the hash, the name (pointer and
//     length) and the PID with its node and incarnation replaced by an index
//     into the node table. So a lookup costs one random memory access in the
//     common case (the slot, which holds everything), and the whole view is
//     about 32 bytes / load per name: small enough that 100 000 names stay in
//     cache and TLB reach, where 56-byte slots at load 1/3 did not (see
//     bench/global_test.go and global/view_bench_test.go).
//   - The node table (node name and incarnation per index) only grows, copy
//     on write, and is published before any table that uses a new index, so a
//     reader that loaded a table and then the node table finds every index.
//     It holds one entry per (node, incarnation) that ever held a name here;
//     entries are never reused (a node restarting a thousand times costs a
//     thousand 24-byte entries).
//   - Only the registry's writer (holding Registry.mu) calls apply, so two
//     writers never race to replace the same shard.
//   - A batch rebuilds each shard it touches once, so a change of k names costs
//     O(k + the size of the touched shards), and a merge that touches every
//     shard costs one copy of the table.

import (
	"hash/maphash"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/meshrt/mesh/codec"
)

const (
	shardBits = 12
	numShards = 1 << shardBits
)

// slot is one entry of a table, or its header (slot 0: id is the mask).
// name == nil marks an empty slot (names are never empty, so a stored name
// always has a non-nil pointer).
type slot struct {
	name *byte  // the name's bytes; keeps them alive
	tag  uint32 // hash bits 20..51; its low bits are also the position
	size uint32 // len(name)
	node uint32 // index into the node table
	id   uint64 // PID.ID
}

const slotSize = unsafe.Sizeof(slot{})

// shard is where a table is published. mask is a copy of the table's mask
// that a reader can read without waiting for the table's header (a cache
// miss): it computes the probe position from it and checks it against the
// header afterwards, so the two loads overlap. It may be stale; it is only
// trusted after that check.
type shard struct {
	table atomic.Pointer[slot]
	mask  atomic.Uint64
}

func (sh *shard) store(hdr *slot) {
	sh.table.Store(hdr)
	if hdr != nil {
		sh.mask.Store(hdr.id)
	}
}

// nodeKey is what a slot's node index stands for.
type nodeKey struct {
	node string
	inc  uint64
}

type view struct {
	seed   maphash.Seed
	shards [numShards]shard
	nodes  atomic.Pointer[[]nodeKey]

	// writer only
	nodeIdx map[nodeKey]uint32
	live    []slot // apply's scratch
}

func (v *view) init() {
	v.seed = maphash.MakeSeed()
	v.nodeIdx = make(map[nodeKey]uint32)
	v.nodes.Store(new([]nodeKey))
}

func (v *view) hash(name string) uint64 { return maphash.String(v.seed, name) }

func shardOf(h uint64) int { return int(h >> (64 - shardBits)) }

func tagOf(h uint64) uint32 { return uint32(h >> 20) }

// at returns slot i+1 of the table whose header is hdr (i <= mask).
func at(hdr *slot, i uint64) *slot {
	return (*slot)(unsafe.Add(unsafe.Pointer(hdr), uintptr(i+1)*slotSize))
}

func (s *slot) key() string { return unsafe.String(s.name, s.size) }

// lookup is the lock-free, allocation-free read.
func (v *view) lookup(name string) (codec.PID, bool) {
	h := v.hash(name)
	sh := &v.shards[shardOf(h)]
	mask := sh.mask.Load()
	hdr := sh.table.Load()
	if hdr == nil {
		return codec.PID{}, false
	}
	if hdr.id != mask {
		// A branch, not a data dependency: on the usual path the probe
		// below does not wait for the header's cache line.
		return v.probe(hdr, hdr.id, name, tagOf(h))
	}
	return v.probe(hdr, mask, name, tagOf(h))
}

// probe searches the table hdr, whose mask is mask, for name.
func (v *view) probe(hdr *slot, mask uint64, name string, tag uint32) (codec.PID, bool) {
	for i := uint64(tag) & mask; ; i = (i + 1) & mask {
		s := at(hdr, i)
		if s.name == nil {
			return codec.PID{}, false
		}
		if s.tag == tag && int(s.size) == len(name) && s.key() == name {
			n := (*v.nodes.Load())[s.node]
			return codec.PID{Node: n.node, Incarnation: n.inc, ID: s.id}, true
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

// nodeOf returns the node index of pid, adding it to the node table (and
// publishing the table) when new.
func (v *view) nodeOf(pid codec.PID) uint32 {
	k := nodeKey{pid.Node, pid.Incarnation}
	if i, ok := v.nodeIdx[k]; ok {
		return i
	}
	old := *v.nodes.Load()
	i := uint32(len(old))
	next := append(old, k) // may share old's array: readers never look past their len
	v.nodes.Store(&next)
	v.nodeIdx[k] = i
	return i
}

// apply publishes a batch of changes (at most one per name), rebuilding each
// touched shard once. It returns how the number of names changed. changes
// is reordered.
func (v *view) apply(changes []change) (delta int) {
	slices.SortFunc(changes, func(a, b change) int { return shardOf(a.hash) - shardOf(b.hash) })
	live := v.live
	var used []bool
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
		find := func(s *slot) int {
			if byName != nil {
				if k, ok := byName[s.key()]; ok {
					return k
				}
				return -1
			}
			for k := range batch {
				// The tag first: the old slots' names are cold in cache.
				if tagOf(batch[k].hash) == s.tag && batch[k].name == s.key() {
					return k
				}
			}
			return -1
		}
		used = slices.Grow(used[:0], len(batch))[:len(batch)]
		clear(used)
		live = live[:0]
		if old := v.shards[sh].table.Load(); old != nil {
			for k := range old.id + 1 {
				s := *at(old, k)
				if s.name == nil {
					continue
				}
				if b := find(&s); b >= 0 {
					used[b] = true
					if batch[b].del {
						delta--
						continue
					}
					s.node, s.id = v.nodeOf(batch[b].pid), batch[b].pid.ID
				}
				live = append(live, s)
			}
		}
		for k, c := range batch {
			if !used[k] && !c.del {
				live = append(live, slot{
					name: unsafe.StringData(c.name), tag: tagOf(c.hash), size: uint32(len(c.name)),
					node: v.nodeOf(c.pid), id: c.pid.ID,
				})
				delta++
			}
		}
		v.shards[sh].store(v.newTable(live))
		i = j
	}
	clear(live)
	v.live = live[:0]
	return delta
}

// newTable builds a table holding live; nil when live is empty.
func (v *view) newTable(live []slot) *slot {
	if len(live) == 0 {
		return nil
	}
	size := uint64(8)
	for size*3 < 4*uint64(len(live)) {
		size <<= 1
	}
	t := make([]slot, size+1)
	hdr := &t[0]
	hdr.id = size - 1
	for _, s := range live {
		i := uint64(s.tag) & hdr.id
		for t[i+1].name != nil {
			i = (i + 1) & hdr.id
		}
		t[i+1] = s
	}
	return hdr
}

// all returns a copy of the whole view (for tests and debugging).
func (v *view) all() map[string]codec.PID {
	out := make(map[string]codec.PID)
	nodes := *v.nodes.Load()
	for i := range v.shards {
		if hdr := v.shards[i].table.Load(); hdr != nil {
			for k := range hdr.id + 1 {
				if s := at(hdr, k); s.name != nil {
					n := nodes[s.node]
					out[s.key()] = codec.PID{Node: n.node, Incarnation: n.inc, ID: s.id}
				}
			}
		}
	}
	return out
}
