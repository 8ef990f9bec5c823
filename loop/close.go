package loop

// Closing a connection.
//
// A conn's close state is one ladder that only moves up (advance): each
// rung implies every rung below it, so "is it closed" is one comparison.
// A peer's reset jumps from open straight to socketClosed; a local Close
// climbs every rung but draining in order, Shutdown every rung.
//
// Two ways to close:
//   - Close cuts: on the loop, whatever is queued is sealed behind
//     close_notify and gnet closes the socket at once, dropping what the
//     socket does not take. If gnet already holds unsent bytes (the peer is
//     not keeping up), nothing more is sealed: the socket is just closed.
//   - Shutdown drains: the loop keeps flushing the queue with the usual
//     backpressure (it seals only what gnet has room for, so a peer that
//     reads nothing costs no copy through TLS), then writes close_notify,
//     waits until gnet handed the socket everything, shuts the socket's
//     write side (FIN after the data) and waits for the peer to close. Its
//     ctx bounds all of it; when ctx ends the conn is cut.
//
// Invariants:
//   - closeRequested is set together with the first reason, under mu, and
//     done is closed at the same time.
//   - closing and closeSent are set on the loop only; socketClosed by gnet's
//     OnClose (on the loop); closeDelivered by whoever runs Handler.OnClose,
//     exactly once (the CAS in advance decides).
//   - Only the drain token's holder, on the loop, writes close_notify
//     (finishClose), so it is never concurrent with a tls.Conn Write.

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// closeState is a rung of the close ladder.
type closeState int32

const (
	open           closeState = iota
	closeRequested            // a reason is set: Enqueue refuses, done is closed
	draining                  // Shutdown: the loop holds the token and sends the rest, then closes
	closing                   // the loop began closing: a sender holding the token hands it to the loop
	closeSent                 // close_notify written, gnet asked to close: nothing more goes out
	socketClosed              // gnet's OnClose ran: never touch gc again
	closeDelivered            // Handler.OnClose ran
)

// reached reports whether the conn's close state is at least s. Any
// goroutine.
func (c *Conn) reached(s closeState) bool { return closeState(c.closeState.Load()) >= s }

// advance moves the close state up to s; it reports whether this call moved
// it (false: it was at s or above already). Any goroutine.
func (c *Conn) advance(s closeState) bool {
	for {
		cur := c.closeState.Load()
		if closeState(cur) >= s {
			return false
		}
		if c.closeState.CompareAndSwap(cur, int32(s)) {
			return true
		}
	}
}

// Close closes the connection: close_notify, then the socket, on the loop.
// The first reason given (to Close or by a failure) sticks and is what
// OnClose receives. Safe from any goroutine; it does not wait for OnClose.
func (c *Conn) Close(reason error) error {
	reason = c.setReason(reason)
	c.mu.Lock()
	if c.start == startNew {
		c.start = startAborted
		c.mu.Unlock()
		_ = c.tc.Close() // blocking mode: close_notify with tls's own deadline, then the socket
		c.deliverClose(reason)
		return nil
	}
	c.mu.Unlock()
	c.exec(func() { c.closeOnLoop(reason) })
	return nil
}

// Shutdown closes the connection gracefully, for a peer that keeps
// reading. From the call on, Enqueue fails (ErrClosed wrapping reason);
// everything enqueued before is sent, then close_notify, then the socket's
// write side is shut, and the connection ends when the peer closes its
// side. If ctx ends first the connection is cut as by Close, and what the
// peer has not taken is dropped: a peer that reads nothing is cut without
// its queue ever being copied through TLS. Shutdown returns after
// Handler.OnClose ran: nil if everything, close_notify included, was handed
// to the socket before the peer closed; an error wrapping ctx.Err() if ctx
// ended first; else ErrClosed wrapping the reason the connection ended with
// (it was closed otherwise, or the peer reset it). On a conn not started it
// is Close. Safe from any goroutine but a loop callback (it waits for the
// loop).
func (c *Conn) Shutdown(ctx context.Context, reason error) error {
	reason = c.setReason(reason)
	c.mu.Lock()
	if c.start == startNew {
		c.mu.Unlock()
		_ = c.Close(reason)
		return c.closedErr()
	}
	c.mu.Unlock()
	c.exec(func() { c.drainOnLoop() })
	select {
	case <-c.gone:
	case <-ctx.Done():
		c.exec(c.cutOnLoop)
		select {
		case <-c.gone:
		case <-time.After(closeWait): // the engine's loops are gone
		}
		return fmt.Errorf("loop: shutdown: %w", ctx.Err())
	}
	if c.flushedAll.Load() {
		return nil
	}
	return c.closedErr()
}

func (c *Conn) closedErr() error {
	c.mu.Lock()
	r := c.reason
	c.mu.Unlock()
	if r == nil || errors.Is(r, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, r)
}

