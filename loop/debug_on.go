//go:build meshdebug

package loop

// Stream checks (build tag meshdebug: go test -tags meshdebug, make
// debugtest): every conn's ciphertext is followed from tls.Conn to the
// socket and, when the peer is a conn of this process (tests run both
// nodes in one), from the socket into the peer's tls.Conn. The first byte
// out of place panics with the conn, the path and the recent history of
// its stream.
//
//   - Produced: what tls.Conn wrote, in the order the adapter's output was
//     taken (swapOutput: the swaps are ordered by a mutex of the conn's, so
//     their concatenation is the record sequence tls.Conn sealed).
//   - Handed: every write path (gnet's Write, a direct writer's write(2)
//     on the dup, the loop's write(2) beside a holder) compares what it
//     gives the socket, when it gives it, with the produced bytes at the
//     conn's handed offset: a later record written first, a record written
//     twice, a buffer overwritten between the seal and the write, all fail
//     here on the writer's side.
//   - Fed: what the read path offers its tls.Conn (gnet's read buffer on
//     the loop, a holder's read) is compared with what the peer conn
//     produced at the same stream offset: bytes the socket got in another
//     order than they were handed (gnet holding bytes while a direct
//     writer went first), or input split between two readers, fail here.
//   - Rule checks: two write sections of one conn at once (two holders of
//     the drain token), a direct write while gnet may hold unsent bytes, a
//     write beside a holder with gnet's buffer not empty, and the loop's
//     OnTraffic while a holder reads (or two holders).
//
// The streams are keyed by the socket's address pair; the handshake's bytes
// (blocking mode, counted by a wrapper of the net.Conn under tlsconn) set
// each side's starting offset.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

type connDebug struct {
	bw, br int64 // bytes written and read in blocking mode (handshake, hook)

	out, in *dbgStream // the stream this conn sends, the one it receives
	name    string

	swapMu    sync.Mutex
	writers   atomic.Int32 // write sections in progress
	writePath atomic.Int32 // index in writePaths of the last section entered
	readers   atomic.Int32 // read sections in progress
	readWho   atomic.Pointer[string]
	gnetDirty atomic.Bool // a gnet Write left bytes in its buffer, and the loop has not seen it empty since
}

// dbgConn counts what tls.Conn reads and writes in blocking mode.
type dbgConn struct {
	net.Conn
	r, w atomic.Int64
}

func (d *dbgConn) Read(p []byte) (int, error) {
	n, err := d.Conn.Read(p)
	d.r.Add(int64(n))
	return n, err
}

func (d *dbgConn) Write(p []byte) (int, error) {
	n, err := d.Conn.Write(p)
	d.w.Add(int64(n))
	return n, err
}

func dbgWrapConn(nc net.Conn) net.Conn { return &dbgConn{Conn: nc} }

func (c *Conn) dbgDetached(nc net.Conn) net.Conn {
	d, ok := nc.(*dbgConn)
	if !ok {
		return nc
	}
	c.dbg.bw, c.dbg.br = d.w.Load(), d.r.Load()
	return d.Conn
}

// dbgStream is one direction of one socket.
type dbgStream struct {
	key string

	mu       sync.Mutex
	sender   string
	receiver string
	base     int64  // stream offset of buf[0]
	buf      []byte // produced bytes from base on
	handed   int64  // offset up to which the sender handed bytes to the socket
	fed      int64  // offset up to which the receiver fed its tls.Conn; -1: no receiver (yet)
	sent     bool   // the sender attached
	gone     int    // sides closed
	lost     bool   // bytes were dropped before a receiver came: it is not checked
	ev       [512]dbgEvent
	nev      int
}

type dbgEvent struct {
	what, path string
	off        int64
	n          int
	t          int64
}

var dbgStreams = struct {
	sync.Mutex
	m map[string]*dbgStream
}{m: map[string]*dbgStream{}}

func dbgKey(from, to net.Addr) string { return from.String() + ">" + to.String() }

// dbgStreamFor returns the stream of key, a fresh one when the side
// attaching finds its own side of an older stream (a reused port).
func dbgStreamFor(key string, sender bool) *dbgStream {
	dbgStreams.Lock()
	defer dbgStreams.Unlock()
	s := dbgStreams.m[key]
	if s != nil {
		s.mu.Lock()
		stale := sender && s.sent || !sender && s.fed >= 0
		s.mu.Unlock()
		if stale {
			s = nil
		}
	}
	if s == nil {
		s = &dbgStream{key: key, fed: -1}
		dbgStreams.m[key] = s
	}
	return s
}

