package loop

// Direct writes: the sender that wins the drain token on an idle conn seals
// and writes the queue itself, sparing the loop's wake-up (doc.go, "Direct
// writes").

import (
	"fmt"
	"syscall"
	"time"
)

// maxDirectOut: a direct writer keeps its output buffer up to this size.
const maxDirectOut = 64 << 10

var epoch = time.Now()

// monoNow is a monotonic clock in nanoseconds.
func monoNow() int64 { return int64(time.Since(epoch)) }

// dispatch is run by the sender that just won the drain token: it drains
// and writes itself when that is cheaper than waking the loop, else hands
// the token to the loop.
func (c *Conn) dispatch(ls *loopState) {
	if c.direct.Load() && !ls.busy.Load() {
		now := monoNow()
		last := ls.lastDirect.Load()
		if directDue(now, c.idleSince.Load(), last) && ls.lastDirect.CompareAndSwap(last, now) {
			c.directFlush(ls)
			return
		}
	}
	ls.schedule(c)
}

// directFlush drains the queue on the calling goroutine: one TLS write and
// one write(2) on the dup'd socket. What the socket does not take goes to
// spill and the token to the loop (direct writes stop until gnet's buffer
// is empty again). Caller holds the drain token.
func (c *Conn) directFlush(ls *loopState) {
	if !c.acquireDupFD() {
		ls.schedule(c)
		return
	}
	c.nDirect.Add(1)
	earlier, sealed, werr := c.sealQueue(&c.directBufs, c.directOut, false)
	rest := earlier
	if len(earlier) > 0 {
		rest = writeFD(c.dupFD, earlier)
	}
	if len(rest) == 0 {
		rest = writeFD(c.dupFD, sealed)
	} else {
		rest = append(rest, sealed...)
	}
	c.releaseDupFD()
	if len(rest) > 0 {
		c.direct.Store(false)
		c.spill = append(c.spill, rest...)
	}
	if cap(sealed) <= maxDirectOut {
		c.directOut = sealed[:0]
	}
	c.idleSince.Store(monoNow())
	if werr != nil {
		c.direct.Store(false)
		_ = c.Close(fmt.Errorf("%w: write: %w", ErrTLS, werr))
	}
	if len(c.spill) > 0 {
		ls.schedule(c) // keep the token: the loop sends the spill first
		return
	}
	c.scheduled.Store(false)
	if (c.queued.Load() > 0 || c.bulkQueued.Load() > 0 || c.reached(draining) || c.ad.PendingOutput()) &&
		c.scheduled.CompareAndSwap(false, true) {
		ls.schedule(c) // busy, draining or closing: the loop takes over
	}
}

// writeFD writes b to fd (non-blocking) and returns what it did not take.
func writeFD(fd int, b []byte) []byte {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if n > 0 {
			b = b[n:]
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break // EAGAIN, or an error the loop's write will meet and report
		}
	}
	return b
}

// acquireDupFD takes a reference to dupFD, unless it is closed.
func (c *Conn) acquireDupFD() bool {
	for {
		r := c.dupRefs.Load()
		if r <= 0 {
			return false
		}
		if c.dupRefs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// releaseDupFD drops a reference to dupFD; the last one closes it.
func (c *Conn) releaseDupFD() {
	if c.dupRefs.Add(-1) == 0 {
		_ = syscall.Close(c.dupFD)
	}
}
