package loop

// Per-loop state and the gnet event handler.
//
// Invariants:
//   - loopState.mu guards ready, spare and pending; it is a leaf lock.
//   - ready is empty exactly when pending is false.
//   - busy is true while the loop runs one of our callbacks; such a
//     callback always ends with leave(), which drains ready before
//     returning. A producer that appends to an empty ready list wakes the
//     loop (one gnet task) only when busy is false.
//   - scratch buffers (s, out, rbuf) are lent to one conn at a time, on the
//     loop; none is left with a conn or its adapter after the call.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/panjf2000/gnet/v2"
)

type loopState struct {
	e  *Engine
	el gnet.EventLoop

	busy atomic.Bool
	// lastDirect is when (monoNow) a sender last wrote one of this loop's
	// conns directly; see directSpacing.
	lastDirect atomic.Int64
	mu         sync.Mutex
	pending    bool
	ready      []*Conn
	spare      []*Conn

	s    scratch
	out  []byte
	rbuf []byte

	// idle is the loop's wait in Go's netpoller (idle.go), nil if gnet's
	// descriptors were not found; made at the first OnOpen (idleTried).
	idle      atomic.Pointer[idleWait]
	idleTried bool
	// owed counts our gnet tasks queued and not yet started, and gnet
	// closes asked (closeGnet) whose OnClose has not run: the loop does
	// not wait in the netpoller while it is positive. Counted from the
	// start, with or without idle, so a task queued before idle was made
	// is not uncounted twice.
	owed atomic.Int64

	// after holds the functions AfterFlush deferred to the end of the
	// current callback. Loop only.
	after, afterSpare []func()

	// conns are the loop's conns, from OnOpen to OnClose (idle.go,
	// soleConn). Loop only.
	conns []*Conn
}

// scratch holds the buffers one drain uses. The loop has one; each conn has
// one for its direct writes.
type scratch struct {
	plain  []byte
	items  [][]byte
	chunks []*chunk // the chunk list drained last, handed back on the next take
	bulk   []*chunk // the bulk lane's chunks of one drain
	item   []byte   // a direct writer's: the one item appendHeld encodes
}

// drainQueue takes, withBulk, the bulk lane's share of c's items
// (bulkShare) and the urgent lane's items (all of them, or with bounded
// set and no bulk items taken, whole chunks of at most urgentLimit bytes,
// at least one), and turns them, urgent first, into plaintext with c's
// drain function (nil when there were none). It releases senders waiting
// for room. Holder of c's drain token.
func (s *scratch) drainQueue(c *Conn, withBulk, bounded bool) []byte {
	// Bulk first, then urgent: every urgent item pushed before a bulk item
	// taken now is taken too, and is written before it.
	var bulkBytes, bulkItems int
	if withBulk && c.bulkQueued.Load() > 0 {
		s.bulk, bulkBytes, bulkItems = c.bulk.takeBytes(s.bulk[:0], bulkShare(int(c.queued.Load())))
	}
	var chunks []*chunk
	if limit := urgentLimit(len(s.bulk) > 0); bounded && limit > 0 {
		chunks, _, _ = c.q.takeBytes(s.chunks[:0], limit)
	} else {
		chunks = c.q.take(s.chunks)
	}
	s.chunks = chunks
	if bulkItems > 0 {
		// Only now: an urgent item pushed from here on goes out after
		// these bulk items (BulkPassed).
		c.bulkTaken.Add(uint64(bulkItems))
	}
	if len(chunks) == 0 && len(s.bulk) == 0 {
		return nil
	}
	var total int
	for _, ch := range chunks {
		s.items = ch.appendItems(s.items)
		total += len(ch.b)
	}
	for _, ch := range s.bulk {
		s.items = ch.appendItems(s.items)
	}
	plain := c.drain(s.plain[:0], s.items)
	if len(s.items) == 1 {
		s.items[0] = nil // a direct write's one item: no call to clear
	} else {
		clear(s.items)
	}
	s.items = s.items[:0]
	for i, ch := range chunks {
		putChunk(ch)
		chunks[i] = nil
	}
	for i, ch := range s.bulk {
		putChunk(ch)
		s.bulk[i] = nil
	}
	s.bulk = s.bulk[:0]
	c.queued.Add(-int64(total))
	c.spendBacklog(int64(total))
	if bulkBytes > 0 {
		c.bulkQueued.Add(-int64(bulkBytes))
	}
	c.wakeSenders()
	return plain
}

