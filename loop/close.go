package loop

// Closing a connection.
//
// A conn's close state is one ladder that only moves up (advance): each
// rung implies every rung below it, so "is it closed" is one comparison.
// A peer's reset jumps from open straight to socketClosed; a local Close
// climbs every rung in order.
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
	"errors"
	"fmt"
)

// closeState is a rung of the close ladder.
type closeState int32

const (
	open           closeState = iota
	closeRequested            // a reason is set: Enqueue refuses, done is closed
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
// OnClose then delivers Handler.OnClose. Loop only.
func (c *Conn) closeOnLoop(reason error) {
	c.setReason(reason)
	if !c.advance(closing) {
		return // closing already, or gnet closed the socket
	}
	c.direct.Store(false)
	// The token's holder writes close_notify: the loop itself when it holds
	// the token (a backlog recheck) or wins it now; else a direct writer,
	// which hands the token to the loop when it sees closing, or the loop's
	// pending flush.
	if c.recheck || c.scheduled.CompareAndSwap(false, true) {
		c.finishClose(c.ls.Load())
	}
}

// finishClose sends what is pending, then close_notify, and asks gnet to
// close the socket. Loop only, holding the drain token.
func (c *Conn) finishClose(ls *loopState) {
	if !c.advance(closeSent) {
		return
	}
	// What was queued before the close goes out before close_notify: a
	// sender that enqueued while another held the drain token must not
	// lose its items to a close that came after them.
	earlier, sealed, _ := c.sealQueue(&ls.s, ls.out, true)
	c.writePending(earlier, sealed)
	ls.out = sealed[:0]
	if !c.reached(socketClosed) {
		_ = c.gc.Close() // asynchronous: OnClose follows on this loop
	}
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
	c.waitMu.Lock()
	if c.waitCh != nil {
		close(c.waitCh)
		c.waitCh = nil
	}
	c.waitMu.Unlock()
}
