package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
)

// Companion connections: a second connection per link for bulk data.
//
// On one connection a small message queued behind a large one's fragments
// waits for them in the kernel's socket queues, whatever order the lanes
// (lanes.go) wrote them in: the lanes keep the kernel's queues short while
// bulk data flows, and short queues cost the stream half its bandwidth. So
// a node that sends a large message to a peer first dials a companion
// connection to it (the same TLS and cookie handshake, with
// wire.RoleCompanion in its hello) and puts its large messages' fragments
// there; the link's own connection keeps carrying everything else, past
// them. The companion keeps the kernel's socket queues (autotuned) and is
// served by event loops that serve no other kind of connection
// (loop.Conn.SetBulkOnly). Each node dials its own companion for the data
// it sends; its peer only acknowledges on it. Until the companion is up
// (and on a link whose peer takes none, wire.FeatureCompanion) large
// messages go on the link's bulk lane, as before.
//
// Order. Two connections are two byte streams: what a process sent first
// on one can be handled after what it sent next on the other. Per-pair
// FIFO is kept by the sender, per process, as the lanes keep it on one
// connection, with "handled by the peer" where the lanes have "drained":
//
//   - Once a process has put an item on the companion, everything it sends
//     on the link after it (messages to a PID or a name, replies, links,
//     exits, monitors, its Down) goes on the companion too, until the peer
//     has handled its last one there. The peer counts the frames it has
//     handled on the companion and sends the count back on it (an Ack at
//     the end of a read that finished an item: a message, the last
//     fragment of one, or a control frame; not after the inner fragments
//     of a large message, which no sender waits for); every item on a
//     companion is one frame (its drain never merges two), so the count is
//     a ticket (companion.BulkPassed).
//   - A process that moves onto the companion first makes sure the peer
//     has handled what it sent on the link's own connection: it sends a
//     Sync there, behind its own items, and waits for the Ack (one round
//     trip, once per run of large messages; a process that keeps its
//     stream going stays on the companion).
//
// A process's items thus reach the peer in the order it sent them, and the
// receiver never holds one back. Items of no process (ticks, the registry)
// always take the link's own connection, and so do two kinds the rule
// cannot follow onto the companion: a spawn request (the peer answers and
// starts the process on the link's connection; the request waits until
// its parent's companion items are acknowledged, awaitAcked), and the
// large messages of senders outside any process, whose shared ID 0 cannot
// keep each goroutine's order apart (they use the link's bulk lane).
//
// Lifetime. A companion lives and dies with its link: the link's end closes
// it (and the link's cleanup waits for its last handler); a companion that
// ends before its link cuts the link, at either end (messages may have
// been lost, and every watcher must hear so, as for any link; see OnClose
// for the peer's close). A graceful end of the link (Stop, Disconnect)
// waits for the peer's acknowledgement of what was queued on the companion
// before its goodbye. After a failed dial, large messages go on the bulk
// lane, and a large message past a backoff dials again
// (companionRetryAfter). A companion carries only process items: a
// frame of any other kind on it is a protocol error.

// companionDial is the dialArg of a companion's dial: the name of the
// node dialled, whose link the companion joins.
type companionDial string

// companion is one companion connection of a link, at either end: out
// (this node dialled it and sends its bulk data on it; Acks come back) or
// in (the peer dialled it; this node handles its frames and acknowledges).
type companion struct {
	pe   *peer
	conn link
	out  bool

	// Out: what the peer has acknowledged, and which senders wait for it.
	acked atomic.Uint64 // frames the peer has handled (its last Ack)
	order laneOrder     // senders with items on it the peer has not handled
	// last is the highest ticket noted of an item that ends something
	// (a message's last fragment, or an item of its own): the ticket the
	// peer's next Ack reaches once it has handled it. An inner fragment
	// raises order, not last: no Ack follows it alone.
	last atomic.Uint64
	// acks is closed, and cleared, when acked grows: who waits for an Ack
	// takes it (ackWait), then looks at acked again.
	acks   atomic.Pointer[chan struct{}]
	acksIn atomic.Uint64 // Acks read (tests count them)

	closed chan struct{} // closed by OnClose: no handler of it runs after

	reader *wire.FrameReader // owned by its loop

	// In: deliveries, owned by its loop.
	rx               // the companion's deliveries (handle.go)
	handled uint64   // frames handled so far
	ended   uint64   // handled when an item last ended (all but a message's inner fragments)
	ackSent uint64   // handled at the last Ack
	ack     [24]byte // the Ack's encoding buffer
}

