package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
)

// Membership: Connect and dialling, the peer table, a peer coming up
// (gossip of the node list, the registry snapshot), the full-mesh gossip, and
// a peer going (everything that depended on it hears). Admission of
// authenticated connections (the handshake hook) is in admit.go.
//
// Invariants.
//
//  1. At most one live connection per peer name: n.peers holds it. A name is
//     in n.peers from the moment its connection is admitted (acceptor: in the
//     handshake's Admit step, before it says admitted; dialler: when Dial
//     returns) until that connection's OnClose has finished the cleanup.
//  2. Simultaneous dials end with one connection by a rule both sides apply
//     alike: a connection dialled by the node with the smaller name wins. The
//     acceptor decides right after the cookie proofs and tells the dialler
//     in the handshake's admission message; see admit.
//  3. A newer incarnation of a peer replaces the older one's connection at
//     once: the old one is closed and its processes are reported gone.
//  4. Under n.peersMu: no process lock, no I/O, no Enqueue; only
//     n.nodeMonMu may be taken after it (the lock order is in doc.go).

// Connect connects this node to the node named name, authenticating both
// ways with the cookie. It returns at once if the node is already connected.
// Errors: [ErrBadName] for a malformed name, [ErrAuth] when either side's
// cookie proof fails, [ErrNotConnected] (wrapping the cause) when the node
// cannot be reached.
func (n *Node) Connect(ctx context.Context, name string) error {
	nn, err := parseName(name)
	if err != nil {
		return err
	}
	name = nn.String()
	if name == n.self {
		return nil
	}
	_, err = n.connect(ctx, name, nn.addr())
	return err
}

// dialCall is one Connect in progress to a name; others wait on it.
type dialCall struct {
	done chan struct{}
	err  error // set before done closes
}

// connect returns the peer named name, dialling addr if needed. Concurrent
// calls for one name share one dial.
func (n *Node) connect(ctx context.Context, name, addr string) (*peer, error) {
	for attempt := 0; ; attempt++ {
		n.peersMu.Lock()
		if n.stopped.Load() {
			n.peersMu.Unlock()
			return nil, ErrStopped
		}
		if pe := n.peers[name]; pe != nil {
			n.peersMu.Unlock()
			return pe, pe.waitUp(ctx)
		}
		if d := n.dialing[name]; d != nil {
			n.peersMu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("connect %s: %w: %w", name, ErrNotConnected, ctx.Err())
			}
			if d.err != nil && !errors.Is(d.err, errDuplicate) {
				return nil, d.err
			}
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		n.dialing[name] = d
		n.peersMu.Unlock()

		pe, err := n.dial(ctx, name, addr)

		n.peersMu.Lock()
		delete(n.dialing, name)
		n.peersMu.Unlock()
		d.err = err
		close(d.done)
		if err == nil {
			return pe, nil
		}
		if errors.Is(err, errDuplicate) && attempt < 3 {
			// The peer keeps the connection it dialled to us; wait for
			// its arrival, bounded by ctx and the handshake timeout.
			if pe := n.awaitPeer(ctx, name); pe != nil {
				return pe, nil
			}
			continue
		}
		return nil, err
	}
}

// dial makes and registers an outbound connection.
func (n *Node) dial(ctx context.Context, name, addr string) (*peer, error) {
	c, info, err := n.links.dial(ctx, addr, name)
	if err != nil {
		return nil, connectErr(name, err)
	}
	n.peersMu.Lock()
	if n.stopped.Load() {
		n.peersMu.Unlock()
		closeUnstarted(c, ErrStopped)
		return nil, ErrStopped
	}
	old := n.peers[name]
	if old != nil && old.incarnation == info.incarnation {
		// An inbound connection from the same run was admitted meanwhile
		// (the peer is the smaller name): keep that one.
		n.peersMu.Unlock()
		closeUnstarted(c, errDuplicate)
		return old, old.waitUp(ctx)
	}
	pe := n.newPeer(info, true)
	n.peers[name] = pe
	n.publishPeersLocked()
	n.peersMu.Unlock()
	if old != nil {
		old.retire(ctx)
	}
	pe.attach(c)
	return pe, nil
}

// closeUnstarted closes a connection that never got a handler: loop
// delivers OnClose to the closing goroutine for such a connection.
func closeUnstarted(c link, reason error) {
	c.SetHandler(discardHandler{})
	_ = c.Close(reason)
}

// discardHandler is the handler of connections closed before they start.
type discardHandler struct{}

func (discardHandler) OnData(_ *loop.Conn, b []byte) (int, error) { return len(b), nil }

func (discardHandler) OnClose(*loop.Conn, error) {}

