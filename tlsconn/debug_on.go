//go:build meshdebug

package tlsconn

// The meshdebug build's checks of the adapter: in loop-fed mode, what
// tls.Conn writes is kept (a copy, made as it is written) and compared
// with what SwapOutput hands out, and what Feed offers is kept (a copy)
// and compared with what tls.Conn reads from it. A buffer changed between
// the two (the output buffer written by someone else before it was taken,
// the fed input changed before tls.Conn copied it) panics.

import (
	"bytes"
	"fmt"
)

type adapterDebug struct {
	written []byte // a.mu: written by tls.Conn, not yet swapped out
	fed     []byte // the fed input as it was at Feed
	pos     int    // read from fed so far
	wTotal  int64
	rTotal  int64
}

func (a *Adapter) dbgWrote(p []byte) {
	a.dbg.written = append(a.dbg.written, p...)
	a.dbg.wTotal += int64(len(p))
}

func (a *Adapter) dbgSwapped(b []byte) {
	w := a.dbg.written
	if len(b) > len(w) || !bytes.Equal(b, w[:len(b)]) {
		first := 0
		for first < len(b) && first < len(w) && b[first] == w[first] {
			first++
		}
		panic(fmt.Sprintf("meshdebug: tlsconn %s>%s: SwapOutput hands out %d bytes that are not the %d tls.Conn wrote (first difference at +%d, written total %d): the output buffer was changed after tls.Conn wrote it",
			a.local, a.remote, len(b), len(w), first, a.dbg.wTotal))
	}
	n := copy(w, w[len(b):])
	a.dbg.written = w[:n]
}

func (a *Adapter) dbgFeed(b []byte) {
	a.dbg.fed = append(a.dbg.fed[:0], b...)
	a.dbg.pos = 0
}

func (a *Adapter) dbgRead(p []byte) {
	f := a.dbg.fed[a.dbg.pos:]
	if len(p) > len(f) || !bytes.Equal(p, f[:len(p)]) {
		panic(fmt.Sprintf("meshdebug: tlsconn %s>%s: tls.Conn read %d bytes at +%d of a feed that are not the ones fed (total read %d): the fed buffer changed before tls.Conn copied it",
			a.remote, a.local, len(p), a.dbg.pos, a.dbg.rTotal))
	}
	a.dbg.pos += len(p)
	a.dbg.rTotal += int64(len(p))
}