// BulkPassed reports whether the peer has handled the companion item of
// ticket t and every one before it. Any goroutine.
func (c *companion) BulkPassed(t loop.BulkTicket) bool { return c.acked.Load() >= uint64(t) }

// note records t as from's last item on the companion; whole is false
// for a large message's fragments but the last.
func (c *companion) note(from uint64, t loop.BulkTicket, whole bool) {
	if whole {
		for {
			l := c.last.Load()
			if uint64(t) <= l || c.last.CompareAndSwap(l, uint64(t)) {
				break
			}
		}
	}
	c.order.note(c, from, t)
}

// route is where an item goes: a connection of the link and its lane.
type route struct {
	l link
	c *companion // the companion l is, if it is one
	o *laneOrder // nil: l's urgent lane
}

// smallRoute returns the lane of from's next small item or control frame:
// behind from's unacknowledged companion items, or behind its undrained
// bulk items on the link's connection, else the urgent lane. Never waits.
func (pe *peer) smallRoute(from uint64) route {
	if c := pe.out.Load(); c != nil && c.order.behind(c, from) {
		return route{l: c.conn, c: c, o: &c.order}
	}
	return pe.linkRoute(from)
}

// linkRoute is smallRoute on the link's own connection alone: behind
// from's undrained bulk items there, else the urgent lane.
func (pe *peer) linkRoute(from uint64) route {
	// pending first: pe.conn as a passer is an interface conversion (an
	// itab lookup, 20-150 instructions a send under callgrind), made only
	// when some sender has bulk items on the link.
	if pe.order.pending() && pe.order.behind(pe.conn, from) {
		return route{l: pe.conn, o: &pe.order}
	}
	return route{l: pe.conn}
}

// urgent reports whether from's next small item goes on the urgent lane
// of the link's own connection (smallRoute's last case). Any goroutine.
func (pe *peer) urgent(from uint64) bool { return pe.smallRoute(from).o == nil }

// bulkRoute returns the lane of from's next large message (all of its
// fragments): the companion once it is up, else the link's bulk lane. The
// first large message starts the companion's dial. A process moving onto
// the companion waits until the peer has handled what it sent on the
// link's connection (syncMain); if the link ends meanwhile, the link's
// bulk lane is returned, whose enqueue then reports the end.
//
// Sends from outside any process share the sender ID 0 across goroutines,
// whose own order the companion's per-sender rule cannot keep: theirs stay
// on the link's bulk lane, whose queue keeps every goroutine's order.
func (pe *peer) bulkRoute(from uint64) route {
	c := pe.out.Load()
	if c == nil || from == 0 {
		pe.wantCompanion()
		return route{l: pe.conn, o: &pe.order}
	}
	if !c.order.behind(c, from) && pe.syncMain(from) != nil {
		return route{l: pe.conn, o: &pe.order}
	}
	return route{l: c.conn, c: c, o: &c.order}
}

// sendOn queues item of from on r, waiting while its lane is full; whole
// is false for a large message's fragments but the last.
func (pe *peer) sendOn(r route, from uint64, item []byte, whole bool) error {
	if r.o == nil {
		if err := r.l.Enqueue(context.Background(), item); err != nil {
			return newPeerError("", err)
		}
		return nil
	}
	t, err := r.l.EnqueueBulk(context.Background(), item)
	if err != nil {
		return newPeerError("", err)
	}
	r.noted(pe, from, t, whole)
	return nil
}

