package loop

// The send side: Enqueue, the loop's drain of the send queue into one TLS
// write and one socket write, and backpressure.

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Enqueue copies item into the conn's send queue; the loop writes queued
// items in order, many per socket write. On a started conn with nothing
// queued and no drain under way it may write item itself instead, alone,
// as EnqueueAppend does (sendIdle); the order is the same either way. It
// blocks while the conn's queued bytes are at the high-water mark, until the loop brings them below the
// low-water mark, ctx is done (the error wraps ctx.Err()) or the conn
// closes (the error wraps ErrClosed). It does not allocate in steady state.
// Safe from any goroutine, including the conn's own loop (where it must not
// be made to wait: the loop is what drains).
func (c *Conn) Enqueue(ctx context.Context, item []byte) error {
	if c.reached(closeRequested) {
		return c.closedErr()
	}
	if c.queued.Load() >= c.e.opts.high {
		if err := c.waitRoom(ctx, &c.queued); err != nil {
			return err
		}
	}
	if c.sendIdle(item) {
		return nil
	}
	c.push(&c.q, &c.queued, item)
	if c.bulkWait.Load() {
		c.kickUrgent()
	}
	return nil
}

// BulkTicket is a bulk item's place in its conn's bulk lane, returned by
// EnqueueBulk and EnqueueBulkNoWait; BulkPassed tells whether the item is
// behind every item enqueued from then on. The zero ticket has always
// passed.
type BulkTicket uint64

// EnqueueBulk is Enqueue for the bulk lane: items that may wait behind
// later ones, such as the fragments of a large message. Each drain writes
// every item of the urgent lane (Enqueue, EnqueueNoWait) first, then about
// bulkQuantum (32 KiB, at least one item) of bulk items, so small items
// are not held up behind megabytes of bulk data; items of each lane stay in
// order, and an item enqueued (on either lane) before a bulk item is
// written before it. A sender that needs a later item to stay behind this
// one sends it on the bulk lane too until BulkPassed(ticket) reports true.
// The bulk lane has its own high-water mark, of the same size. Safe from
// any goroutine, like Enqueue.
func (c *Conn) EnqueueBulk(ctx context.Context, item []byte) (BulkTicket, error) {
	if c.reached(closeRequested) {
		return 0, c.closedErr()
	}
	if c.bulkQueued.Load() >= c.e.opts.high {
		if err := c.waitRoom(ctx, &c.bulkQueued); err != nil {
			return 0, err
		}
	}
	return BulkTicket(c.push(&c.bulk, &c.bulkQueued, item)), nil
}

// EnqueueBulkFill is EnqueueBulk for an item that fill appends to a buffer
// of the queue's own, sparing the copy of an item built elsewhere first
// (a large message's fragment, copied once from the message's bytes). fill
// is given an empty buffer with room for at least size bytes and returns
// it with one item appended; it runs on the caller's goroutine after the
// wait for room and outside every lock of the conn, and must not call
// into the conn. An item of more than size bytes is taken too, in a
// buffer of its own (what append grew dst into); an empty one queues
// nothing (ticket 0, which has passed). fill must not keep dst, and must
// return dst or what append grew it into: any other buffer (a part of
// dst, or one of fill's own) is refused with an error, nothing queued,
// since the queue pools its buffers once drained. Waiting and the closed
// conn are as for EnqueueBulk; it does not allocate in steady state for a
// size up to 64 KiB. Safe from any goroutine but the conn's own loop.
func (c *Conn) EnqueueBulkFill(ctx context.Context, size int, fill func(dst []byte) []byte) (BulkTicket, error) {
	if c.reached(closeRequested) {
		return 0, c.closedErr()
	}
	if c.bulkQueued.Load() >= c.e.opts.high {
		if err := c.waitRoom(ctx, &c.bulkQueued); err != nil {
			return 0, err
		}
	}
	ch := getChunk(size)
	b := fill(ch.b[:0])
	switch {
	case len(b) == 0:
		putChunk(ch)
		return 0, nil
	case &b[0] == &ch.b[:1][0] && len(b) <= cap(ch.b):
		// Filled in place: the chunk's own buffer (pooled or not, as
		// getChunk made it).
		ch.b = ch.b[:len(b)]
	case len(b) > cap(ch.b):
		// fill outgrew the buffer (append moved it): the item is queued
		// in the buffer it grew, full (push never appends to it) and
		// larger than a chunk, so never pooled; the chunk goes back,
		// referenced by nobody.
		putChunk(ch)
		ch = &chunk{b: b[:len(b):len(b)]}
	default:
		// Neither the buffer given nor one grown from it: part of it (the
		// chunk must not go back to the pool while that is referenced) or
		// a buffer of fill's own (which putChunk would pool once drained,
		// while its owner still has it). Refused; the chunk is dropped.
		return 0, errFillMoved
	}
	ch.ends = append(ch.ends[:0], len(ch.b))
	c.bulkQueued.Add(int64(len(ch.b)))
	seq := c.bulk.pushChunk(ch)
	c.scheduleDrain()
	return BulkTicket(seq), nil
}

