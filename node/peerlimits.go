package node

// Bounds on what a peer makes this node hold through its processes: the
// processes it spawned here that are still alive, and the links and
// monitors its processes hold on this node's processes (calls' monitors
// included). The other tables a peer grows have bounds of their own:
// reassembly (WithReassemblyLimits), registry names and frames
// (WithRegistryLimits), group members (WithMaxPeerGroupMembers).
//
// Spawned processes are counted exactly, by the peer's node name (so a
// reconnection does not reset them: the processes outlive the link): one
// more at each remote spawn, one less when such a process exits. The count
// is an entry of the node's map that the link and the processes hold, so
// that a spawn and an exit reach it without the node's lock (spawnCount).
//
// Links and monitors are not counted exactly: they go in many ways that do
// not pass through the peer (the local process exits, the peer's process
// exits and its exit signal or Down arrives, an unlink, a demonitor, a
// call's reply), and a counter that every one of them kept right would sit
// on every exit path. Instead each link or monitor the peer adds counts
// one, and when the count reaches twice the limit the entries the peer's
// processes really hold are counted by a walk of the process table: past
// the limit the peer is cut, else the count restarts from what was found.
// So a peer within the limit is never cut, a peer holds at most twice the
// limit at any moment, and a walk comes at most once per limit additions.

import (
	"sync/atomic"

	"github.com/meshrt/mesh/internal/wire"
)

// Defaults of [WithPeerProcessLimits].
const (
	DefaultSpawnedPerPeer   = 64 << 10
	DefaultRelationsPerPeer = 1 << 20
)

// WithPeerProcessLimits bounds what one peer can make this node hold
// through its processes: processes it spawned here that are alive (default
// 65 536; an idle process takes about 3 KiB with its goroutine) and links
// and monitors its processes hold on this node's processes, calls in flight
// included (default 1 048 576; about 100 B each; the count is checked in
// steps, so a peer may hold up to twice the limit before it is cut). A spawn
// request past the first limit, or relations past the second, cut the peer,
// counted in mesh_peers_cut_total (limit "spawned" or "relations") and
// logged at Warn. The spawned count outlives the link (so do the
// processes): a peer at its bound is cut again at each further spawn
// request until some of its processes here exit. Links this node's own
// processes make to the peer's do not count. Each recount of links and
// monitors walks the process table; with a very small relations bound and
// many processes that walk is the cost a peer can impose, once per bound
// additions. Values below 1 keep the default. Called before [Start].
func WithPeerProcessLimits(spawned, relations int) Option {
	return func(o *options) {
		if spawned >= 1 {
			o.spawnedPerPeer = int(min(int64(spawned), spawnHeldMask)) // the count's part of its word (spawnCount)
		}
		if relations >= 1 {
			o.relationsPerPeer = relations
		}
	}
}