// sendOnNoWait queues item of from on r without waiting (the lanes'
// NoWait forms: past their hard limits they close the connection).
func (pe *peer) sendOnNoWait(r route, from uint64, item []byte) error {
	if r.o == nil {
		return r.l.EnqueueNoWait(item)
	}
	t, err := r.l.EnqueueBulkNoWait(item)
	if err == nil {
		r.noted(pe, from, t, true)
	}
	return err
}

// noted records ticket t of from's item on r's bulk lane; whole is false
// for a large message's fragments but the last.
func (r route) noted(pe *peer, from uint64, t loop.BulkTicket, whole bool) {
	if r.c != nil {
		r.c.note(from, t, whole)
	} else {
		pe.order.note(pe.conn, from, t)
	}
}

// wantCompanion starts the dial of this node's companion to the peer when
// the peer takes one and none is up or being dialled: once per link, or
// again after a failed dial, at a large message at least
// companionRetryAfter later.
func (pe *peer) wantCompanion() {
	if pe.features&wire.FeatureCompanion == 0 {
		return
	}
	n := pe.n
	pe.compMu.Lock()
	start := !pe.compDialed && !pe.compClosed && !pe.closing.Load() && !time.Now().Before(pe.compRetry)
	if start {
		pe.compDialed = true
	}
	pe.compMu.Unlock()
	if !start {
		return
	}
	// Stop waits for n.bg once it has set stopped under peersMu: a dial
	// counted before that is waited for, none starts after.
	n.peersMu.Lock()
	stopped := n.stopped.Load()
	if !stopped {
		n.bg.Add(1)
	}
	n.peersMu.Unlock()
	if stopped {
		return // the dial never starts; the link ends with the node
	}
	go pe.dialCompanion()
}

// dialCompanion dials the companion, and starts it unless the link ended
// meanwhile. On its own goroutine (wantCompanion).
func (pe *peer) dialCompanion() {
	n := pe.n
	defer n.bg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.handshakeTimeout)
	defer cancel()
	var l link
	var info *peerInfo
	nn, err := parseName(pe.name)
	if err == nil {
		l, info, err = n.links.dialCompanion(ctx, nn.addr(), pe.name)
	}
	if err == nil && info.incarnation != pe.incarnation {
		closeUnstarted(l, errCompanionPeer)
		l, err = nil, errCompanionPeer
	}
	var c *companion
	if err == nil {
		c = &companion{pe: pe, conn: l, out: true, reader: wire.NewFrameReader(0, pe.features), closed: make(chan struct{})}
		l.SetHandler(c)
		l.SetDrain(pe.drainFunc(1, false)) // one frame an item: Acks count frames
		if bo, ok := l.(bulkOnly); ok {
			bo.SetBulkOnly()
		}
	}
	pe.compMu.Lock()
	up := err == nil && !pe.compClosed
	if up {
		pe.out.Store(c)
	}
	pe.compMu.Unlock()
	switch {
	case up:
		n.log.Debug("companion connection up", "peer", pe.name)
		l.Start()
	case err == nil: // the link ended meanwhile
		closeUnstarted(l, errLinkEnded)
	default:
		pe.compMu.Lock()
		pe.compFails++
		after := companionRetryAfter(pe.compFails)
		pe.compRetry = time.Now().Add(after)
		pe.compDialed = false
		pe.compMu.Unlock()
		n.log.Info("no companion connection: large messages share the link's connection", "peer", pe.name, "err", err, "retry_after", after)
	}
}