func (c *Conn) dbgOpen() {
	if c.gc == nil {
		return
	}
	local, remote := c.ad.LocalAddr(), c.ad.RemoteAddr()
	c.dbg.name = fmt.Sprintf("conn %s>%s (outbound %v)", local, remote, c.outbound)
	out := dbgStreamFor(dbgKey(local, remote), true)
	out.mu.Lock()
	out.sender = c.dbg.name
	out.sent = true
	out.base, out.handed = c.dbg.bw, c.dbg.bw
	out.mu.Unlock()
	in := dbgStreamFor(dbgKey(remote, local), false)
	in.mu.Lock()
	in.receiver = c.dbg.name
	in.fed = c.dbg.br
	in.mu.Unlock()
	c.dbg.out, c.dbg.in = out, in
}

func (c *Conn) dbgClose() {
	for _, s := range []*dbgStream{c.dbg.out, c.dbg.in} {
		if s == nil {
			continue
		}
		s.mu.Lock()
		s.gone++
		done := s.gone == 2 || !s.sent || s.fed < 0
		s.mu.Unlock()
		if done {
			dbgStreams.Lock()
			if dbgStreams.m[s.key] == s {
				delete(dbgStreams.m, s.key)
			}
			dbgStreams.Unlock()
		}
	}
}

func (s *dbgStream) event(what, path string, off int64, n int) {
	s.ev[s.nev%len(s.ev)] = dbgEvent{what, path, off, n, monoNow()}
	s.nev++
}

// trim drops the bytes both sides are done with. s.mu held.
func (s *dbgStream) trim() {
	upto := s.handed
	if s.fed >= 0 {
		upto = min(upto, s.fed)
	} else if upto-s.base < 256<<20 {
		return // keep them for a receiver that attaches late
	} else {
		s.lost = true
	}
	drop := upto - s.base
	if drop < 4<<20 || drop < int64(len(s.buf))/2 {
		return
	}
	n := copy(s.buf, s.buf[drop:])
	s.buf = s.buf[:n]
	s.base = upto
}

func (c *Conn) swapOutput(spare []byte) []byte {
	c.dbg.swapMu.Lock()
	defer c.dbg.swapMu.Unlock()
	b := c.ad.SwapOutput(spare)
	if s := c.dbg.out; s != nil && len(b) > 0 {
		s.mu.Lock()
		s.event("produced", "", s.base+int64(len(s.buf)), len(b))
		s.buf = append(s.buf, b...)
		s.mu.Unlock()
	}
	return b
}

// dbgHanded checks b, given to the socket by path, against the produced
// bytes at the handed offset.
func (c *Conn) dbgHanded(path string, b []byte) {
	s := c.dbg.out
	if s == nil || len(b) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.handed
	s.event("handed", path, off, len(b))
	i := off - s.base
	end := i + int64(len(b))
	if i < 0 || end > int64(len(s.buf)) || !bytes.Equal(s.buf[i:end], b) {
		s.fail(fmt.Sprintf("%s handed %d bytes at offset %d that are not the produced ones", path, len(b), off), off, b)
	}
	s.handed += int64(len(b))
	s.trim()
}