// spawnCount counts the live processes that one peer node, by name,
// spawned here: the entry of n.spawned for that name. Charging and
// releasing it at each spawn under the node's lock, in a map keyed by the
// name, cost the lock twice, three hashes of the name and a map insert and
// delete per spawn of a process that ends before the next (about 600
// instructions of the far node's ~11 700 a spawn: docs/latency.md, "Remote
// spawn: the spawn count off the node's lock"). Instead the link keeps
// a pointer to its name's entry (peer.spawned) and each process it spawned
// keeps one too (Process.spawner): a spawn charges the entry with a
// compare-and-swap, an exit releases it with an add, and the map and its
// lock are used only when a link first spawns, when a link ends, and when
// an entry may have to go.
//
// Invariants. n.spawnedMu is the lock of n.spawned.
//
//  1. state counts the entry's holders: its low bits (spawnHeldMask) the
//     processes charged and not yet released, each held by the process it
//     counts; its high bits the links that hold the entry, one
//     spawnLinkUnit each. A link's unit is added and removed only under
//     n.spawnedMu, at most once each per link: added by the link's first
//     charge (chargeSpawnLocked), removed when the link ends
//     (spawnLinkEnded), and never added to the entry of a link that has
//     ended (peer.spawnedEnded). A process's count is added by a
//     compare-and-swap (charge) and removed by one atomic add
//     (releaseSpawn), with no lock.
//  2. An entry is n.spawned's entry for its name from its creation until
//     it is removed, and it is removed only under n.spawnedMu by a holder
//     of the lock that saw its state zero under the lock. So an entry with
//     a holder is the map's: all the processes a name has here are counted
//     in one entry, the one the limit is checked on, however many links
//     the name has had, or has at once.
//  3. Once removed, an entry's state stays zero. A count leaves zero only
//     under n.spawnedMu, on the entry the map holds (chargeSpawnLocked), or
//     by a charge through a link's pointer, whose compare-and-swap needs a
//     link unit in the state it replaces (charge's linked): a state with a
//     unit is not zero, so its entry is still the map's (2). A charge that
//     finds no unit (its link ended since it loaded the pointer) goes
//     through the map under the lock.
//  4. A release that brings the state to zero takes the lock and removes
//     the entry if its state is still zero and the map still holds that
//     entry: meanwhile a new link of the name may have picked it up (its
//     state is not zero: it stays), or it may have been removed by another
//     holder and a new entry made for the name (that one stays). A link's
//     end that brings the state to zero removes the entry at once, under
//     the lock it holds.
//
// So the count of a name never passes the limit: every process charged
// counts in the entry the limit is checked on (2), whose held count goes
// up only by a compare-and-swap from below the limit; a reconnection
// finds the entry its processes still hold. No release is lost: a process
// releases the entry it was charged in, which stays the map's while that
// process holds it (2). And the map holds only the entries of names with a
// link that has spawned and not ended, or with live processes, plus, for a
// moment, entries at zero whose release is on its way to the lock (4).
type spawnCount struct {
	name  string       // the peer node's, the map's key
	state atomic.Int64 // holders (1): processes, and links in spawnLinkUnits
}

// The parts of spawnCount.state. A name has at most a few links at once
// (a replaced one ending beside the new one), and processes are far fewer
// than 1<<40 (a terabyte of memory at the least).
const (
	spawnLinkUnit = 1 << 40
	spawnHeldMask = spawnLinkUnit - 1
)

// charge counts one more process, unless max are counted: then it returns
// false and the count seen. With linked it also counts nothing, and
// returns false, when no link holds the entry (invariant 3): the count
// seen is then below max.
func (c *spawnCount) charge(max int64, linked bool) (held int64, ok bool) {
	for {
		s := c.state.Load()
		held = s & spawnHeldMask
		if held >= max || linked && s < spawnLinkUnit {
			return held, false
		}
		if h := testHookSpawnCharge.Load(); h != nil {
			(*h)()
		}
		if c.state.CompareAndSwap(s, s+1) {
			return held + 1, true
		}
	}
}

// testHookSpawnCharge, when a test sets it, runs in charge between its
// look at the count and its compare-and-swap.
var testHookSpawnCharge atomic.Pointer[func()]

// chargeSpawn counts a process pe asks this node to spawn and returns the
// entry it counted it in, for the process to release at its exit
// (releaseSpawn); past the limit it returns a *wire.LimitError and counts
// nothing. On the goroutine handling pe's frames.
func (n *Node) chargeSpawn(pe *peer) (*spawnCount, error) {
	return n.chargeSpawnVia(pe, pe.spawned.Load())
}

// chargeSpawnVia is chargeSpawn with c, what pe.spawned held when loaded:
// the entry pe's link holds, nil before its first spawn and after its end,
// or an entry that pe's link has given up since the load (its end).
func (n *Node) chargeSpawnVia(pe *peer, c *spawnCount) (*spawnCount, error) {
	max := int64(n.opts.spawnedPerPeer)
	if c != nil {
		held, ok := c.charge(max, true)
		if ok {
			return c, nil
		}
		if held >= max {
			return nil, spawnLimitError(held, max)
		}
		// No link holds c any more: it may be gone from the map.
	}
	return n.chargeSpawnLocked(pe, max)
}