// EnqueueBulkNoWait is EnqueueBulk without waiting, as EnqueueNoWait is
// Enqueue: for a control item that must stay behind its sender's bulk
// items. Past four times the high-water mark of bulk bytes it closes the
// conn with ErrSlowConsumer. Safe from any goroutine, including any loop.
func (c *Conn) EnqueueBulkNoWait(item []byte) (BulkTicket, error) {
	if c.reached(closeRequested) {
		return 0, c.closedErr()
	}
	if c.bulkQueued.Load() >= 4*c.e.opts.high {
		_ = c.Close(ErrSlowConsumer)
		return 0, c.closedErr()
	}
	return BulkTicket(c.push(&c.bulk, &c.bulkQueued, item)), nil
}

// AllowBacklog raises the hard limit of EnqueueNoWait by n bytes until n
// more bytes have left the queue: for a sender that must queue more than
// the limit at once without waiting and knows how much, such as a node's
// snapshot of its own tables sent when a link comes up, before the loop
// drains anything. The queue stays bounded, by the limit plus what is
// allowed and not yet drained. Safe from any goroutine.
func (c *Conn) AllowBacklog(n int) {
	if n > 0 {
		c.backlog.Add(int64(n))
	}
}

// spendBacklog takes n drained bytes off the AllowBacklog allowance. On the
// conn's loop; a sender's AllowBacklog may race with it (CAS).
func (c *Conn) spendBacklog(n int64) {
	for {
		b := c.backlog.Load()
		if b <= 0 || c.backlog.CompareAndSwap(b, b-min(b, n)) {
			return
		}
	}
}

// BulkPassed reports whether the bulk item of ticket t, and every bulk
// item before it, has been drained: any item enqueued after BulkPassed
// returns true, on either lane, is written after it. On a closed conn it
// may never become true. Safe from any goroutine.
func (c *Conn) BulkPassed(t BulkTicket) bool { return c.bulkTaken.Load() >= uint64(t) }

// EnqueueNoWait is Enqueue for items that must go out without their sender
// ever waiting: control signals, and anything sent from a loop. It copies
// item into the queue whatever the high-water mark says (or, on an idle
// conn, writes it itself as Enqueue may). Past the hard limit
// (four times the high-water mark, plus what AllowBacklog allowed) it closes
// the conn with ErrSlowConsumer instead, so memory stays bounded and the
// peer's loss is reported, never silent. Safe from any goroutine, including
// any loop.
func (c *Conn) EnqueueNoWait(item []byte) error {
	if c.reached(closeRequested) {
		return c.closedErr()
	}
	if c.queued.Load() >= 4*c.e.opts.high+c.backlog.Load() {
		_ = c.Close(ErrSlowConsumer)
		return c.closedErr()
	}
	if c.sendIdle(item) {
		return nil
	}
	c.push(&c.q, &c.queued, item)
	if c.bulkWait.Load() {
		c.kickUrgent()
	}
	return nil
}

// Queued returns the bytes enqueued (on both lanes) and not yet taken by
// the loop. Safe from any goroutine.
func (c *Conn) Queued() int { return int(c.queued.Load() + c.bulkQueued.Load()) }

// sendIdle is Enqueue's and EnqueueNoWait's way past the queue, as
// EnqueueAppend's: on a started conn with both lanes empty and the drain
// token free, it takes the token and gives item to appendHeld, which, when
// a direct write may go, seals it alone from the direct writer's own
// buffer and writes it (no chunk from the pool, no queue lock, no drain of
// the queue: about 300 instructions on each side of a remote spawn,
// docs/latency.md, "Remote spawn: a spawn's work, counted in
// instructions"), else queues it and hands the token to the loop, as push
// would. Order holds as for EnqueueAppend (appendHeld). It reports false,
// having done nothing, when the conn is not idle or item is empty or
// larger than maxAppendItem: the caller pushes. Any goroutine; on the
// conn's own loop the direct write is refused (the loop is busy) and the
// item is queued.
func (c *Conn) sendIdle(item []byte) bool {
	if len(item) == 0 || len(item) > maxAppendItem {
		return false
	}
	ls := c.ls.Load()
	if ls == nil || c.queued.Load() != 0 || c.bulkQueued.Load() != 0 || c.scheduled.Load() || !c.scheduled.CompareAndSwap(false, true) {
		return false
	}
	// fn cannot fail, and appends exactly max bytes: appendHeld's only
	// error would be fn's.
	_ = c.appendHeld(ls, len(item), func(dst []byte) ([]byte, error) { return append(dst, item...), nil })
	return true
}