// dbgFed checks in, offered to c's tls.Conn, against what the peer produced.
func (c *Conn) dbgFed(onLoop bool, in []byte) {
	s := c.dbg.in
	if s == nil || len(in) == 0 {
		return
	}
	who := readerName(onLoop)
	if onLoop == c.readerAway() {
		c.dbgPanic(fmt.Sprintf("%s fed its tls.Conn while the read duty is %#x", who, c.duty.Load()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.fed
	if off < 0 {
		return
	}
	s.event("fed", who, off, len(in))
	s.fed += int64(len(in))
	if !s.sent || s.lost {
		return
	}
	b := in
	if skip := s.base - off; skip > 0 { // read ahead in blocking mode, or never produced here
		if skip >= int64(len(b)) {
			return
		}
		b, off = b[skip:], s.base
	}
	i := off - s.base
	end := i + int64(len(b))
	if end > int64(len(s.buf)) || !bytes.Equal(s.buf[i:end], b) {
		s.fail(fmt.Sprintf("the %s of %s fed %d bytes at offset %d that are not the ones %s produced", who, s.receiver, len(b), off, s.sender), off, b)
	}
	s.trim()
}

// fail panics with what went wrong, where the bytes given came from in the
// produced stream, and the stream's recent events. s.mu held.
func (s *dbgStream) fail(what string, off int64, got []byte) {
	var w strings.Builder
	fmt.Fprintf(&w, "meshdebug: stream %s: %s\n", s.key, what)
	fmt.Fprintf(&w, "  sender %s, receiver %s; produced [%d, %d), handed %d, fed %d\n",
		s.sender, s.receiver, s.base, s.base+int64(len(s.buf)), s.handed, s.fed)
	i := off - s.base
	first := -1
	for k := range got {
		j := i + int64(k)
		if j < 0 || j >= int64(len(s.buf)) || s.buf[j] != got[k] {
			first = k
			break
		}
	}
	fmt.Fprintf(&w, "  first differing byte: +%d (offset %d)\n", first, off+int64(max(first, 0)))
	if first >= 0 {
		probe := got[first:min(len(got), first+48)]
		if len(probe) >= 16 {
			at := -1
			for from := 0; ; {
				k := bytes.Index(s.buf[from:], probe)
				if k < 0 {
					break
				}
				at = from + k
				fmt.Fprintf(&w, "  the bytes given there are produced at offset %d (%+d)\n", s.base+int64(at), s.base+int64(at)-(off+int64(first)))
				from = at + 1
				if from >= len(s.buf) {
					break
				}
			}
			if at < 0 {
				fmt.Fprintf(&w, "  the bytes given there are nowhere in the produced window\n")
			}
		}
	}
	fmt.Fprintf(&w, "  last events (oldest first):\n")
	n := min(s.nev, len(s.ev))
	for k := s.nev - n; k < s.nev; k++ {
		e := s.ev[k%len(s.ev)]
		fmt.Fprintf(&w, "    %12d  %-8s %-8s [%d, %d) %d\n", e.t, e.what, e.path, e.off, e.off+int64(e.n), e.n)
	}
	msg := w.String()
	fmt.Fprint(os.Stderr, msg)
	panic(msg)
}

func (c *Conn) dbgPanic(what string) {
	msg := fmt.Sprintf("meshdebug: %s: %s", c.dbg.name, what)
	buf := make([]byte, 1<<20)
	fmt.Fprintf(os.Stderr, "%s\n%s\n", msg, buf[:runtime.Stack(buf, true)])
	panic(msg)
}

// dbgGnetWrote notes, after a gnet Write (on the loop), that gnet may hold
// unsent bytes.
func (c *Conn) dbgGnetWrote() {
	if !c.reached(socketClosed) && c.gc.OutboundBuffered() > 0 {
		c.dbg.gnetDirty.Store(true)
	}
}

// dbgGnetEmpty notes that the loop found gnet's buffer empty (where it sets
// direct).
func (c *Conn) dbgGnetEmpty() { c.dbg.gnetDirty.Store(false) }

// dbgBesideGnet checks, on the loop before writing beside a holder, that
// gnet holds nothing unsent.
func (c *Conn) dbgBesideGnet() {
	if n := c.gc.OutboundBuffered(); n > 0 {
		c.dbgPanic(fmt.Sprintf("the loop writes beside a holder with %d bytes in gnet's buffer", n))
	}
}

func (c *Conn) dbgWriteEnter(path string) {
	if path == "direct" && c.dbg.gnetDirty.Load() {
		c.dbgPanic("a direct write while gnet may hold unsent bytes")
	}
	if n := c.dbg.writers.Add(1); n != 1 {
		other := writePaths[c.dbg.writePath.Load()]
		c.dbgPanic(fmt.Sprintf("%s's write section overlaps %d other(s) (%s): two holders of the drain token", path, n-1, other))
	}
	for i, p := range writePaths {
		if p == path {
			c.dbg.writePath.Store(int32(i))
		}
	}
}

var writePaths = [...]string{"?", "loop", "direct", "beside", "close"}

func (c *Conn) dbgWriteLeave() { c.dbg.writers.Add(-1) }

func readerName(onLoop bool) string {
	if onLoop {
		return "loop"
	}
	return "holder"
}

var readerNames = [2]string{"holder", "loop"}

func (c *Conn) dbgReadEnter(onLoop bool) {
	who := readerName(onLoop)
	if n := c.dbg.readers.Add(1); n != 1 {
		c.dbgPanic(fmt.Sprintf("the %s reads while %d other reader(s) do (%v); duty %#x", who, n-1, deref(c.dbg.readWho.Load()), c.duty.Load()))
	}
	if onLoop {
		c.dbg.readWho.Store(&readerNames[1])
	} else {
		c.dbg.readWho.Store(&readerNames[0])
	}
}

func (c *Conn) dbgReadLeave() { c.dbg.readers.Add(-1) }

func deref(p *string) string {
	if p == nil {
		return "?"
	}
	return *p
}
