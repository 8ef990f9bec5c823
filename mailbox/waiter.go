package mailbox

import (
	"sync/atomic"
	"time"
)

// Waiter is one goroutine's wait for one wake-up from another, for a reply
// that a network event loop delivers (a remote spawn's). On Linux the
// waiter blocks on an eventfd in Go's netpoller, so the loop that wakes it
// readies it without waking an idle thread, and its own thread runs the
// waiter once the loop parks (fdpark_linux.go); elsewhere, or when the
// process's eventfds for Waiters (256) are all in use, on a channel.
//
// One wait goes Arm, then any number of Waits until one returns true, then
// Disarm; between Arm and Disarm exactly one Wake may come, from any
// goroutine. The zero Waiter is ready to use; it must not be copied once
// armed.
type Waiter struct {
	fd   *fdWaiter     // the armed wait's eventfd; nil: ch
	ch   chan struct{} // capacity 1, made at the first Arm that needs it
	woke atomic.Bool   // set by Wake before it hands the token over
}

// Arm prepares one wait; call it before anything can call Wake (before the
// request whose reply wakes it is sent). Owner only.
func (w *Waiter) Arm() {
	w.fd = getWaiterFD()
	if w.fd == nil && w.ch == nil {
		w.ch = make(chan struct{}, 1)
	}
}

// Wake ends the armed wait, once: a second Wake before the next Arm is a
// bug. Whatever the waker wrote before Wake is visible to the owner once
// Wait returned true. Safe from any goroutine; it never blocks.
func (w *Waiter) Wake() {
	w.woke.Store(true)
	if fd := w.fd; fd != nil {
		fdWake(fd.fd)
		return
	}
	select {
	case w.ch <- struct{}{}:
	default: // cannot happen: one Wake per Arm
	}
}

// Wait blocks until Wake, or until deadline passed (zero: no deadline),
// and reports whether Wake came. After false a Wake may still come: the
// caller either makes sure none can (it took the request back from the
// waker) or waits again, before Disarm. Owner only.
func (w *Waiter) Wait(deadline time.Time) bool {
	if fd := w.fd; fd != nil {
		if !fd.waitUntil(deadline) {
			return false
		}
	} else if deadline.IsZero() {
		<-w.ch
	} else {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-w.ch:
			t.Stop()
		case <-t.C:
			return false
		}
	}
	// The token was taken, so Wake stored woke first; loading it orders
	// the waker's writes before the owner's reads.
	return w.woke.Swap(false)
}

// Disarm ends the wait and gives its eventfd back: only after Wait
// returned true, or when no Wake can come any more. Owner only.
func (w *Waiter) Disarm() {
	if w.fd != nil {
		putWaiterFD(w.fd)
		w.fd = nil
	}
}
