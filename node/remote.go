package node

// The remote side of processes: what happens when a send, link, monitor,
// exit or spawn names a process of another node, and when a peer goes.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/loop"
)

// sendRemote encodes msg into *scratch (the caller's buffer, kept for its
// next send) and queues it on pe's connection; a message too large for one
// item goes as fragments. pe is the connection to to.Node.
func (n *Node) sendRemote(pe *peer, scratch *[]byte, from uint64, to PID, msg any) error {
	if to.Incarnation != pe.incarnation {
		return nil // a process of an earlier run of that node: long gone
	}
	item, err := codec.AppendMessage((*scratch)[:0], to.ID, from, msg)
	if cap(item) <= maxKeptScratch {
		*scratch = item[:0]
	} // else: a large message's buffer is not kept (an idle process stays small)
	if err != nil {
		return fmt.Errorf("send to %v: %w", to, err)
	}
	if pe.features&codec.FeatureFragments != 0 && len(item) > n.fragmentAbove {
		if err := pe.sendFragmented(item, n.fragmentAbove); err != nil {
			return fmt.Errorf("send to %v: %w", to, err)
		}
		// Counted here: the drain counts the batched messages only.
		pe.stats.msgsOut.Add(1)
		pe.stats.bytesOut.Add(uint64(len(item)))
		return nil
	}
	if err := pe.conn.Enqueue(context.Background(), item); err != nil {
		if errors.Is(err, loop.ErrClosed) {
			err = fmt.Errorf("%s: %w: %w", pe.name, ErrNotConnected, err)
		}
		return fmt.Errorf("send to %v: %w", to, err)
	}
	return nil
}

// maxKeptScratch: a sender's encoding buffer is kept between sends up to
// this size (a process keeps its own; see Process.Send).
const maxKeptScratch = 1 << 10

