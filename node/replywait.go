package node

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/mailbox"
)

// The wait for a reply from another node.
//
// A process that sends a request across the network and then waits is
// most often waiting for the reply, which comes on the link the request
// went out on. So after such a send the process's next wait parks at once
// (mailbox.Mailbox.ParkNext: spinning would only take a core from the
// threads that bring the reply) and may read that link itself
// (loop.Conn.ReadInline): it takes the link's read duty from its idle
// event loop, waits for the socket in Go's netpoller, and runs the link's
// input through this node's frame handlers on its own goroutine, every
// frame for every process, until its own message is there. The reply then
// reaches it without a hand-off from the loop's goroutine to its own.
// Anything else that wakes the process (a local message, a timer, an exit
// signal) ends that wait as it ends any other. An idle starter that reads
// the link for its peer's next spawn request yields it to such a waiter
// (peer.ownWait, spawn_start.go).
//
// A remote spawn waits for its reply the same way (waitReply), bounded by
// the spawn timeout. Its inline wait's deadline is the link's, kept across
// spawns and moved only when less than half of the timeout is left of it
// (peer.replyDeadline): a read deadline set on the link's socket at every
// spawn cost about 370 instructions. So the inline wait may end before the
// spawn's own deadline, by up to half the timeout; the wait then goes on
// parked until that deadline, as when the link cannot be read inline.

// parkNextOn makes p's next wait park at once and, if it can, read pe's
// link for its message. Any goroutine that sends for p.
func (p *Process) parkNextOn(pe *peer) {
	if h := pe.handle; p.waitOn.Load() != h {
		p.waitOn.Store(h)
	}
	p.mb.ParkNext()
}

// inlineReader is a process as its mailbox's InlineReader: it reads the
// link its last request went out on (waitOn).
type inlineReader Process

var _ mailbox.InlineReader = (*inlineReader)(nil)

// WaitInline implements mailbox.InlineReader. On the process's goroutine.
func (r *inlineReader) WaitInline(ctx context.Context, m *mailbox.Mailbox) bool {
	h := r.waitOn.Load()
	if h == nil {
		return false
	}
	pe := h.p.Load()
	if pe == nil {
		return false
	}
	lc, ok := pe.conn.(*loop.Conn)
	if !ok {
		return false
	}
	pe.ownWait(lc) // an idle starter reading the link yields it
	r.inlineConn.Store(lc)
	defer func() {
		r.inlineConn.Store(nil)
		pe.ownWaitEnd()
	}()
	return lc.ReadInline(ctx, m)
}

// ParkBegin implements mailbox.InlineReader: the process parks, and the
// node's loops read its next message for it, so none of them may leave a
// read duty lingering meanwhile (loop.Engine.ParkBegin). On the process's
// goroutine.
func (r *inlineReader) ParkBegin() { r.node.engine.ParkBegin() }

// ParkEnd implements mailbox.InlineReader: the park ParkBegin began is
// over. On the process's goroutine.
func (r *inlineReader) ParkEnd() { r.node.engine.ParkEnd() }

// KickInline implements mailbox.InlineReader: it ends the wait of the
// process reading inline, if it still waits. On a waker's goroutine.
func (r *inlineReader) KickInline() {
	if lc := r.inlineConn.Load(); lc != nil {
		lc.KickInline()
	}
}

// waitReply waits until deadline for w's Wake, which a reply on pe's link
// brings (a remote spawn's), reading that link itself while it can, until
// inlineBy at the latest (pe.replyDeadline: no later than deadline, and
// up to half the spawn timeout before it), then parked; it reports
// whether the Wake came. On the requester's goroutine, between w's Arm and
// Disarm.
func waitReply(pe *peer, w *mailbox.Waiter, inlineBy time.Time, deadline monoDeadline) bool {
	if lc, ok := pe.conn.(*loop.Conn); ok && w.BeginInline(lc) {
		pe.ownWait(lc) // an idle starter reading the link yields it
		readReply(pe, lc, w, inlineBy)
		if w.EndInline() {
			return true
		}
	}
	return parkedWait(pe, w, deadline.Time())
}

// readReply is waitReply's inline read, which ends pe.ownWait (deferred:
// a handler's panic on this goroutine goes on up). The requester's
// goroutine.
func readReply(pe *peer, lc *loop.Conn, w *mailbox.Waiter, deadline time.Time) {
	defer pe.ownWaitEnd()
	held := lc.ReadInlineUntil(deadline, w)
	if h := testHookReplyRead.Load(); h != nil {
		(*h)(held)
	}
}

// testHookReplyRead, when a test sets it, runs after each inline wait of
// readReply with ReadInlineUntil's result: true when the wait held the
// link's read duty (and waited until its message, its deadline or a
// wake-up), false when it could not take it.
var testHookReplyRead atomic.Pointer[func(held bool)]

// parkedWait is w.Wait(deadline) for a reply on pe's link that the loop
// reads: counted as a park (loop.Engine.ParkBegin), so no read duty
// lingers with the reply unread meanwhile. On the waiter's goroutine.
func parkedWait(pe *peer, w *mailbox.Waiter, deadline time.Time) bool {
	e := pe.n.engine
	e.ParkBegin()
	ok := w.Wait(deadline)
	e.ParkEnd()
	return ok
}