// push queues a copy of item on lane q (whose byte count is n), returns
// its sequence number in q, and schedules the conn on its loop if it was
// not scheduled already (only the CAS winner does).
func (c *Conn) push(q *sendQueue, n *atomic.Int64, item []byte) uint64 {
	n.Add(int64(len(item)))
	seq := q.push(item)
	if !c.scheduled.Load() && c.scheduled.CompareAndSwap(false, true) {
		c.handToLoop()
	}
	return seq
}

// handToLoop hands the drain token its caller just won to the conn's
// loop: dispatch once OnOpen has stored the loop (ls); before that, to
// OnOpen, which drains the queue for it. The two sides race at the start:
// OnOpen stores ls, then takes openOwed; the sender stores openOwed, then
// looks at ls again and, if the loop is there now, takes openOwed back.
// Both take it with a compare-and-swap and each stores before it looks,
// so exactly one of them drains: a sender that saw the loop at once
// dispatches without openOwed, and OnOpen never drains a token a sender
// dispatched. Any goroutine, holding the token.
func (c *Conn) handToLoop() {
	if ls := c.ls.Load(); ls != nil {
		c.dispatch(ls)
		return
	}
	if h := testHookOpenOwed.Load(); h != nil {
		(*h)(c)
	}
	c.openOwed.Store(true)
	if ls := c.ls.Load(); ls != nil && c.openOwed.CompareAndSwap(true, false) {
		c.dispatch(ls) // the loop came meanwhile, and OnOpen did not take it
	}
}

// testHookOpenOwed, when a test sets it, runs in handToLoop between its
// first look at the loop, which found none, and its store of openOwed: a
// test starts the conn there, as OnOpen may run while the sender is
// descheduled at that point.
var testHookOpenOwed atomic.Pointer[func(*Conn)]

// scheduleDrain is push's scheduling of the conn on its loop (written out
// in push, whose callers are the small items' path): only the CAS winner
// does. Any goroutine.
func (c *Conn) scheduleDrain() {
	if !c.scheduled.Load() && c.scheduled.CompareAndSwap(false, true) {
		c.handToLoop()
	}
}

// SendWaits returns how many Enqueue, EnqueueAppend, EnqueueBulk and
// EnqueueBulkFill calls found their lane at the high-water mark and
// waited for room (backpressure), whatever the wait's outcome. Safe from
// any goroutine.
func (c *Conn) SendWaits() uint64 { return c.sendWaits.Load() }

// waitRoom waits until the lane counted by n is under the high-water mark.
// Its caller found the lane at the mark: it counts as one wait.
func (c *Conn) waitRoom(ctx context.Context, n *atomic.Int64) error {
	c.sendWaits.Add(1)
	for {
		c.waitMu.Lock()
		c.waiters.Store(true)
		if n.Load() < c.e.opts.high {
			c.waitMu.Unlock()
			return nil
		}
		if c.waitCh == nil {
			c.waitCh = make(chan struct{})
		}
		ch := c.waitCh
		c.waitMu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			return c.closedErr()
		case <-ctx.Done():
			return fmt.Errorf("loop: send queue full: %w", ctx.Err())
		}
	}
}

// wakeSenders releases senders waiting for room once a lane is below the
// low-water mark (a waiter of the other lane checks again and waits on).
// Holder of the drain token.
func (c *Conn) wakeSenders() {
	if !c.waiters.Load() || c.queued.Load() >= c.e.opts.low && c.bulkQueued.Load() >= c.e.opts.low {
		return
	}
	c.waitMu.Lock()
	if c.waitCh != nil {
		close(c.waitCh)
		c.waitCh = nil
	}
	c.waiters.Store(false)
	c.waitMu.Unlock()
}