// appendItems appends a view of each of ch's items to items.
func (ch *chunk) appendItems(items [][]byte) [][]byte {
	start := 0
	for _, end := range ch.ends {
		items = append(items, ch.b[start:end])
		start = end
	}
	return items
}

// keepPlain keeps the drain buffer for reuse unless it grew huge.
func (s *scratch) keepPlain(b []byte) {
	if cap(b) > 8<<20 {
		b = nil
	}
	s.plain = b[:0]
}

// schedule asks the loop to drain c. Called by the sender whose CAS set
// c.scheduled. Any goroutine.
func (ls *loopState) schedule(c *Conn) {
	c.dbgTokenHeld("schedule")
	ls.mu.Lock()
	ls.ready = append(ls.ready, c)
	wake := !ls.pending
	ls.pending = true
	ls.mu.Unlock()
	if wake && !ls.busy.Load() {
		ls.e.execute(ls, ls)
	}
}

// Run implements gnet.Runnable: the wake-up task. Loop only.
func (ls *loopState) Run(context.Context) error {
	ls.taskStarted()
	ls.enter()
	ls.leave()
	ls.idleWait(nil)
	return nil
}

func (ls *loopState) enter() { ls.busy.Store(true) }

// taskStarted counts one of our gnet tasks as no longer pending (idle.go).
// Loop only, first thing in each task execute queued.
func (ls *loopState) taskStarted() { ls.owed.Add(-1) }

// idleWait parks the loop goroutine in Go's netpoller until gnet has an
// event for it (idle.go), when it has nothing else to do. Loop only, at the
// end of an input callback (in, that callback's conn) or one of our tasks
// (in, nil): a process may take the read duty of in, or of any conn when
// in is nil, while the loop waits (inline.go, rule 1).
func (ls *loopState) idleWait(in *Conn) {
	w := ls.idle.Load()
	if w == nil || ls.busy.Load() || len(ls.after) > 0 {
		return
	}
	w.wait(ls, in)
}

// leave drains every scheduled conn, runs what AfterFlush deferred (then
// drains again), then clears busy and checks once more (a sender that saw
// busy set did not wake the loop).
func (ls *loopState) leave() {
	for {
		for ls.runReady() {
		}
		if len(ls.after) > 0 {
			ls.runAfter()
			continue
		}
		ls.busy.Store(false)
		ls.mu.Lock()
		empty := len(ls.ready) == 0
		ls.mu.Unlock()
		if empty {
			return
		}
		ls.busy.Store(true)
	}
}

// runAfter runs the functions AfterFlush deferred, in order. Those they
// defer in turn wait for the next drain. Loop only.
func (ls *loopState) runAfter() {
	fns := ls.after
	ls.after = ls.afterSpare[:0]
	for i, fn := range fns {
		fns[i] = nil
		fn()
	}
	ls.afterSpare = fns[:0]
}

func (ls *loopState) runReady() bool {
	ls.mu.Lock()
	r := ls.ready
	ls.ready = ls.spare[:0]
	ls.pending = false
	ls.mu.Unlock()
	if len(r) == 0 {
		ls.spare = r
		return false
	}
	for i, c := range r {
		c.flushQueue(ls)
		r[i] = nil
	}
	ls.mu.Lock()
	ls.spare = r[:0]
	ls.mu.Unlock()
	return true
}

// gnetHandler connects gnet's callbacks to the conns.
type gnetHandler struct {
	gnet.BuiltinEventEngine
	e *Engine
}