// setReason records the first close reason, marks the conn closed and
// releases waiting senders. It returns the reason that sticks.
func (c *Conn) setReason(reason error) error {
	if reason == nil {
		reason = ErrClosed
	}
	c.mu.Lock()
	if c.reason == nil {
		c.reason = reason
		c.advance(closeRequested)
		close(c.done)
	}
	r := c.reason
	c.mu.Unlock()
	return r
}

// closeOnLoop sends close_notify and asks gnet to close the socket; gnet's
// OnClose then delivers Handler.OnClose. A graceful close still waiting for
// the socket or the peer is cut. Loop only.
func (c *Conn) closeOnLoop(reason error) {
	c.setReason(reason)
	if c.lingering {
		c.cutOnLoop()
		return
	}
	if !c.advance(closing) {
		return // closing already, or gnet closed the socket
	}
	c.direct.Store(false)
	// The token's holder writes close_notify: the loop itself when it holds
	// the token (a backlog recheck, or a drain) or wins it now; else a
	// direct writer, which hands the token to the loop when it sees
	// closing, or the loop's pending flush.
	if c.recheck || c.reached(draining) && c.drainHeld || c.scheduled.CompareAndSwap(false, true) {
		c.finishClose(c.ls.Load(), false)
	}
}

// drainOnLoop starts a graceful close (Shutdown): the loop takes the drain
// token and keeps it, and flushQueue sends the queue and then closes. Loop
// only.
func (c *Conn) drainOnLoop() {
	if !c.advance(draining) {
		return // closing already, or gnet closed the socket
	}
	c.direct.Store(false)
	// A direct writer holding the token hands it to the loop when it sees
	// draining; else the loop's pending flush or recheck has it.
	if c.recheck || c.scheduled.CompareAndSwap(false, true) {
		c.drainHeld = true
		c.flushQueue(c.ls.Load())
	}
}

// cutOnLoop ends the connection at once: no more output, gnet closes the
// socket. Loop only.
func (c *Conn) cutOnLoop() {
	c.direct.Store(false)
	c.lingering = false
	c.advance(closeSent)
	if !c.reached(socketClosed) {
		c.closeGnet()
	}
}

// finishClose sends what is pending, then close_notify. Then, for a cut
// (graceful false), it asks gnet to close the socket; for a graceful close
// it lingers until the socket took everything and the peer closed. A cut
// whose peer is not keeping up (gnet holds unsent bytes) seals nothing
// more. Loop only, holding the drain token.
func (c *Conn) finishClose(ls *loopState, graceful bool) {
	if c.reached(closeSent) || c.recallDuty() {
		return // a process reads the socket: its hand-back schedules c, and flushQueue comes back here
	}
	if !c.advance(closeSent) {
		return
	}
	if !graceful && c.gc.OutboundBuffered() > 0 {
		c.closeGnet() // asynchronous: OnClose follows on this loop
		return
	}
	// What was queued before the close goes out before close_notify: a
	// sender that enqueued while another held the drain token must not
	// lose its items to a close that came after them.
	c.dbgWriteEnter("close")
	earlier, sealed, _ := c.sealQueue(&ls.s, ls.out, true, true, false)
	c.writePending(earlier, sealed)
	c.dbgWriteLeave()
	ls.out = sealed[:0]
	if c.reached(socketClosed) {
		return
	}
	if graceful {
		c.lingering = true
		c.backoff, c.lastBacklog = 0, 0
		c.linger()
		return
	}
	c.closeGnet()
}

// linger waits, after a graceful close_notify, until gnet has handed the
// socket all it holds (polled as for a backlog, gnet does not report it),
// then shuts the socket's write side: the peer reads everything, then EOF,
// and closes; its close ends the conn (gnet's OnClose). Loop only.
func (c *Conn) linger() {
	if !c.lingering || c.reached(socketClosed) {
		return
	}
	if ob := c.gc.OutboundBuffered(); ob > 0 {
		c.backoff = recheckDelay(c.backoff, ob < c.lastBacklog)
		c.lastBacklog = ob
		c.AfterFunc(c.backoff, c.linger)
		return
	}
	c.flushedAll.Store(true)
	_ = syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR)
}

// deliverClose runs Handler.OnClose once and forgets the conn.
func (c *Conn) deliverClose(reason error) {
	if !c.advance(closeDelivered) {
		return
	}
	c.e.forget(c)
	// A conn closed before anyone set its handler (Engine.Close racing the
	// owner of a conn Dial just returned) has nobody to tell.
	c.mu.Lock()
	h := c.handler
	c.mu.Unlock()
	if h != nil {
		h.OnClose(c, reason)
	}
	close(c.gone)
	c.waitMu.Lock()
	if c.waitCh != nil {
		close(c.waitCh)
		c.waitCh = nil
	}
	c.waitMu.Unlock()
}

// closeGnet asks gnet to close the socket (a task gnet queues; OnClose
// follows on this loop), counted as pending for the idle wait until
// OnClose ran. Loop only.
func (c *Conn) closeGnet() {
	if !c.closeAsked {
		c.closeAsked = true
		c.ls.Load().owed.Add(1)
	}
	_ = c.gc.Close()
}