// sealQueue turns what the conn has to send into ciphertext, in order:
// earlier is what tls.Conn wrote while nobody held the token (a KeyUpdate
// answer a Read produced), and sealed is the queue drained with s (part of
// the urgent lane if bounded, else all of it: see drainQueue) and sealed
// by one tls.Conn Write (then close_notify, with closeNotify) into spare.
// Holder of the drain token; earlier goes out before sealed.
func (c *Conn) sealQueue(s *scratch, spare []byte, closeNotify, withBulk, bounded bool) (earlier, sealed []byte, err error) {
	earlier = c.swapOutput(spare)
	if plain := s.drainQueue(c, withBulk, bounded); len(plain) > 0 {
		_, err = c.tc.Write(plain)
		s.keepPlain(plain)
	}
	if closeNotify {
		_ = c.tc.Close() // appends close_notify; the adapter does not close the socket
	}
	sealed = c.swapOutput(nil)
	return earlier, sealed, err
}

// sealItem is sealQueue for one item that was never queued (appendHeld):
// the conn's drain function turns it alone into plaintext, sealed by one
// tls.Conn Write into spare; s keeps item's buffer (s.item) for the next
// one unless it grew large. Holder of the drain token; earlier goes out
// before sealed.
func (c *Conn) sealItem(s *scratch, spare, item []byte) (earlier, sealed []byte, err error) {
	earlier = c.swapOutput(spare)
	s.items = append(s.items[:0], item)
	plain := c.drain(s.plain[:0], s.items)
	s.items[0] = nil
	s.items = s.items[:0]
	if cap(item) <= 2*maxAppendItem {
		s.item = item[:0]
	}
	if len(plain) > 0 {
		_, err = c.tc.Write(plain)
	}
	s.keepPlain(plain)
	sealed = c.swapOutput(nil)
	return earlier, sealed, err
}

// writePending hands gnet, in order: the spill of an earlier direct write,
// output produced while nobody held the token (earlier), then sealed. Loop
// only, holding the drain token.
func (c *Conn) writePending(earlier, sealed []byte) {
	if len(c.spill) > 0 {
		c.writeOut(c.spill)
		c.spill = c.spill[:0]
		if cap(c.spill) > maxDirectOut {
			c.spill = nil
		}
	}
	c.writeOut(earlier)
	c.writeOut(sealed)
}

// writeOut hands ciphertext to gnet: one write, the unwritten rest copied
// into gnet's outbound buffer. Loop only.
func (c *Conn) writeOut(b []byte) {
	if len(b) == 0 || c.reached(socketClosed) {
		return
	}
	if c.duty.Load() != 0 {
		c.inlineFailed.Add(1) // gnet may set EPOLLIN beside a holder (inline.go, rule 3): a bug
	}
	c.dbgHanded("gnet", b)
	_, _ = c.gc.Write(b) // on failure gnet closes the conn and calls OnClose
	c.dbgGnetWrote()
}

// flushQueue drains the queue into one TLS write and one socket write,
// unless the socket is backed up: the urgent lane up to urgentLimit and
// the bulk lane's share, then it schedules the conn again for the rest.
// Loop only, holding the drain token.
func (c *Conn) flushQueue(ls *loopState) {
	c.dbgTokenHeld("flushQueue")
	if c.reached(closeSent) {
		return // the token stays taken: nothing more goes out
	}
	if c.duty.Load() != 0 && c.flushBesideHolder(ls) {
		return // a process reads the socket (inline.go, rule 3)
	}
	if c.reached(closing) {
		c.finishClose(ls, false)
		return
	}
	var act flushAction
	ob := c.gc.OutboundBuffered()
	act, c.sockWaits = flushPlan(ob, c.e.opts.high, c.sockWaits)
	switch act {
	case waitSocket:
		c.armSocketWait()
		c.waitWithBulk(ls)
		return // scheduled stays true: senders do not wake the loop meanwhile
	case backOff:
		c.armRecheck(ob)
		c.waitWithBulk(ls)
		return
	}
	c.backoff, c.lastBacklog = 0, 0
	c.paceBulk(c.bulkQueued.Load() > 0)
	// direct first: a sender that wins the token from here on hands it back
	// to the loop instead of writing while the loop still does.
	c.direct.Store(false)
	draining := c.reached(draining)
	if draining {
		c.drainHeld = true // the loop keeps the token until the close
	} else {
		c.scheduled.Store(false)
	}
	c.bulkWait.Store(false)
	if !c.sealAndWrite(ls, true) {
		return
	}
	c.paceBulk(c.bulkQueued.Load() > 0) // lifted as soon as the last bulk item is out
	c.idleSince.Store(monoNow())
	if draining {
		// Shutdown: once the queue is empty, close_notify follows what
		// was sealed (gnet may still hold some); else the next pass, at
		// once if the socket took everything, or when it has room again.
		switch {
		case c.queued.Load() == 0 && c.bulkQueued.Load() == 0:
			c.finishClose(ls, true)
		case !c.reached(socketClosed) && c.gc.OutboundBuffered() == 0:
			ls.schedule(c) // the socket took it all: the next pass now
		default:
			c.armSocketWait()
		}
		return
	}
	if c.bulkQueued.Load() > 0 || c.queued.Load() > 0 {
		// The rest (the bulk lane's, or the urgent lane's past one
		// quantum): the next pass (flushPlan first). Direct writes stay
		// off while data flows.
		if c.scheduled.CompareAndSwap(false, true) {
			ls.schedule(c)
		}
		return
	}
	if !c.reached(socketClosed) && c.gc.OutboundBuffered() == 0 {
		c.dbgGnetEmpty()
		c.direct.Store(true)
	}
}