func (h *gnetHandler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return nil, gnet.Close
	}
	ls := h.e.loopFor(gc.EventLoop())
	if !ls.idleTried {
		ls.idleTried = true
		if w := findIdleWait(h.e.idleCandidates(), gc.Fd()); w != nil {
			ls.idle.Store(w)
		}
	}
	c.gc = gc
	ls.conns = append(ls.conns, c)
	ls.enter()
	c.mu.Lock()
	c.start = startOnLoop
	c.ls.Store(ls)
	tasks := c.preStart
	c.preStart = nil
	c.mu.Unlock()
	c.dbgOpen()
	c.dbgReadEnter(true)
	c.readTLS(ls, &ls.rbuf, nil, true) // records tls.Conn buffered during the handshake
	c.dbgReadLeave()
	for _, fn := range tasks {
		if !c.reached(socketClosed) {
			fn()
		}
	}
	switch {
	case c.openOwed.CompareAndSwap(true, false):
		// A sender won the token before the loop was stored and left
		// the drain to this callback (handToLoop).
		c.flushQueue(ls) // enables direct writes when done
	case c.scheduled.Load():
		// The token is held by a sender that saw the loop and dispatches
		// it (a drain on the ready list: run by leave below, or by a
		// wake-up of the loop after this callback), or by a task or read
		// above that drains itself: not this callback's.
	case !c.reached(closing) && gc.OutboundBuffered() == 0:
		c.dbgGnetEmpty()
		c.direct.Store(true)
	}
	ls.leave()
	return nil, gnet.None
}

func (h *gnetHandler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return gnet.Close
	}
	in, _ := gc.Next(-1)
	if c.reached(closing) {
		return gnet.None // input after close_notify is dropped
	}
	ls := c.ls.Load()
	if c.readerAway() {
		// A process reads the socket (inline.go) and gnet read it too,
		// which the rules of the duty exclude: the stream's order is
		// lost, so close rather than go on.
		c.inlineFailed.Add(1)
		c.setReason(fmt.Errorf("%w: input read by the loop while a process read it", ErrClosed))
		return gnet.Close
	}
	c.dbgReadEnter(true)
	ls.enter()
	c.readTLS(ls, &ls.rbuf, in, true)
	c.dbgReadLeave()
	ls.leave()
	ls.idleWait(c)
	return gnet.None
}

func (h *gnetHandler) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return gnet.None
	}
	c.direct.Store(false)
	c.dropDup()
	c.endInline() // no process reads the socket from here on
	ls := c.ls.Load()
	if ls != nil {
		ls.dropConn(c)
	}
	if c.closeAsked {
		c.closeAsked = false
		c.ls.Load().owed.Add(-1)
	}
	if c.lingering && peerEOF(err) && gc.OutboundBuffered() == 0 {
		// The peer closed after a graceful close_notify, and gnet's buffer
		// is empty: the socket took everything before linger's next poll
		// would have seen it (the peer closes once it read close_notify,
		// which can beat that poll).
		c.flushedAll.Store(true)
	}
	if err == nil {
		err = ErrEngineClosed // gnet closed it without a cause: the loops are stopping
	} else {
		err = fmt.Errorf("%w: %w", ErrPeerClosed, err)
	}
	reason := c.setReason(err)
	c.advance(socketClosed)
	c.deliverClose(reason)
	c.dbgClose()
	return gnet.None
}

// dropConn takes c out of the loop's conns and closes the loop's
// duplicate of its socket, if any (idle.go). Loop only, in OnClose.
func (ls *loopState) dropConn(c *Conn) {
	ls.conns = removeConn(ls.conns, c)
	if w := ls.idle.Load(); w != nil {
		w.dropSock(c)
	}
}

// peerEOF reports whether gnet closed the conn because a read found the
// peer's FIN (a clean close), with its outbound buffer as it was. gnet
// (v2.9.7) reports that as a read syscall error wrapping io.EOF. Its
// other paths report a bare io.EOF: an error or hang-up event with nothing
// to read or write, which first drops the outbound buffer (an empty buffer
// then says nothing about what the socket took), and a peer's half-close
// seen without a readable event; both stay ErrClosed, the safe side.
func peerEOF(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && errors.Is(se.Err, io.EOF)
}

