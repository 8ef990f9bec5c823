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
// more at each remote spawn, one less when such a process exits.
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
			o.spawnedPerPeer = spawned
		}
		if relations >= 1 {
			o.relationsPerPeer = relations
		}
	}
}

// chargeSpawn counts a process pe asks this node to spawn; past the limit
// it returns a *wire.LimitError and counts nothing. Any goroutine.
func (n *Node) chargeSpawn(pe *peer) error {
	max := n.opts.spawnedPerPeer
	n.spawnedMu.Lock()
	defer n.spawnedMu.Unlock()
	held := n.spawned[pe.name]
	if held >= max {
		return &wire.LimitError{Limit: "spawned", Asked: held + 1, Max: max}
	}
	if n.spawned == nil {
		n.spawned = make(map[string]int)
	}
	n.spawned[pe.name] = held + 1
	return nil
}

// releaseSpawn uncounts a process the node named spawner had spawned: it
// exited, or it never started. Any goroutine.
func (n *Node) releaseSpawn(spawner string) {
	n.spawnedMu.Lock()
	defer n.spawnedMu.Unlock()
	if held := n.spawned[spawner]; held > 1 {
		n.spawned[spawner] = held - 1
	} else {
		delete(n.spawned, spawner)
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