// sendFragmented queues a large message item as fragments, one queue item
// each, so other senders' items interleave with them on the wire.
func (pe *peer) sendFragmented(item []byte, size int) error {
	var f codec.Fragmenter
	if err := f.Reset(pe.fragID.Add(1), item, size); err != nil {
		return err
	}
	bp := getBuf()
	defer func() { putBuf(bp, (*bp)[:0]) }()
	for f.More() {
		frag := f.Next((*bp)[:0])
		*bp = frag[:0]
		if err := pe.sendMessage(frag); err != nil {
			return err
		}
	}
	return nil
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

// maxControlFrame bounds the control frames this node builds (spawn
// requests, exit and down reasons), well under the peer's frame limit.
const maxControlFrame = 1 << 20

// maxReason bounds an exit reason on the wire; a larger one travels as the
// start of its text.
const maxReason = 64 << 10

// wireReason makes an exit reason encodable and bounded: errors travel as
// their text, anything unencodable or too large as (the start of) its text.
func wireReason(reason any) any {
	switch r := reason.(type) {
	case error:
		return truncate(r.Error())
	case nil, codec.Atom, bool, int, int64, uint64, float64:
		return reason
	case string:
		return truncate(r)
	}
	b, err := codec.AppendTerm(nil, reason)
	if err != nil || len(b) > maxReason {
		return truncate(fmt.Sprint(reason))
	}
	return reason
}

func truncate(s string) string {
	if len(s) > maxReason {
		return s[:maxReason]
	}
	return s
}

// linkRemote links local p with pid on another node.
func (n *Node) linkRemote(p *Process, pid PID) error {
	if !p.addLink(pid) {
		return ErrExited
	}
	pe, err := n.peerFor(pid.Node)
	if err != nil {
		n.exitSignal(pid, p.pid, NoConnection, true)
		return nil
	}
	if pid.Incarnation != pe.incarnation {
		n.exitSignal(pid, p.pid, NoProc, true)
		return nil
	}
	pe.control(func(b []byte) ([]byte, error) {
		l := codec.Link{From: p.pid, To: pid}
		return l.Append(b, codec.KindLink)
	})
	return nil
}

// remoteLink handles a peer's process linking to a local one.
func (n *Node) remoteLink(pe *peer, from, to PID) {
	if !pe.owns(from) {
		return
	}
	if t := n.local(to); t != nil && t.addLink(from) {
		return
	}
	pe.control(func(b []byte) ([]byte, error) {
		x := codec.Exit{From: to, To: from, Reason: NoProc, Link: true}
		return x.Append(b)
	})
}

func (n *Node) remoteUnlink(pe *peer, from, to PID) {
	if !pe.owns(from) {
		return
	}
	if t := n.local(to); t != nil {
		t.mu.Lock()
		if t.rel != nil {
			delete(t.rel.links, from)
		}
		t.mu.Unlock()
	}
}

// monitorRemote makes local p monitor pid on another node under ref.
func (n *Node) monitorRemote(p *Process, ref Ref, pid PID) {
	if !p.addWatching(ref, pid) {
		return
	}
	pe, err := n.peerFor(pid.Node)
	reason := any(nil)
	switch {
	case err != nil:
		reason = NoConnection
	case pid.Incarnation != pe.incarnation:
		reason = NoProc
	}
	if reason != nil {
		p.mu.Lock()
		if p.rel != nil {
			delete(p.rel.watching, ref)
		}
		p.mu.Unlock()
		p.mb.Push(Down{Ref: ref, PID: pid, Reason: reason})
		return
	}
	pe.control(func(b []byte) ([]byte, error) {
		m := codec.Monitor{From: p.pid, To: pid, Ref: ref}
		return m.Append(b, codec.KindMonitor)
	})
}

// remoteMonitor handles a peer's process monitoring a local one. The ref
// must be one the peer made, so no peer can touch another node's monitors.
func (n *Node) remoteMonitor(pe *peer, from, to PID, ref Ref) {
	if !pe.owns(from) || !pe.ownsRef(ref) {
		return
	}
	if t := n.local(to); t != nil && t.addMonitor(ref, from) {
		return
	}
	pe.control(func(b []byte) ([]byte, error) {
		d := codec.Down{Ref: ref, Watcher: from, PID: to, Reason: NoProc}
		return d.Append(b)
	})
}

func (n *Node) remoteDemonitor(pe *peer, from, to PID, ref Ref) {
	if !pe.owns(from) || !pe.ownsRef(ref) {
		return
	}
	if t := n.local(to); t != nil {
		t.removeMonitor(ref)
	}
}

// remoteDown handles the exit of a remote process a local one monitored.
func (n *Node) remoteDown(pe *peer, d *codec.Down) {
	if !pe.owns(d.PID) {
		return
	}
	w := n.local(d.Watcher)
	if w == nil {
		return
	}
	w.mu.Lock()
	target, ok := w.rel.watchingRef(d.Ref)
	ok = ok && target == d.PID // a peer reports only on the monitor it holds
	if ok {
		delete(w.rel.watching, d.Ref)
	}
	w.mu.Unlock()
	if ok {
		w.mb.Push(Down{Ref: d.Ref, PID: d.PID, Reason: d.Reason})
	}
}

// signalRemote sends an exit signal to a process of another node.
func (n *Node) signalRemote(from, to PID, reason any, viaLink bool) {
	pe := n.peerIfUp(to.Node)
	if pe == nil || pe.incarnation != to.Incarnation {
		return // the connection is gone: the other side sees noconnection
	}
	pe.control(func(b []byte) ([]byte, error) {
		x := codec.Exit{From: from, To: to, Reason: wireReason(reason), Link: viaLink}
		return x.Append(b)
	})
}

// downRemote tells a remote watcher that a local process exited.
func (n *Node) downRemote(ref Ref, watcher, pid PID, reason any) {
	pe := n.peerIfUp(watcher.Node)
	if pe == nil || pe.incarnation != watcher.Incarnation {
		return
	}
	pe.control(func(b []byte) ([]byte, error) {
		d := codec.Down{Ref: ref, Watcher: watcher, PID: pid, Reason: wireReason(reason)}
		return d.Append(b)
	})
}

// spawnResult is a remote spawn's outcome.
type spawnResult struct {
	pid PID
	err error
}

// pendingSpawn is a spawn request waiting for its reply.
type pendingSpawn struct {
	peer   *peer
	parent *Process // linked on success when link is set
	link   bool
	reply  chan spawnResult // capacity 1
}

// spawnRemote asks node to start actor, waiting for the reply.
func (n *Node) spawnRemote(parent *Process, node, actor string, args []any, link bool) (PID, error) {
	pe, err := n.peerFor(node)
	if err != nil {
		return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, err)
	}
	req := n.nextReq.Add(1)
	ps := &pendingSpawn{peer: pe, parent: parent, link: link, reply: make(chan spawnResult, 1)}
	n.spawnsMu.Lock()
	n.spawns[req] = ps
	n.spawnsMu.Unlock()
	defer func() {
		n.spawnsMu.Lock()
		delete(n.spawns, req)
		n.spawnsMu.Unlock()
	}()
	var from PID
	if parent != nil {
		from = parent.pid
	}
	bp := getBuf()
	sr := codec.SpawnRequest{Req: req, From: from, Actor: actor, Args: args, Link: link && parent != nil}
	item, err := sr.Append((*bp)[:0])
	if err == nil && len(item) > maxControlFrame {
		err = fmt.Errorf("%w: spawn arguments encode to %d bytes, over %d", codec.ErrLimit, len(item), maxControlFrame)
	}
	if err == nil {
		err = pe.sendMessage(item)
	}
	putBuf(bp, item)
	if err != nil {
		return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, err)
	}
	timer := time.NewTimer(n.opts.spawnTimeout)
	defer timer.Stop()
	select {
	case r := <-ps.reply:
		if r.err != nil {
			return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, r.err)
		}
		return r.pid, nil
	case <-pe.down:
		// A reply handled before the connection ended is in ps.reply by
		// now (frames are handled before OnClose): it wins.
		select {
		case r := <-ps.reply:
			if r.err != nil {
				return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, r.err)
			}
			return r.pid, nil
		default:
		}
		return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, ErrNotConnected)
	case <-timer.C:
		return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, context.DeadlineExceeded)
	}
}