// companionRetryAfter is how long a link waits, after the failed dial of
// its companion numbered fails (from 1), before it dials again (at its
// next large message): 100 ms doubled each time, at most 30 s. A failure
// is most likely a race at the link's start (the peer not counting the
// link up yet when the companion's hello came) or a peer at its
// admission limits; meanwhile large messages take the link's bulk lane.
func companionRetryAfter(fails int) time.Duration {
	const first, most = 100 * time.Millisecond, 30 * time.Second
	if fails < 1 {
		return 0
	}
	if fails > 10 { // first<<9 is over most already
		return most
	}
	return min(first<<(fails-1), most)
}

// bulkOnly is a link that can be told it carries bulk data only
// (loop.Conn.SetBulkOnly: the kernel's socket queues, an event loop of its
// own).
type bulkOnly interface{ SetBulkOnly() }

var (
	errCompanionPeer = errors.New("node: companion connection reached another run of the peer")
	errLinkEnded     = errors.New("node: the link ended")
	errCompanionLost = errors.New("node: companion connection lost with data not yet acknowledged")
)

// admitCompanion decides, as the acceptor, on an authenticated companion
// connection from info.name: taken for an up link with the same run of
// that node that negotiated companions and has none from it yet. The
// peer may dial it as soon as its end of the link is up, before this
// end's is: the decision waits for that, bounded by ctx (the handshake's
// deadline). On the handshake's goroutine.
func (n *Node) admitCompanion(ctx context.Context, info *peerInfo) (*peer, uint64) {
	n.peersMu.Lock()
	pe := n.peers[info.name]
	n.peersMu.Unlock()
	if pe == nil || pe.incarnation != info.incarnation || pe.features&wire.FeatureCompanion == 0 {
		return nil, 0
	}
	if pe.waitUp(ctx) != nil || !pe.isUp() {
		return nil, 0
	}
	pe.compMu.Lock()
	defer pe.compMu.Unlock()
	if pe.in != nil || pe.inAdmitted != 0 || pe.compClosed {
		return nil, 0
	}
	// One per link: the slot is taken until this companion ends, or
	// given back if it never attaches (its handshake failed, or the engine
	// dropped it after the hook): then the lapse frees it.
	pe.admitSeq++
	id := pe.admitSeq
	pe.inAdmitted = id
	time.AfterFunc(2*n.opts.handshakeTimeout, func() { pe.unadmitCompanion(id) })
	return pe, id
}

// unadmitCompanion gives back the slot of admission id if no companion
// attached with it.
func (pe *peer) unadmitCompanion(id uint64) {
	pe.compMu.Lock()
	if pe.inAdmitted == id && pe.in == nil {
		pe.inAdmitted = 0
	}
	pe.compMu.Unlock()
}

// attachCompanion starts the peer's companion connection l (admitted by
// admitCompanion), unless the link has ended or has one meanwhile.
func (pe *peer) attachCompanion(l link) {
	c := &companion{pe: pe, conn: l, reader: wire.NewFrameReader(0, pe.features), closed: make(chan struct{})}
	c.rx = rx{pe: pe, reasm: pe.quota.NewReassembler()} // the link's limits, not a second set
	l.SetHandler(c)
	l.SetDrain(pe.drainFunc(batchFrame, false))
	if bo, ok := l.(bulkOnly); ok {
		bo.SetBulkOnly()
	}
	pe.compMu.Lock()
	ok := pe.in == nil && !pe.compClosed
	if ok {
		pe.in = c
	} else if pe.in == nil {
		pe.inAdmitted = 0
	}
	pe.compMu.Unlock()
	if !ok {
		closeUnstarted(l, errLinkEnded)
		return
	}
	l.Start()
}

