package memlink

import (
	"fmt"

	"github.com/meshrt/mesh/loop"
)

// run is a started end's goroutine, its "event loop": each wake-up it
// offers new input to the handler, moves the queue to the other end while
// that end has room, and carries out a close. It returns after OnClose.
func (c *Conn) run() {
	var (
		pending []byte   // input the handler left unconsumed, then the new input
		out     []byte   // one drain's output
		spare   []byte   // the queue's buffer, swapped with c.queue
		items   [][]byte // one drain's items, views into the taken queue
		sentEOF bool     // Shutdown: the close went out after the queue
	)
	for range c.wake {
		c.mu.Lock()
		var in []byte
		if !c.frozen {
			in, c.input = c.input, nil
		}
		eof := c.eof && !c.frozen && len(c.input) == 0
		reason, shutdown := c.reason, c.shutdown
		h, drain := c.handler, c.drain
		c.mu.Unlock()

		cutting := reason != nil && !shutdown
		if len(in) > 0 {
			c.other.signal() // room in this end's input: the other may send more
			if !cutting {
				pending = append(pending, in...)
				n, err := h.OnData(nil, pending)
				pending = pending[:copy(pending, pending[n:])]
				switch {
				case err != nil:
					c.closeEnd(err)
				case len(pending) > c.opts.maxInput:
					c.closeEnd(loop.ErrInputTooLarge)
				}
			}
		}
		if !eof || reason != nil {
			spare, out, items = c.send(drain, spare, out, items)
		}

		c.mu.Lock()
		reason, shutdown = c.reason, c.shutdown
		empty := len(c.lens) == 0
		c.mu.Unlock()
		switch {
		case reason != nil && !shutdown: // Close: what fit goes out, then the close
			// What was queued after the send above, before the Close
			// (nothing can be queued after it), goes too.
			c.send(drain, spare, out, items)
			c.other.hangUp()
			c.deliverClose(reason)
			return
		case reason != nil: // Shutdown: the close once the queue is out, then wait for the other's
			if empty && !sentEOF {
				sentEOF = true
				c.other.hangUp()
			}
			if eof {
				c.mu.Lock()
				c.flushedAll = sentEOF
				c.mu.Unlock()
				c.deliverClose(reason)
				return
			}
		case eof: // the other end closed, after all it sent
			c.closeEnd(errPeerClosed)
			c.mu.Lock()
			c.queue, c.lens = c.queue[:0], c.lens[:0]
			c.queued.Store(0)
			c.mu.Unlock()
			c.other.hangUp()
			c.deliverClose(c.reasonNow())
			return
		}
	}
}

// errPeerClosed is the reason of an end whose other end closed, as loop's
// for a close_notify.
var errPeerClosed = fmt.Errorf("%w: %w", loop.ErrPeerClosed, errCloseNotify)

// send moves the whole queue to the other end, through the drain function,
// if the other end has room (less than the high mark of unread input); an
// other end that has finished takes nothing and the queue is dropped.
// Senders waiting for room are released once the queue is below the low
// mark. The end's goroutine only.
func (c *Conn) send(drain func([]byte, [][]byte) []byte, spare, out []byte, items [][]byte) ([]byte, []byte, [][]byte) {
	o := c.other
	o.mu.Lock()
	room := len(o.input) < c.opts.high
	gone := o.delivered || (o.reason != nil && !o.shutdown)
	o.mu.Unlock()
	if !room && !gone {
		return spare, out, items
	}
	c.mu.Lock()
	if len(c.lens) == 0 {
		c.mu.Unlock()
		return spare, out, items
	}
	q, lens := c.queue, c.lens
	c.queue, c.lens = spare[:0], nil
	c.mu.Unlock()

	items = items[:0]
	off := 0
	for _, n := range lens {
		items = append(items, q[off:off+n:off+n])
		off += n
	}
	if !gone {
		if drain != nil {
			out = drain(out[:0], items)
		} else {
			out = append(out[:0], q...)
		}
		o.mu.Lock()
		if !o.delivered {
			o.input = append(o.input, out...)
		}
		o.mu.Unlock()
		o.signal()
	}
	clear(items)
	c.queued.Add(-int64(off))
	for { // what left the queue spends the AllowBacklog allowance
		b := c.backlog.Load()
		if b <= 0 || c.backlog.CompareAndSwap(b, b-min(b, int64(off))) {
			break
		}
	}
	if c.queued.Load() < int64(c.opts.low) {
		c.mu.Lock()
		if c.roomCh != nil {
			close(c.roomCh)
			c.roomCh = nil
		}
		c.mu.Unlock()
	}
	return q, out, items
}
