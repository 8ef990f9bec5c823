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
// Disarm (or DisarmKeep, which keeps the eventfd for the next Arm);
// between Arm and Disarm exactly one Wake may come, from any goroutine.
// The zero Waiter is ready to use; it must not be copied once armed.
type Waiter struct {
	fd   *fdWaiter     // the armed wait's eventfd; nil: ch
	ch   chan struct{} // capacity 1, made at the first Arm that needs it
	woke atomic.Bool   // set by Wake before it hands the token over

	// An inline wait (BeginInline): where Wake's token goes.
	inl  atomic.Int32 // waiterPlain, waiterReading, waiterParked or waiterWoken
	kick InlineKicker // the reader Wake kicks while waiterParked (set by the owner in BeginInline)
}

// InlineKicker ends an inline reader's wait (package loop's
// Conn.KickInline): a Waiter's Wake calls it when it ends the owner's
// inline park. It must not block.
type InlineKicker interface {
	KickInline()
}

// The states of a Waiter's inline wait (Waiter.inl). Only the owner moves
// it from plain (BeginInline) and back (EndInline); Wake moves reading and
// parked to woken, once.
const (
	waiterPlain   int32 = iota // Wake hands its token to the Waiter's eventfd or channel
	waiterReading              // the owner reads its reply's link itself, not parked: Wake only marks
	waiterParked               // the owner is parked inside the reader's wait: Wake kicks it
	waiterWoken                // Wake came during the inline wait: no token anywhere
)

// Arm prepares one wait; call it before anything can call Wake (before the
// request whose reply wakes it is sent). It takes an eventfd from the
// process's pool unless the Waiter kept one (DisarmKeep). Owner only.
func (w *Waiter) Arm() {
	if w.fd == nil {
		w.fd = getWaiterFD()
	}
	if w.fd == nil && w.ch == nil {
		w.ch = make(chan struct{}, 1)
	}
}

// Wake ends the armed wait, once: a second Wake before the next Arm is a
// bug. Whatever the waker wrote before Wake is visible to the owner once
// Wait returned true. Safe from any goroutine; it never blocks.
func (w *Waiter) Wake() {
	w.woke.Store(true)
	for {
		switch w.inl.Load() {
		case waiterReading:
			if w.inl.CompareAndSwap(waiterReading, waiterWoken) {
				return // the reader sees it after the input it handles now
			}
			continue
		case waiterParked:
			// Loaded before the owner can see woken and begin another
			// inline wait, which sets it again.
			k := w.kick
			if w.inl.CompareAndSwap(waiterParked, waiterWoken) {
				k.KickInline() // the reader's token (InlineUnpark fails)
				return
			}
			continue
		}
		break
	}
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
	w.DisarmKeep()
	if w.fd != nil {
		putWaiterFD(w.fd)
		w.fd = nil
	}
}

// DisarmKeep is Disarm for a Waiter that is armed again (one pooled with
// the request it waits for): it keeps its eventfd, which reads zero as a
// pooled one does, for its next Arm. A spawn's Arm and Disarm took one
// from the pool and gave it back, about 180 instructions of the requester's
// spawn. A kept eventfd counts against the process's Waiter eventfds as a
// pooled one does, and is closed as a pooled one is when its Waiter is
// collected: its os.File's cleanup closes it, and the cleanup fdPool.get
// added takes it out of the count. Owner only, as Disarm.
func (w *Waiter) DisarmKeep() {
	w.inl.Store(waiterPlain)
	w.kick = nil // no Wake can come now; keep no conn reachable
}

// BeginInline starts an inline wait: the owner is about to wait for the
// Wake by reading, on its own goroutine, the input that brings it (an
// InlineReader's conn, package loop's ReadInline, with the Waiter as the
// InlineParker), which k's KickInline ends. Until EndInline a Wake hands
// no token to the Waiter's own eventfd or channel: it kicks k if the
// owner is parked. It reports false, and does nothing, when the Wake
// already came (through the loop: Wait finds its token) or an earlier
// inline wait did not end (EndInline): then only Wait may be used. Owner
// only, between Arm and Disarm.
func (w *Waiter) BeginInline(k InlineKicker) bool {
	// After a Wake, kick may still be read by it: never written again
	// before the next Arm.
	if w.woke.Load() || w.inl.Load() != waiterPlain {
		return false
	}
	w.kick = k
	return w.inl.CompareAndSwap(waiterPlain, waiterReading)
}

// EndInline ends the inline wait and reports whether Wake came during it;
// if not, a later Wake goes to Wait as usual. Owner only, after
// BeginInline.
func (w *Waiter) EndInline() bool {
	if w.inl.CompareAndSwap(waiterReading, waiterPlain) {
		return false
	}
	// Woken (a parked state was always taken back by the reader first).
	w.inl.Store(waiterPlain)
	return w.woke.Swap(false)
}

// InlinePark publishes the owner as parked inside the reader's wait;
// false when Wake came, during the inline wait or before it began (its
// token is then on the Waiter's own eventfd or channel, for Wait). Owner
// only, inside an inline wait.
func (w *Waiter) InlinePark() bool {
	if w.woke.Load() {
		return false
	}
	return w.inl.CompareAndSwap(waiterReading, waiterParked)
}

// InlineUnpark takes the parked state back; false when Wake came first
// (it kicks the reader, once).
func (w *Waiter) InlineUnpark() bool { return w.inl.CompareAndSwap(waiterParked, waiterReading) }

// InlineWoken reports that Wake came.
func (w *Waiter) InlineWoken() bool { return w.inl.Load() == waiterWoken }

// InlineReady reports that Wake came.
func (w *Waiter) InlineReady() bool { return w.inl.Load() == waiterWoken }