// tcpNotSentLowat is TCP_NOTSENT_LOWAT (linux/tcp.h), which package syscall
// does not name.
const tcpNotSentLowat = 25

// The kernel's queues are left to the kernel (a receive buffer autotuned
// up to net.ipv4.tcp_rmem's maximum, no unsent limit) until bulk data
// flows, and kept short from then on (WithSocketBuffers): a small item can
// overtake bulk data only while both are still in the conn's queue. The
// sending side knows when its bulk lane has items (paceBulk, each drain);
// the receiving side learns it from its handler (ShortenReceive).

// paceBulk sets the socket's unsent limit (TCP_NOTSENT_LOWAT, Linux) to
// WithSocketBuffers' notSent while the bulk lane has items (bulk), and back
// to the kernel's setting once it has none. One setsockopt per change; a
// failure is logged and the socket keeps its limit: the link works, only
// with a deeper or shorter kernel queue. Loop only.
func (c *Conn) paceBulk(bulk bool) {
	n := c.e.opts.notSent
	if bulk == c.shortSend || n == 0 || c.bulkOnly.Load() || runtime.GOOS != "linux" || c.reached(socketClosed) {
		return
	}
	c.shortSend = bulk
	if !bulk {
		n = 0 // the sysctl's limit (net.ipv4.tcp_notsent_lowat)
	}
	if err := syscall.SetsockoptInt(c.gc.Fd(), syscall.IPPROTO_TCP, tcpNotSentLowat, n); err != nil {
		c.e.log.Warn("loop: TCP_NOTSENT_LOWAT", "remote", c.remote, "err", err)
	}
}

// SetBulkOnly tells the engine that the conn carries bulk data only (a
// node's companion connection: large messages' fragments, acknowledged
// the other way), so nothing small waits behind its bytes. Its socket's
// queues stay the kernel's (paceBulk and ShortenReceive do nothing: short
// queues would only cost it bandwidth), and it is served by the engine's
// bulk loops, event loops of their own (as many as the engine's, made at
// the first such Start), so that reading and writing it never delays a
// conn that carries small items. Call it before Start, from any goroutine.
func (c *Conn) SetBulkOnly() { c.bulkOnly.Store(true) }

// ShortenReceive tells the conn that its input carries the peer's bulk
// data (EnqueueBulk items, such as a large message's fragments): the
// socket's receive buffer is set to WithSocketBuffers' receive size, so the
// peer's kernel cannot send far ahead of this side's reads and the peer's
// small items, which its lanes let overtake bulk data in its queue, do not
// wait behind a window of it here. Until then the kernel autotunes the
// buffer, which a stream of small items needs; once set it stays for the
// conn's life (Linux does not autotune a buffer that was set). It is set
// only while the socket holds less than half that size unread: a buffer
// shrunk under what it holds makes the kernel prune its queue and drop
// arriving segments (retransmitted later, a stall). Otherwise nothing is
// done and a later call tries again; once set, later calls do nothing.
// Call it from the handler's OnData (on the loop, or on a goroutine
// reading inline: either holds the read duty).
func (c *Conn) ShortenReceive() {
	n := c.e.opts.rcvBuf
	if c.shortRecv || n == 0 || c.bulkOnly.Load() || c.reached(socketClosed) {
		return
	}
	fd := c.gc.Fd()
	if unread, err := unreadBytes(fd); err != nil || !canShortenReceive(unread, n) {
		return // a later fragment tries again
	}
	c.shortRecv = true
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, n); err != nil {
		c.e.log.Warn("loop: SO_RCVBUF", "remote", c.remote, "err", err)
	}
}

// removeConn removes c from cs, if there, moving the last conn into its
// place (order does not matter), and returns the shorter slice; the
// vacated slot is cleared so the conn can be collected.
func removeConn(cs []*Conn, c *Conn) []*Conn {
	for i, x := range cs {
		if x == c {
			last := len(cs) - 1
			cs[i], cs[last] = cs[last], nil
			return cs[:last]
		}
	}
	return cs
}