// awaitPeer waits until name is in the peer table and up, or gives up
// after the handshake timeout. It wakes on each change of the table.
func (n *Node) awaitPeer(ctx context.Context, name string) *peer {
	ctx, cancel := context.WithTimeout(ctx, n.opts.handshakeTimeout)
	defer cancel()
	for {
		n.peersMu.Lock()
		pe := n.peers[name]
		if n.peersChanged == nil {
			n.peersChanged = make(chan struct{})
		}
		changed := n.peersChanged
		n.peersMu.Unlock()
		if pe != nil {
			// Up, or gone; or replaced meanwhile (a reservation that
			// lapsed, a newer connection): then look again.
			select {
			case <-pe.up:
				if pe.isUp() {
					return pe
				}
			case <-pe.down:
			case <-changed:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// connectErr maps a transport or handshake failure to the runtime's errors
// (see peerError).
func connectErr(name string, err error) error {
	return newPeerError("connect "+name, err)
}

// attach wires the connection to the peer and starts it. The peer counts as
// up from here: items queued before the loop takes the connection over are
// flushed by it, and a connection that fails to start is cleaned up by
// OnClose like any other.
func (pe *peer) attach(c link) {
	n := pe.n
	c.SetHandler(pe)
	c.SetDrain(pe.drainFunc(batchFrame, true))
	pe.lastSeen.Store(monoNanos())
	n.peersMu.Lock()
	pe.conn = c // under peersMu: retire reads it there
	if pe.lapse != nil {
		pe.lapse.Stop()
	}
	var drop error
	switch {
	case pe.replaced:
		drop = errReplaced
	case isClosed(pe.lapsed):
		drop = errLapsed // unreserved meanwhile: no longer in the table
	}
	// The peer counts as up, and the node list it is sent is taken, in
	// one step under peersMu: of two peers coming up at once, the second
	// one's list names the first and the first one's does not name the
	// second. Two newcomers joining through this node at the same moment
	// then do not both find the other on their list and dial each other
	// (a crossing dial: one full handshake thrown away).
	pe.upFlag.Store(true)
	names := n.listLocked()
	n.peersMu.Unlock()
	if h := testHookLinkUp.Load(); h != nil {
		(*h)(pe)
	}
	slices.Sort(names)
	close(pe.up)
	n.metrics.peerUp()
	n.log.Info("peer up", "peer", pe.name, "outbound", pe.outbound)
	n.peerUp(pe, names)
	n.nodeEvent(NodeUp{Node: pe.name})
	c.Start()
	close(pe.started)
	if drop != nil {
		// Replaced by a newer connection after admission, or lapsed,
		// before there was a connection to close.
		_ = c.Close(drop)
	}
}

// testHookLinkUp, when a test sets it, runs in attach between the step
// that makes the peer count as up and the queueing of its node list.
var testHookLinkUp atomic.Pointer[func(*peer)]

// errLapsed ends a connection whose admission lapsed before it attached.
var errLapsed = errors.New("node: admission lapsed before the connection started")

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// errReplaced ends a connection superseded by a newer incarnation's.
var errReplaced = errors.New("node: connection replaced by a newer incarnation")

// retire ends a peer replaced by a newer connection and waits, bounded by
// ctx, until its cleanup is done. A peer not attached yet is marked, and
// attach closes it. Never called under peersMu.
func (old *peer) retire(ctx context.Context) {
	n := old.n
	n.peersMu.Lock()
	old.replaced = true
	c := old.conn
	n.peersMu.Unlock()
	if c == nil {
		return // attach will see replaced and close it
	}
	_ = c.Close(errReplaced)
	select {
	case <-old.down:
	case <-ctx.Done():
	}
}

// peerUp runs when a connection has started: send the node list (names,
// taken as the peer came up) and the registry replica, so both sides
// converge on a full mesh.
//
// Gossip costs O(N) frames per node that joins, not per link: the new peer
// learns every node from this list and each of those learns the new peer
// only from the node it joined through (introduce). Telling every other
// peer on every link-up cost N frames per link, N³ in all: at 50 nodes,
// 117 000 frames, most of the CPU of forming the mesh.
func (n *Node) peerUp(pe *peer, names []string) {
	// A list naming the peer alone: this node joins the cluster through
	// it (learnNodes; the field is the loop's from Start on).
	pe.joined = len(names) == 1 && names[0] == pe.name
	pe.control(&wire.Nodes{Names: names})
	// The snapshot must be the peer's first registry frame that counts:
	// taken and queued under the registry's lock, no broadcast can slip in
	// between (one queued before it carries what the snapshot holds, and
	// the peer ignores ops until it has merged).
	//
	// The loop has not started: nothing drains yet, so a snapshot larger
	// than the queue's hard limit (8 MiB) would cut the link as a slow
	// consumer before it began. Its size, the node's own tables (bounded on
	// the peer's side by WithRegistryLimits' frame bytes), is allowed past
	// the limit until as many bytes have been written (a snapshot part is at
	// most 1 MiB plus a header).
	n.global.SnapshotTo(func(frame []byte) {
		pe.conn.AllowBacklog(len(frame) + len(frame)/registryPart*64 + 64)
		pe.sendRegistry(frame)
	})
	n.groups.SnapshotTo(func(frame []byte) {
		pe.conn.AllowBacklog(len(frame) + len(frame)/groupsPart*64 + 64)
		pe.sendGroups(frame)
	})
}

// learnNodes takes a peer's node list: the dial worker connects to the
// names this node is not connected to (bounded and deduplicated there; see
// redial.go). Runs on the peer's loop.
//
// Who dials whom when a node joins. The first list a link carries is the
// one the peer sent when the link came up (peerUp). A node that had no
// other peer then joins the cluster through that peer: it dials every name
// of the peer's list at once. The peer, seeing a first list that names no
// node but the two of them, introduces the newcomer to its other peers (a
// list of that one name), and each of those waits before dialling it
// (introDefer, longer in a larger cluster: gossipDelay), so that the
// newcomer's dial comes first. Each pair then
// makes one handshake, not two (a crossing dial costs a full TLS and
// cookie handshake that the simultaneous-dial rule throws away), and the
// dials come from the newcomer, maxConcurrentDials at a time, not from half
// of the cluster at once (which overran the newcomer's handshake limits).
// Any other list is gossip: of a pair that learns of each other, the end
// that dialsFirst names dials at once, the other after gossipDefer.
func (n *Node) learnNodes(pe *peer, names []string) {
	if n.dials == nil || n.stopped.Load() {
		return
	}
	if pe == nil {
		n.dials.gossip(names, gossipPair)
		return
	}
	if pe.listed {
		how := gossipPair
		if len(names) == 1 {
			how = gossipIntro // only an introduction names a single node
		}
		n.dials.gossip(names, how)
		return
	}
	pe.listed = true
	if pe.joined {
		n.dials.gossip(names, gossipJoin)
		return
	}
	n.dials.gossip(names, gossipPair)
	for _, name := range names {
		if name != n.self && name != pe.name {
			return // the peer knows others: they know it, or learn it by redial or gossip
		}
	}
	for _, other := range n.upPeers() {
		// Not to a peer whose link-up node list is not queued yet
		// (started: invariant 2 in peer.go). An introduction sent
		// before that list would reach the peer first and be taken for
		// the list, and the list for gossip: the introduced name would
		// wait introDefer at the peer (the list's "dial it now" does
		// not shorten a waiting target), while that name's node, also
		// told of the peer only by an introduction, waits too. No
		// introduction is needed there: the peer's list was taken in
		// the step under peersMu that made it count as up, so either it
		// names the newcomer (the peer dials it: at once if it joined
		// through this node, else after gossipDefer) or the newcomer's
		// list, taken in its own such step later, names the peer (and
		// the newcomer, which joined through this node, dials it).
		if other != pe && isClosed(other.started) {
			other.control(&wire.Nodes{Names: []string{pe.name}})
		}
	}
}

// List returns the names of the connected nodes, sorted, without this node.
func (n *Node) List() []string {
	n.peersMu.Lock()
	names := n.listLocked()
	n.peersMu.Unlock()
	slices.Sort(names)
	return names
}

// listLocked is List, unsorted, with n.peersMu held.
func (n *Node) listLocked() []string {
	names := make([]string, 0, len(n.peers))
	for name, pe := range n.peers {
		if pe.isUp() {
			names = append(names, name)
		}
	}
	return names
}

// upPeers returns the connected peers.
func (n *Node) upPeers() []*peer {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	out := make([]*peer, 0, len(n.peers))
	for _, pe := range n.peers {
		if pe.isUp() {
			out = append(out, pe)
		}
	}
	return out
}

// tablePeers returns every peer in the table: up, or admitted or dialled
// and about to attach.
func (n *Node) tablePeers() []*peer {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	out := make([]*peer, 0, len(n.peers))
	for _, pe := range n.peers {
		out = append(out, pe)
	}
	return out
}

// peerIfUp returns the connected peer for node, without dialling.
func (n *Node) peerIfUp(node string) *peer {
	n.peersMu.Lock()
	pe := n.peers[node]
	n.peersMu.Unlock()
	if pe == nil || !pe.isUp() {
		return nil
	}
	return pe
}

// upNow reports whether node is connected, from the read-only view of the
// peer table (publishPeersLocked): no lock. Safe from any goroutine.
func (n *Node) upNow(node string) bool {
	if view := n.peerView.Load(); view != nil {
		pe := (*view)[node]
		return pe != nil && pe.isUp()
	}
	return false
}

// peerFor returns the connected peer for node, connecting on demand.
func (n *Node) peerFor(node string) (*peer, error) {
	if view := n.peerView.Load(); view != nil {
		if pe := (*view)[node]; pe != nil && pe.isUp() {
			return pe, nil
		}
	}
	nn, err := parseName(node)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(n.life, n.opts.handshakeTimeout)
	defer cancel()
	return n.connect(ctx, nn.String(), nn.addr())
}

// publishPeersLocked makes a read-only copy of n.peers for the send path,
// which looks a peer up on every remote send without taking peersMu.
// n.peersMu must be held. Peers change rarely; sends are constant.
func (n *Node) publishPeersLocked() {
	view := make(map[string]*peer, len(n.peers))
	for name, pe := range n.peers {
		view[name] = pe
	}
	n.peerView.Store(&view)
	if n.peersChanged != nil {
		close(n.peersChanged)
		n.peersChanged = nil
	}
}

// OnClose ends the peer. Runs on the loop (or off it for a connection closed
// before start); the cleanup, which may wait, runs on its own goroutine.
//
// The registry forgets the peer's names here, synchronously, before a newer
// connection with that node can start (retire waits for this one's end):
// so a NodeDown never wipes the names a newer connection brought.
func (pe *peer) OnClose(_ *loop.Conn, reason error) {
	n := pe.n
	// From here on the registry's Connected says no for this peer, so a
	// Register racing the NodeDown below cannot address a closed link.
	pe.closing.Store(true)
	pe.handle.p.Store(nil)
	n.spawnLinkEnded(pe) // its processes hold their count on
	companionDone := pe.closeCompanions()
	wasUp := pe.upFlag.Load()
	n.peersMu.Lock()
	cur := n.peers[pe.name]
	n.peersMu.Unlock()
	if wasUp && (cur == pe || cur == nil || !cur.upFlag.Load()) {
		// No newer connection has come up (a replacing one waits for
		// this cleanup before it starts; see retire).
		n.global.NodeDown(pe.name)
		n.groups.NodeDown(pe.name)
	}
	why := pe.downWhy(reason)
	pe.why = why
	if wasUp {
		// Before the peer leaves the table: no newer connection with the
		// node can start (and say NodeUp) before this NodeDown is queued.
		n.nodeEvent(NodeDown{Node: pe.name, Reason: why})
	}
	n.peersMu.Lock()
	current := n.peers[pe.name] == pe
	if current {
		delete(n.peers, pe.name)
		n.publishPeersLocked()
	}
	n.peersMu.Unlock()
	if wasUp && current {
		n.dials.lost(pe.name, why == Shutdown || why == Disconnected)
	}
	if wasUp {
		n.metrics.peerDown()
		n.log.Info("peer down", "peer", pe.name, "reason", string(why), "err", reason)
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer n.failSpawns(pe) // after close(pe.down): signal.go
		defer close(pe.down)
		pe.waitCompanionHandlers(companionDone)
		n.peerGone(pe)
	}()
}

// peerGone reports a lost connection to everything that depended on it:
// links get exit signals with reason noconnection, monitors get Down,
// MonitorNode watchers get NodeDown, pending spawns fail, the registry drops
// the node's names.
func (n *Node) peerGone(pe *peer) {
	if !pe.upFlag.Load() {
		return
	}
	for _, p := range n.procs.snapshot() {
		var links []PID
		p.mu.Lock()
		if r := p.rel; r != nil {
			for pid := range r.links {
				if pe.owns(pid) {
					links = append(links, pid)
				}
			}
			for ref, target := range r.watching {
				if pe.owns(target) {
					delete(r.watching, ref)
					// Under the lock, like handleDown.
					p.mb.Push(Down{Ref: ref, PID: target, Reason: NoConnection})
				}
			}
			for ref, watcher := range r.monitors {
				if pe.owns(watcher) {
					delete(r.monitors, ref)
				}
			}
			// A map keeps its largest size after deletes: a peer that
			// held many monitors would leave that memory in the process
			// until it exits. Emptied maps go (a later add makes a new one).
			if len(r.watching) == 0 {
				r.watching = nil
			}
			if len(r.monitors) == 0 {
				r.monitors = nil
			}
		}
		p.mu.Unlock()
		for _, pid := range links {
			n.exitSignal(pid, p.pid, NoConnection, true)
		}
	}
	n.nodeMonMu.Lock()
	watchers := n.nodeMons[pe.name]
	delete(n.nodeMons, pe.name)
	n.nodeMonMu.Unlock()
	for _, w := range watchers {
		if p := n.local(w); p != nil {
			p.mb.Push(NodeDown{Node: pe.name, Reason: pe.why})
		}
	}
}