// closeCompanions ends the link's companions, both ways; the link has
// ended. It returns what closes once the peer's companion has run its
// last handler (nil: it has none): the link's cleanup (peerGone) waits for
// it, so that nothing that companion carried (a link, a monitor, a
// message) is handled after the cleanup, as nothing on the link's own
// connection is. On the link's OnClose.
func (pe *peer) closeCompanions() <-chan struct{} {
	pe.compMu.Lock()
	pe.compClosed = true
	out, in := pe.out.Swap(nil), pe.in
	pe.compMu.Unlock()
	if out != nil {
		_ = out.conn.Close(errLinkEnded)
	}
	if in == nil {
		return nil
	}
	_ = in.conn.Close(errLinkEnded)
	return in.closed
}

// waitCompanionHandlers waits until done (closeCompanions') closes,
// bounded: a companion's loop that does not get to its close within
// the bound is logged and not waited for longer. On the cleanup's
// goroutine.
func (pe *peer) waitCompanionHandlers(done <-chan struct{}) {
	if done == nil {
		return
	}
	t := time.NewTimer(2 * pe.n.opts.handshakeTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		pe.n.log.Warn("the peer's companion connection did not close in time; cleaning the link up anyway", "peer", pe.name)
	}
}

// OnData handles a companion's input: on an outgoing one the peer's Acks,
// on an incoming one the peer's process items, acknowledged once handled.
// On the companion's loop.
//
// Input here is no sign of life of the link's own connection (lastSeen is
// that connection's alone, tick.go): a sender whose traffic all goes on
// its companion ticks on the link's connection as on an idle one
// (linkMsgsOut), so a stalled connection beside a healthy companion is
// still found silent and cut.
func (c *companion) OnData(_ *loop.Conn, b []byte) (int, error) {
	if c.out {
		return c.onAcks(b)
	}
	pe := c.pe
	used := 0
	defer func() {
		c.rx.endRead(used)
		// One Ack a read, and none for a read of inner fragments alone:
		// an Ack is a write(2) here and a wake-up of the sender's loop,
		// which per 64 KiB read cost a ninth of this node's CPU in a
		// stream of 1 MiB messages (docs/latency.md).
		if c.ended > c.ackSent {
			c.ackSent = c.handled
			if err := c.conn.EnqueueNoWait((&wire.Ack{Seq: c.handled}).Append(c.ack[:0])); err != nil {
				pe.n.log.Debug("companion ack not sent", "peer", pe.name, "err", err)
			}
		}
	}()
	for used < len(b) {
		f, k, err := c.reader.Next(b[used:])
		if errors.Is(err, wire.ErrNeedMore) {
			break
		}
		if err != nil {
			err = fmt.Errorf("node: companion from %s: %w", pe.name, err)
			_ = pe.conn.Close(err)
			return used, err
		}
		used += k
		c.handled++
		pe.stats.framesIn.Add(1)
		completed := c.reasm.Completed()
		if err := c.handleFrame(f); err != nil {
			pe.overLimit(err)
			err = fmt.Errorf("node: companion from %s: %w", pe.name, err)
			_ = pe.conn.Close(err) // the link, not only its companion
			return used, err
		}
		if f.Kind != wire.KindFragment || c.reasm.Completed() != completed {
			c.ended = c.handled // not an inner fragment
		}
	}
	return used, nil
}

// handleFrame acts on one frame of an incoming companion: messages through
// the companion's own reassembler, a process's control frames as on the
// link's connection (their handlers take the node's locks and answer on
// the link, pe.control).
func (c *companion) handleFrame(f wire.Frame) error {
	switch f.Kind {
	case wire.KindBatch, wire.KindFragment:
		err := c.reasm.Feed(f, c.deliver)
		c.flushRun()
		return err
	case wire.KindLink, wire.KindUnlink, wire.KindExit, wire.KindMonitor, wire.KindDemonitor, wire.KindDown:
		return c.pe.handleFrame(f)
	}
	return fmt.Errorf("%w: unexpected frame %v on a companion connection", codec.ErrCorrupt, f.Kind)
}