// waitWithBulk is what flushQueue does when it leaves the queue to a
// socket wait: with bulk items queued (the backlog is most likely theirs),
// urgent items do not wait for the timer. What is queued goes out now, and
// senders of urgent items wake the loop (kickUrgent) until the wait ends.
// Loop only, holding the drain token.
func (c *Conn) waitWithBulk(ls *loopState) {
	if c.bulkQueued.Load() == 0 {
		return
	}
	c.bulkWait.Store(true)
	c.flushUrgent(ls)
}

// kickUrgent is called by a sender that queued an urgent item while the
// loop holds the drain token in a socket wait with bulk items queued: the
// loop writes the urgent lane now, behind gnet's backlog but ahead of the
// rest of the bulk lane. One kick at a time. Any goroutine.
func (c *Conn) kickUrgent() {
	if !c.kicked.CompareAndSwap(false, true) {
		return
	}
	c.exec(func() {
		c.kicked.Store(false)
		c.flushUrgent(c.ls.Load())
	})
}

// flushUrgent writes the urgent lane only, while a socket wait (recheck)
// holds the drain token for the loop. Anywhere else it does nothing: the
// token's holder drains the urgent items with the rest. Loop only.
func (c *Conn) flushUrgent(ls *loopState) {
	if !c.recheck || !c.bulkWait.Load() || c.queued.Load() == 0 || c.reached(closing) {
		return
	}
	c.sealAndWrite(ls, false)
}

// sealAndWrite seals the urgent lane (and the bulk lane's share, withBulk)
// and hands it to gnet, keeping the loop's output buffer for the next pass
// unless it grew past 8 MiB. A full pass (withBulk) takes the urgent lane
// up to urgentLimit, flushUrgent all of it. A TLS error closes the conn:
// false. Loop only, holding the drain token.
func (c *Conn) sealAndWrite(ls *loopState, withBulk bool) bool {
	c.dbgWriteEnter("loop")
	earlier, sealed, err := c.sealQueue(&ls.s, ls.out, false, withBulk, withBulk)
	if h := testHookLoopSealed.Load(); h != nil {
		(*h)(c)
	}
	c.writePending(earlier, sealed)
	c.dbgWriteLeave()
	ls.out = sealed[:0]
	if cap(ls.out) > 8<<20 {
		ls.out = nil
	}
	if err != nil {
		c.closeOnLoop(fmt.Errorf("%w: write: %w", ErrTLS, err))
		return false
	}
	return true
}

// testHookLoopSealed, when a test sets it, runs in sealAndWrite between
// the loop's seal and its write to gnet: a test sends there from another
// goroutine, as a sender may while the loop drains with the token given
// up (flushQueue).
var testHookLoopSealed atomic.Pointer[func(*Conn)]

// armSocketWait flushes the queue again after socketWait. Loop only,
// holding the drain token.
func (c *Conn) armSocketWait() {
	if c.recheck {
		return
	}
	c.recheck = true
	c.nSocketWait.Add(1)
	c.AfterFunc(socketWait, func() {
		c.recheck = false
		c.flushQueue(c.ls.Load())
	})
}

// armRecheck polls the socket backlog while it is above the high-water
// mark (gnet does not report when its outbound buffer drains): every
// millisecond while the backlog shrinks, backing off to 32 ms while the
// peer reads nothing.
func (c *Conn) armRecheck(backlog int) {
	if c.recheck {
		return
	}
	c.recheck = true
	c.backoff = recheckDelay(c.backoff, backlog < c.lastBacklog)
	c.lastBacklog = backlog
	c.AfterFunc(c.backoff, func() {
		c.recheck = false
		c.flushQueue(c.ls.Load())
	})
}
