package loop

// The read side: ciphertext from gnet's read buffer is fed to tls.Conn, and
// the plaintext gathered (up to readBatch) is offered to the handler; what
// it leaves unconsumed is kept per conn and offered again with more.

import (
	"errors"
	"fmt"
	"io"

	"github.com/meshrt/mesh/tlsconn"
)

// minReadRoom is the free space kept for one tls.Conn Read: a whole record.
const minReadRoom = 16<<10 + 256

// readBatch: plaintext gathered before the handler is called.
const readBatch = 64 << 10

// readTLS decrypts the fed ciphertext (and whatever tls.Conn buffered) and
// offers the plaintext to the handler, gathering it in *rbuf (the loop's
// scratch buffer, or a holder's). It reads until tls.Conn would block, or
// until the adapter tells that it would (Drained: the Read that opened the
// feed's last record, when that record ended the feed, is the pass's
// last; for one small message an input, one Read instead of two). The
// loop (onLoop) or the holder of the read duty (inline.go), which closes
// the conn and sends a KeyUpdate answer through the loop.
func (c *Conn) readTLS(ls *loopState, rbuf *[]byte, in []byte, onLoop bool) {
	// tls.Conn's records are a sequence: a record it was fed half of, or
	// not at all, leaves every later byte out of place (a bad record MAC,
	// or garbage where a header should be, and an alert to the peer). So
	// once a pass dropped fed ciphertext (dropFeed), nothing is fed again.
	if c.reached(closing) || c.readDropped {
		return
	}
	c.dbgFed(onLoop, in)
	c.ad.Feed(in)
	// Gather into the conn's own buffer when it holds an incomplete frame,
	// else into the scratch buffer.
	own := len(c.leftover) > 0
	buf := (*rbuf)[:0]
	if own {
		buf = c.leftover
	}
	var rerr error
	for {
		if cap(buf)-len(buf) < minReadRoom {
			buf = growBuf(buf, minReadRoom)
		}
		room := cap(buf) - len(buf)
		n, err := c.tc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if !tlsconn.IsWouldBlock(err) {
				rerr = err
			} else {
				c.dbgUnreadSame(0, "tls.Conn Read would block")
			}
			break
		}
		if n > 0 && n < room && c.ad.Drained() {
			// tls.Conn opened the feed's last record, which ended
			// the feed, and keeps nothing (n < room: no plaintext
			// either): another Read would only say it would block.
			c.dbgDrained(onLoop)
			break
		}
		if len(buf) >= readBatch {
			u := c.dbgUnread()
			var ok bool
			if buf, own, ok = c.offer(rbuf, buf, own, onLoop); !ok {
				return
			}
			c.dbgUnreadSame(u, "the handler's OnData")
		}
	}
	c.ad.Feed(nil)
	if rerr == nil {
		c.dbgFedDone(onLoop)
	}
	if len(buf) > 0 {
		var ok bool
		if buf, own, ok = c.offer(rbuf, buf, own, onLoop); !ok {
			return
		}
	}
	if own {
		c.leftover = buf
	} else {
		*rbuf = buf[:0]
	}
	// A KeyUpdate answer: the token's holder sends it; if nobody holds the
	// token, take it and send it now (a holder of the read duty hands it
	// to the loop: only the loop writes through gnet).
	if c.ad.PendingOutput() && !c.reached(closing) && c.scheduled.CompareAndSwap(false, true) {
		if onLoop {
			c.flushQueue(ls)
		} else {
			ls.schedule(c)
		}
	}
	if rerr != nil {
		c.dbgReadFailed(onLoop, rerr)
		if errors.Is(rerr, io.EOF) && c.reached(draining) && !c.reached(closing) {
			// The peer is done writing (close_notify closes one
			// direction); ours drains on, then closes.
			return
		}
		c.failRead(onLoop, readError(rerr))
	}
}

// offer gives buf to the handler and keeps what it leaves. It returns the
// buffer to continue gathering in and whether that is the conn's own
// buffer; ok is false when reading stops: the conn is closing, or the
// handler failed (the fed ciphertext is dropped then, and only then,
// dropFeed). The buffer returned may be nil (a holder's scratch buffer
// before its first use): readTLS grows it, so a nil buffer never means
// "stop". Treating it so once left the rest of the fed ciphertext unread,
// which the next Feed replaced: the stream lost bytes and the conn failed
// with a bad record MAC.
//
// Once a close is asked for (Close or Shutdown) the handler is offered
// nothing more, but the conn may still read for a while: a Shutdown
// reads while its queue drains, until its own close_notify goes out (the
// conn is closing from then on, and input is thrown away: OnTraffic,
// readTLS) or the peer's close_notify comes first; its ctx bounds that.
// So before the conn is closing the plaintext is dropped and the pass
// goes on: the fed ciphertext is still read to its end. Stopping here
// once dropped the rest of the feed while the next OnTraffic fed tls.Conn
// again: after a Disconnect that came while the peer's large message was
// arriving, the conn read garbage, answered the peer with an alert (bad
// record MAC, protocol version), and the peer's link went down with that
// instead of the goodbye behind it.
func (c *Conn) offer(rbuf *[]byte, buf []byte, own, onLoop bool) (next []byte, nextOwn, ok bool) {
	if c.reached(closing) {
		c.dropFeed()
		return nil, false, false
	}
	if c.reached(closeRequested) {
		c.leftover = nil // an incomplete frame nobody will complete
		if own {
			return (*rbuf)[:0], false, true
		}
		return buf[:0], false, true
	}
	n, err := c.handler.OnData(c, buf)
	if err != nil {
		c.dropFeed()
		c.failRead(onLoop, err)
		return nil, false, false
	}
	n = min(max(n, 0), len(buf))
	rest := len(buf) - n
	switch {
	case rest == 0 && own:
		if cap(buf) > 4*readBatch {
			c.leftover = nil
			return (*rbuf)[:0], false, true
		}
		c.leftover = buf[:0]
		return (*rbuf)[:0], false, true
	case rest == 0:
		return buf[:0], false, true
	case rest > c.e.opts.maxInput:
		c.dropFeed()
		c.failRead(onLoop, ErrInputTooLarge)
		return nil, false, false
	case own:
		copy(buf, buf[n:])
		return buf[:rest], true, true
	default:
		c.leftover = append(c.leftover[:0], buf[n:]...)
		*rbuf = buf[:0]
		return c.leftover, true, true
	}
}

// dropFeed drops what is left of the fed ciphertext, for a read that stops
// for good: no later pass feeds tls.Conn (readDropped), since what it
// would be fed no longer follows what it read. Held by the reader.
func (c *Conn) dropFeed() {
	c.ad.Feed(nil)
	c.readDropped = true
}

// failRead closes c after a read failure: on the loop at once, from a
// holder through the loop (Close).
func (c *Conn) failRead(onLoop bool, reason error) {
	if onLoop {
		c.closeOnLoop(reason)
		return
	}
	_ = c.Close(reason)
}

// readError is the close reason of a tls.Conn read failure.
func readError(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: close_notify", ErrPeerClosed)
	}
	return fmt.Errorf("%w: read: %w", ErrTLS, err)
}

func growBuf(b []byte, room int) []byte {
	nb := make([]byte, len(b), max(2*cap(b), len(b)+room, readBatch+minReadRoom))
	copy(nb, b)
	return nb
}