// onAcks reads the Acks on an outgoing companion. On its loop.
func (c *companion) onAcks(b []byte) (int, error) {
	used := 0
	for used < len(b) {
		f, k, err := c.reader.Next(b[used:])
		if errors.Is(err, wire.ErrNeedMore) {
			break
		}
		if err != nil {
			return used, fmt.Errorf("node: companion to %s: %w", c.pe.name, err)
		}
		used += k
		var a wire.Ack
		if f.Kind != wire.KindAck {
			return used, fmt.Errorf("%w: companion to %s: unexpected frame %v", codec.ErrCorrupt, c.pe.name, f.Kind)
		}
		if err := a.Decode(f.Payload, nil); err != nil {
			return used, fmt.Errorf("node: companion to %s: %w", c.pe.name, err)
		}
		// (A count above what was sent cannot be told from one of an item
		// whose ticket is not noted yet: the peer is trusted with it, as
		// with everything it sends.)
		c.acksIn.Add(1)
		if a.Seq > c.acked.Load() {
			c.acked.Store(a.Seq) // only this loop stores it
			if ch := c.acks.Swap(nil); ch != nil {
				close(*ch)
			}
		}
	}
	return used, nil
}

// OnClose runs once when a companion ends. An outgoing one that ends with
// items the peer has not acknowledged cuts the link: they are lost, and
// the link's end tells every watcher so. Else the link goes on without it.
//
// A companion's end cuts the link unless the link is ending already (its
// end closed the companion: errLinkEnded): items a sender was told were
// sent may be lost, and items queued but not yet acknowledged cannot be
// told from items that got through, so the link goes, as for any lost
// connection. Both ends apply the rule. One case waits: a companion that
// the peer closed (loop.ErrPeerClosed) is most often the peer's link
// ending (its Stop or Disconnect closes its companions while its goodbye
// is on its way on the link's connection), and the link's own end then
// tells why; so the link is cut only if it is still up after a handshake
// timeout (a reset of the companion alone, say); an incoming companion
// the peer closed before sending anything on it does not cut the link
// at all (the peer gave it up, and dials again). Meanwhile a dead
// outgoing companion stays the link's: sends that would go on it fail
// rather than overtake what it lost. On the companion's loop.
func (c *companion) OnClose(_ *loop.Conn, reason error) {
	defer close(c.closed)
	pe := c.pe
	if !c.out {
		pe.compMu.Lock()
		if pe.in == c {
			pe.in, pe.inAdmitted = nil, 0
		}
		pe.compMu.Unlock()
	}
	if c.acks.Load() != nil {
		if ch := c.acks.Swap(nil); ch != nil {
			close(*ch) // waiters look again, and find the link ending
		}
	}
	cut := fmt.Errorf("%w: %w", errCompanionLost, reason)
	switch {
	case errors.Is(reason, errLinkEnded):
	case errors.Is(reason, loop.ErrPeerClosed) && !c.out && c.handled == 0:
		// Closed unused by the peer that dialled it (its own handshake
		// gave up after this node admitted it, say: it dials again
		// later): nothing was sent on it, nothing lost.
		pe.n.log.Debug("unused companion connection closed by the peer", "peer", pe.name, "err", reason)
	case errors.Is(reason, loop.ErrPeerClosed):
		pe.n.log.Debug("companion connection closed by the peer", "peer", pe.name, "err", reason)
		time.AfterFunc(pe.n.opts.handshakeTimeout, func() {
			if !pe.closing.Load() {
				_ = pe.conn.Close(cut)
			}
		})
	default:
		_ = pe.conn.Close(cut)
	}
}