// remoteSpawn handles a spawn request. Runs on the loop: the new process is
// made (and linked) and the reply queued before its goroutine starts, so the
// reply always precedes anything the process sends or its exit.
func (n *Node) remoteSpawn(pe *peer, r *codec.SpawnRequest) {
	reply := codec.SpawnReply{Req: r.Req}
	var start *Process
	fn, ok := n.actor(r.Actor)
	switch {
	case !ok:
		reply.Code, reply.Err = codec.SpawnUnknownActor, "no actor "+r.Actor
	case r.Link && !pe.owns(r.From):
		reply.Code, reply.Err = codec.SpawnFailed, "link to a process of another node"
	default:
		args := r.Args
		var link PID
		if r.Link {
			link = r.From
		}
		p, err := n.prepareSpawn(func(p *Process) error { return fn(p, args) }, link)
		if err != nil {
			reply.Code, reply.Err = codec.SpawnFailed, err.Error()
		} else {
			reply.PID, start = p.pid, p
		}
	}
	pe.control(reply.Append)
	if start != nil {
		start.start()
	}
}

// spawnReplied completes a pending remote spawn. Runs on the loop, in frame
// order: a link asked for is recorded here, before any exit signal of the new
// process (which follows the reply on the wire) is handled.
func (n *Node) spawnReplied(pe *peer, r *codec.SpawnReply) {
	n.spawnsMu.Lock()
	ps := n.spawns[r.Req]
	if ps != nil && ps.peer == pe { // only the node asked may answer
		delete(n.spawns, r.Req)
	} else {
		ps = nil
	}
	n.spawnsMu.Unlock()
	if ps == nil {
		if r.Code == codec.SpawnOK && pe.owns(r.PID) {
			// The caller gave up: nobody will ever know this process.
			// Stop it rather than leave it orphaned.
			n.signalRemote(PID{}, r.PID, Kill, false)
		}
		return
	}
	var res spawnResult
	switch r.Code {
	case codec.SpawnOK:
		if !pe.owns(r.PID) {
			res.err = fmt.Errorf("%w: spawn reply names %v", codec.ErrCorrupt, r.PID)
			break
		}
		res.pid = r.PID
		if ps.link && !ps.parent.addLink(r.PID) {
			n.signalRemote(ps.parent.pid, r.PID, NoProc, true) // the parent died meanwhile
		}
	case codec.SpawnUnknownActor:
		res.err = fmt.Errorf("%w: %s", ErrUnknownActor, r.Err)
	default:
		res.err = fmt.Errorf("node: remote spawn failed: %s", r.Err)
	}
	ps.reply <- res
}

