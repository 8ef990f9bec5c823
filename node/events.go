package node

// Membership events: why a peer left, MonitorNodes, Disconnect, and the
// goodbye a node says before it closes a link on purpose.
//
// A peer's down reason is decided once, by the first of: the peer's Goodbye
// (shutdown or disconnect), this node's Disconnect (disconnect) or Stop
// (shutdown), the tick sweep (net_tick_timeout); anything else is
// connection_closed. OnClose reads it; it is set before the connection is
// closed, so it is always there when OnClose runs.
//
// MonitorNodes watchers hear NodeUp when a connection starts (attach) and
// NodeDown when it ends (OnClose, before the peer leaves the table): a newer
// connection with the same node can only start after that, so a watcher
// sees the events of one node in order, a NodeDown between two NodeUps.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
)

// Reasons a [NodeDown] gives (besides [Shutdown], a graceful Stop of the
// other node, or of this one).
const (
	// ConnectionClosed: the connection was lost (the other node crashed,
	// was killed, or the network closed it).
	ConnectionClosed = codec.Atom("connection_closed")
	// NetTickTimeout: the other node stayed silent past the tick timeout
	// (a partition, a cut cable, a frozen process).
	NetTickTimeout = codec.Atom("net_tick_timeout")
	// Disconnected: [Node.Disconnect] on either node closed the connection.
	Disconnected = codec.Atom("disconnect")
)

// NodeUp is delivered to a process that called [Process.MonitorNodes] when
// a connection to another node starts.
type NodeUp struct {
	Node string
}

var errDisconnected = errors.New("node: disconnected")

// setDownReason records why the peer is going, unless a reason is set.
func (pe *peer) setDownReason(a codec.Atom) { pe.downReason.CompareAndSwap(nil, &a) }

// downWhy is the reason OnClose reports for a connection that ended with
// err.
func (pe *peer) downWhy(err error) codec.Atom {
	if a := pe.downReason.Load(); a != nil {
		return *a
	}
	switch {
	case errors.Is(err, errTickTimeout):
		return NetTickTimeout
	case pe.n.stopped.Load():
		return Shutdown
	}
	return ConnectionClosed
}

// sayGoodbye tells the peer why this node closes the link (the last frame
// it queues there), and records the reason for this side's NodeDown.
func (pe *peer) sayGoodbye(reason codec.Atom) {
	pe.setDownReason(reason)
	pe.control(&wire.Goodbye{Reason: reason})
}

// handleGoodbye records the reason a peer gave for closing the link. Only
// the two graceful reasons count; anything else is a lost connection.
func (n *Node) handleGoodbye(pe *peer, g *wire.Goodbye) {
	switch g.Reason {
	case Shutdown, Disconnected:
		pe.setDownReason(g.Reason)
	}
}

// Disconnect closes the connection to the node named name, as Erlang's
// disconnect_node: both sides see [NodeDown] with reason disconnect
// (linked and monitoring processes see noconnection), and neither redials
// the other unless it is one of its seeds or discovered nodes, which are
// dialled again after the first backoff step. It returns once the
// connection's cleanup is done (bounded by the handshake timeout); a
// link still starting (counted up a moment before its connection starts)
// is waited for first, within the same bound, since a close before the
// start would send no goodbye. Errors: [ErrBadName], [ErrNotConnected] if
// the node is not connected. Any goroutine but a loop's callbacks (as
// for loop.Conn.Shutdown: the start it waits for needs the loop):
// processes and the caller's own goroutines.
func (n *Node) Disconnect(name string) error {
	nn, err := parseName(name)
	if err != nil {
		return err
	}
	name = nn.String()
	pe := n.peerIfUp(name)
	if pe == nil {
		return fmt.Errorf("disconnect %s: %w", name, ErrNotConnected)
	}
	n.dials.forget(name)
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.handshakeTimeout)
	defer cancel()
	if h := testHookDisconnectWaits.Load(); h != nil && !isClosed(pe.started) {
		(*h)(pe)
	}
	if !pe.closeWithGoodbye(ctx, Disconnected, errDisconnected) && ctx.Err() != nil {
		// Not started within the bound: cut, with no goodbye.
		_ = pe.conn.Shutdown(ctx, errDisconnected)
	}
	select {
	case <-pe.down:
	case <-ctx.Done():
	}
	return nil
}

// testHookDisconnectWaits, when a test sets it, runs in Disconnect when
// it is about to wait for the start of a connection that is up but not
// started yet.
var testHookDisconnectWaits atomic.Pointer[func(*peer)]

// closeWithGoodbye closes pe's link gracefully, the close Stop and
// Disconnect make: the companion's data first, then a goodbye saying
// reason (so the other node reports it too, not connection_closed),
// then the connection's Shutdown with err, all within ctx. It waits
// first for the connection's start: a peer counts as up a little before
// its connection starts (attach), and the other node may count it up,
// and send on it, sooner still, while a Shutdown before Start is a
// Close (the goodbye never goes out, and a socket closed with the peer's
// bytes unread sends a reset, which the peer can see before anything
// this node wrote). It reports false, having closed nothing, when the
// link went down or lapsed, or ctx ended, before its start, or it is no
// longer up then. Not on a loop's callbacks (the start needs the loop).
func (pe *peer) closeWithGoodbye(ctx context.Context, reason codec.Atom, err error) bool {
	select {
	case <-pe.started:
	case <-pe.down:
		return false
	case <-pe.lapsed:
		return false
	case <-ctx.Done():
		return false
	}
	if !pe.isUp() {
		return false
	}
	pe.drainCompanion(ctx)
	pe.sayGoodbye(reason)
	_ = pe.conn.Shutdown(ctx, err)
	return true
}

// MonitorNodes makes this process receive [NodeUp] for every connection to
// another node that starts and [NodeDown] (with its Reason) for every one
// that ends, until [Process.DemonitorNodes] or the process's end. Calling it
// again changes nothing. Safe from the process's own goroutine.
func (p *Process) MonitorNodes() error {
	if !p.isAlive() {
		return ErrExited
	}
	n := p.node
	n.nodeMonMu.Lock()
	if n.allNodeMons == nil {
		n.allNodeMons = make(map[PID]struct{})
	}
	n.allNodeMons[p.pid] = struct{}{}
	n.nodeMonMu.Unlock()
	return nil
}

// DemonitorNodes ends [Process.MonitorNodes]; events already queued stay
// queued. Safe from the process's own goroutine.
func (p *Process) DemonitorNodes() {
	n := p.node
	n.nodeMonMu.Lock()
	delete(n.allNodeMons, p.pid)
	n.nodeMonMu.Unlock()
}

// nodeEvent delivers a NodeUp or NodeDown to every MonitorNodes watcher,
// dropping watchers that have exited. Never blocks (mailbox pushes).
func (n *Node) nodeEvent(ev any) {
	n.nodeMonMu.Lock()
	defer n.nodeMonMu.Unlock()
	for pid := range n.allNodeMons {
		p := n.local(pid)
		if p == nil || !p.mb.Push(ev) {
			delete(n.allNodeMons, pid)
		}
	}
}