// chargeSpawnLocked charges the map's entry for pe's name, made if there
// is none, under n.spawnedMu; the first time, the link takes its hold of
// the entry and keeps it (peer.spawned), unless it has ended.
func (n *Node) chargeSpawnLocked(pe *peer, max int64) (*spawnCount, error) {
	n.spawnedMu.Lock()
	defer n.spawnedMu.Unlock()
	c := n.spawned[pe.name]
	if c == nil {
		if n.spawned == nil {
			n.spawned = make(map[string]*spawnCount)
		}
		c = &spawnCount{name: pe.name}
		n.spawned[pe.name] = c
	}
	if !pe.spawnedEnded && pe.spawned.Load() == nil {
		c.state.Add(spawnLinkUnit)
		pe.spawned.Store(c)
	}
	// A new entry either has the link's unit or takes this charge (max is
	// at least 1): no entry stays in the map at zero (invariant 4).
	if held, ok := c.charge(max, false); !ok {
		return nil, spawnLimitError(held, max)
	}
	return c, nil
}

func spawnLimitError(held, max int64) error {
	return &wire.LimitError{Limit: "spawned", Asked: int(held + 1), Max: int(max)}
}

// releaseSpawn uncounts a process charged in c: it exited, or it never
// started. Any goroutine.
func (n *Node) releaseSpawn(c *spawnCount) {
	if c.state.Add(-1) != 0 {
		return // a link or another process holds c: it stays
	}
	if h := testHookSpawnReleased.Load(); h != nil {
		(*h)(c)
	}
	n.spawnedMu.Lock()
	if c.state.Load() == 0 && n.spawned[c.name] == c {
		delete(n.spawned, c.name)
	}
	n.spawnedMu.Unlock()
}

// testHookSpawnReleased, when a test sets it, runs in releaseSpawn after
// the release that brought an entry to zero and before the lock.
var testHookSpawnReleased atomic.Pointer[func(*spawnCount)]

// spawnLinkEnded gives up the hold pe's link has on its name's spawn count,
// if it took one, and removes the entry if nothing else holds it. Once,
// when the link ends (OnClose); pe's later spawn requests, if any, are
// charged through the map and take no hold.
func (n *Node) spawnLinkEnded(pe *peer) {
	n.spawnedMu.Lock()
	defer n.spawnedMu.Unlock()
	pe.spawnedEnded = true
	c := pe.spawned.Swap(nil)
	if c != nil && c.state.Add(-spawnLinkUnit) == 0 {
		delete(n.spawned, c.name) // the map's: it had a holder until now
	}
}

// relationAdded counts a link or monitor one of pe's processes now holds on
// a local process (see the file comment). On a goroutine handling pe's
// frames: the link's loop or inline reader, or its companion's loop.
func (pe *peer) relationAdded() error {
	max := pe.n.opts.relationsPerPeer
	if pe.relations.Add(1) < 2*int64(max) {
		return nil
	}
	held := pe.n.relationsHeldBy(pe)
	if held > max {
		return &wire.LimitError{Limit: "relations", Asked: held, Max: max}
	}
	pe.relations.Store(int64(held))
	return nil
}

// relationsHeldBy counts the links and monitors pe's processes hold on
// this node's processes. Any goroutine; it locks each process in turn.
func (n *Node) relationsHeldBy(pe *peer) int {
	held := 0
	for _, p := range n.procs.snapshot() {
		p.mu.Lock()
		if r := p.rel; r != nil {
			for pid, byPeer := range r.links {
				if byPeer && pe.owns(pid) { // not links made here
					held++
				}
			}
			for _, watcher := range r.monitors {
				if pe.owns(watcher) {
					held++
				}
			}
		}
		p.mu.Unlock()
	}
	return held
}