// peerUp runs when a connection has started: gossip the node list and send
// the registry replica, so both sides converge on a full mesh.
func (n *Node) peerUp(pe *peer) {
	names := n.List()
	pe.control(func(b []byte) ([]byte, error) {
		x := codec.Nodes{Names: names}
		return x.Append(b)
	})
	// The snapshot must be the peer's first registry frame that counts:
	// taken and queued under the registry's lock, no broadcast can slip in
	// between (one queued before it carries what the snapshot holds, and
	// the peer ignores ops until it has merged).
	n.global.SnapshotTo(pe.sendRegistry)
	// Tell the peers we already had about the new one, so they connect.
	for _, other := range n.upPeers() {
		if other != pe {
			other.control(func(b []byte) ([]byte, error) {
				x := codec.Nodes{Names: []string{pe.name}}
				return x.Append(b)
			})
		}
	}
}

// maxGossipDials bounds the background connects one node-list frame can
// start: a peer's list is trusted to be a list of nodes, not to be small.
const maxGossipDials = 64

// learnNodes connects, in the background, to every gossiped node this node
// is not connected to (at most maxGossipDials per frame; later gossip and
// on-demand connects reach the rest).
func (n *Node) learnNodes(names []string) {
	started := 0
	for _, name := range names {
		if started == maxGossipDials {
			n.log.Warn("node list longer than the dial bound; rest left to later gossip", "names", len(names))
			return
		}
		nn, err := parseName(name)
		if err != nil || nn.String() != name || name == n.self {
			continue
		}
		n.peersMu.Lock()
		_, known := n.peers[name]
		_, dialling := n.dialing[name]
		n.peersMu.Unlock()
		if known || dialling || n.stopped.Load() {
			continue
		}
		started++
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			ctx, cancel := context.WithTimeout(n.life, n.opts.handshakeTimeout)
			defer cancel()
			if _, err := n.connect(ctx, name, nn.addr()); err != nil {
				n.log.Debug("mesh connect failed", "peer", name, "err", err)
			}
		}()
	}
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

// peerGone reports a lost connection to everything that depended on it:
// links get exit signals with reason noconnection, monitors get Down,
// MonitorNode watchers get NodeDown, pending spawns fail, the registry drops
// the node's names.
func (n *Node) peerGone(pe *peer) {
	if !pe.upFlag.Load() {
		return
	}
	gone := func(pid PID) bool { return pe.owns(pid) }
	for _, p := range n.procs.snapshot() {
		var links []PID
		var downs []Down
		p.mu.Lock()
		if r := p.rel; r != nil {
			for pid := range r.links {
				if gone(pid) {
					links = append(links, pid)
				}
			}
			for ref, target := range r.watching {
				if gone(target) {
					downs = append(downs, Down{Ref: ref, PID: target, Reason: NoConnection})
					delete(r.watching, ref)
				}
			}
			for ref, watcher := range r.monitors {
				if gone(watcher) {
					delete(r.monitors, ref)
				}
			}
		}
		p.mu.Unlock()
		for _, d := range downs {
			p.mb.Push(d)
		}
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
			p.mb.Push(NodeDown{Node: pe.name})
		}
	}
}

// MonitorNode makes this process receive [NodeDown] once when node
// disconnects; at once if it is not connected now. Each call is one monitor.
func (p *Process) MonitorNode(node string) error {
	nn, err := parseName(node)
	if err != nil {
		return err
	}
	node = nn.String()
	n := p.node
	if node == n.self {
		return nil // this node's own end is the process's end too
	}
	n.peersMu.Lock()
	n.nodeMonMu.Lock()
	pe := n.peers[node]
	up := pe != nil && pe.isUp()
	if up {
		n.nodeMons[node] = append(n.nodeMons[node], p.pid)
	}
	n.nodeMonMu.Unlock()
	n.peersMu.Unlock()
	if !up {
		p.mb.Push(NodeDown{Node: node})
	}
	return nil
}