// ackWait returns what closes when acked next grows (or the companion
// ends). Look at acked again after taking it.
func (c *companion) ackWait() <-chan struct{} {
	for {
		if p := c.acks.Load(); p != nil {
			return *p
		}
		ch := make(chan struct{})
		if c.acks.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// awaitAcked waits until the peer has acknowledged every item from put on
// this node's companion (at once if it has none there), so that from's
// next item may go on the link's own connection: for an item the
// companion does not carry (a spawn request). An error: the link ended
// first (errLinkEnded), or the deadline passed
// (context.DeadlineExceeded).
func (pe *peer) awaitAcked(from uint64, deadline monoDeadline) error {
	c := pe.out.Load()
	if c == nil || !c.order.behind(c, from) {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Time())
	defer cancel()
	return c.waitAcked(ctx, func() bool { return !c.order.behind(c, from) })
}

// waitAcked waits until passed, looked at again after each Ack, reports
// true: nil then; errLinkEnded once the companion has closed; ctx's error
// once ctx ends.
func (c *companion) waitAcked(ctx context.Context, passed func() bool) error {
	for !passed() {
		ch := c.ackWait()
		if passed() {
			return nil
		}
		select {
		case <-ch:
		case <-c.closed:
			return errLinkEnded
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// drainCompanion waits, bounded by ctx, until the peer has acknowledged
// everything queued on this node's companion: a graceful close of the
// link (Stop, Disconnect) says goodbye on the link's connection only once
// the companion's data is in, since the link's end closes the companion.
//
// It waits for what was queued when it was called (processes may go on
// sending): for the last whole item then queued (companion.last: a message
// whose Send is still putting its fragments in is not waited for), and
// for half of what is left of ctx at most, so that the goodbye and the
// link's own queue keep the other half.
func (pe *peer) drainCompanion(ctx context.Context) {
	c := pe.out.Load()
	if c == nil {
		return
	}
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(d)/2))
		defer cancel()
	}
	target := c.last.Load()
	_ = c.waitAcked(ctx, func() bool { return c.acked.Load() >= target })
}

// syncs are the Syncs of processes waiting to move onto the companion.
type syncs struct {
	mu   sync.Mutex
	seq  uint64
	wait map[uint64]chan struct{}
}

// syncMain waits until the peer has handled everything from sent on the
// link's own connection before now: a Sync behind from's items there,
// answered by the peer's Ack. An error means the link ended first.
func (pe *peer) syncMain(from uint64) error {
	s := &pe.syncs
	s.mu.Lock()
	if s.wait == nil {
		s.wait = map[uint64]chan struct{}{}
	}
	s.seq++
	seq, done := s.seq, make(chan struct{})
	s.wait[seq] = done
	s.mu.Unlock()
	// On the link's own connection whatever from's route says (the
	// companion does not carry Syncs): behind from's items on the bulk
	// lane if it has any there, else on the urgent lane.
	bp := getBuf()
	b := (&wire.Sync{Seq: seq}).Append((*bp)[:0])
	err := pe.sendOnNoWait(pe.linkRoute(from), from, b)
	putBuf(bp, b)
	if err != nil {
		s.mu.Lock()
		delete(s.wait, seq)
		s.mu.Unlock()
		return errLinkEnded
	}
	// The Ack comes on the link, read by its loop or a process reading
	// it inline: a park, for the engine's lingering read duties.
	pe.n.engine.ParkBegin()
	defer pe.n.engine.ParkEnd()
	select {
	case <-done:
		return nil
	case <-pe.down:
		s.mu.Lock()
		delete(s.wait, seq)
		s.mu.Unlock()
		return errLinkEnded
	}
}

// handleSync answers a peer's Sync: every frame before it on the link's
// connection has been handled (this runs in frame order).
func (n *Node) handleSync(pe *peer, m *wire.Sync) { pe.control(&wire.Ack{Seq: m.Seq}) }

// handleAck ends the wait of the Sync it answers; an Ack of no Sync of
// ours is ignored.
func (n *Node) handleAck(pe *peer, m *wire.Ack) {
	s := &pe.syncs
	s.mu.Lock()
	done := s.wait[m.Seq]
	delete(s.wait, m.Seq)
	s.mu.Unlock()
	if done != nil {
		close(done)
	}
}
