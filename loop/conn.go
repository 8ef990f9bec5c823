package loop

// Invariants (see doc.go for the whole picture):
//   - Fields under "loop only" are touched only on the conn's loop, after
//     OnOpen. tc and ad are used by the handshake goroutine until Start, then
//     by the loop only.
//   - mu guards state, reason, preStart and the publication of ls for exec.
//     It is a leaf lock except that waitMu is never taken under it and it
//     is never held across a call into gnet, TLS or the handler.
//   - waitMu guards waitCh; waiters mirrors "someone may wait" so the loop
//     takes waitMu only when needed.
//   - scheduled is the drain token: true from the first push that finds the
//     queue idle until a drain releases it. Only its holder pops the queue,
//     touches spill, or calls tls.Conn Write/Close: the CAS winner either
//     drains itself (a direct write, when direct is set and the conn was
//     idle) or hands the token to the loop. The loop's flushQueue releases
//     it before popping but clears direct first, so no sender drains while
//     the loop is still writing; it sets direct again only with gnet's
//     outbound buffer empty. A direct writer releases it after writing and
//     then rechecks queued, closingA and the adapter's pending output.
//   - dfd (a dup of the socket) is written only by a direct writer holding
//     a dref reference; the loop's reference goes at gnet's OnClose and the
//     last reference closes it, so the number is never reused under a
//     writer.
//   - queued counts bytes pushed and not yet drained. It may overshoot high
//     by the concurrent senders' items, never more.
//   - done is closed exactly once, when the first close reason is set.
//   - Handler.OnClose runs exactly once: on the loop for a started conn
//     (gnet's OnClose), else on the goroutine whose Close won.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/meshrt/mesh/tlsconn"
)

// Handler receives a connection's input and its end. Both methods run on
// the conn's loop (OnClose runs off the loop only for a conn closed before
// Start); they must not block.
type Handler interface {
	// OnData is offered plaintext in order. It returns how many leading
	// bytes it consumed; the rest is kept and offered again, followed by
	// more input. b is valid only during the call. A non-nil error closes
	// the connection with that reason.
	OnData(c *Conn, b []byte) (consumed int, err error)
	// OnClose runs exactly once per connection with the first close
	// reason: the one given to Close, ErrPeerClosed (wrapping the cause),
	// ErrEngineClosed, or the error a step failed with.
	OnClose(c *Conn, reason error)
}

type connState int

const (
	stateNew      connState = iota // handshake done, not started
	stateStarting                  // Start is enrolling the socket
	stateStarted                   // on its loop
	stateClosed                    // closed before it got on a loop
)

// Conn is an authenticated connection served by an event loop. Create it
// with Engine.Dial or receive it from Listen's accept function, set its
// handler, then Start it.
type Conn struct {
	e        *Engine
	tc       *tls.Conn
	ad       *tlsconn.Adapter
	info     any
	outbound bool
	remote   net.Addr
	handler  Handler
	drain    func(dst []byte, items [][]byte) []byte

	// send side, any goroutine
	q         sendQueue
	queued    atomic.Int64
	scheduled atomic.Bool
	closed    atomic.Bool
	done      chan struct{}
	ls        atomic.Pointer[loopState]
	waiters   atomic.Bool
	waitMu    sync.Mutex
	waitCh    chan struct{}

	// direct writes (see doc.go)
	direct      atomic.Bool   // the token winner may drain and write itself
	closingA    atomic.Bool   // closing, for senders
	idleSince   atomic.Int64  // monoNow() when the last drain ended
	nDirect     atomic.Uint64 // direct drains, for tests
	nSocketWait atomic.Uint64 // socket waits armed, for tests
	dfd         int           // dup of the socket, for direct writes
	dref        atomic.Int32  // references to dfd; 0: none, closed
	// owned by the holder of scheduled
	spill []byte  // ciphertext a direct write left unsent; the loop sends it first
	ds    scratch // direct-write scratch
	dout  []byte

	mu       sync.Mutex
	state    connState
	reason   error
	preStart []func()

	// loop only
	gc          gnet.Conn
	closing     bool // tls closed, gnet close requested
	gnetClosed  bool // gnet's OnClose ran: never touch gc again
	delivered   bool // Handler.OnClose ran
	leftover    []byte
	recheck     bool          // a backpressure recheck timer is armed
	backoff     time.Duration // last recheck delay
	lastBacklog int           // gnet's backlog at the last recheck
	sockWaits   int           // socket waits in a row without the backlog shrinking
	sockBacklog int           // gnet's backlog at the last socket wait
	closeSent   bool          // close_notify written, gnet close requested
	fdOwned     bool          // the loop holds its dref reference
}

func newConn(e *Engine, tc *tls.Conn, ad *tlsconn.Adapter, info any, outbound bool) *Conn {
	c := &Conn{
		e: e, tc: tc, ad: ad, info: info, outbound: outbound,
		remote: ad.RemoteAddr(),
		drain:  concatItems,
		done:   make(chan struct{}),
	}
	return c
}

func concatItems(dst []byte, items [][]byte) []byte {
	for _, it := range items {
		dst = append(dst, it...)
	}
	return dst
}

// Info returns what the post-TLS hook returned for this connection. Safe
// from any goroutine.
func (c *Conn) Info() any { return c.info }

// Outbound reports whether this side dialled. Safe from any goroutine.
func (c *Conn) Outbound() bool { return c.outbound }

// RemoteAddr returns the peer's address. Safe from any goroutine.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// ConnectionState returns the TLS state (for channel binding and logs).
// Call it before Start or on the conn's loop.
func (c *Conn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// SetHandler sets the handler. Call it before Start, from the goroutine
// that holds the new conn.
func (c *Conn) SetHandler(h Handler) {
	c.mu.Lock()
	c.handler = h
	c.mu.Unlock()
}

// SetDrain sets the function used to turn one drained run of queued items
// (in order) into output plaintext appended to dst; the default
// concatenates them. It runs on the loop, or on a sender doing a direct
// write, never twice at once (each call happens after the previous one
// returned); items are valid only during the call. Call it before Start.
func (c *Conn) SetDrain(fn func(dst []byte, items [][]byte) []byte) {
	if fn != nil {
		c.drain = fn
	}
}

// Start hands the connection to a loop and begins delivering input to the
// handler (SetHandler first). It returns once the conn is on its loop, or
// after delivering OnClose if the conn or the engine is closed. Call it
// once, from any goroutine but a loop callback (it waits for the loop).
func (c *Conn) Start() {
	c.mu.Lock()
	if c.handler == nil {
		c.mu.Unlock()
		panic("loop: Start without a handler")
	}
	if c.state != stateNew {
		c.mu.Unlock()
		return
	}
	c.state = stateStarting
	c.mu.Unlock()

	e := c.e
	if !e.beginStart() {
		c.failStart(ErrEngineClosed)
		return
	}
	defer e.wg.Done()
	nc := c.ad.Detach()
	// EnrollContext dups the fd, closes nc, and returns after OnOpen ran on
	// the chosen loop.
	if _, err := e.cli.EnrollContext(nc, c); err != nil {
		c.failStart(fmt.Errorf("loop: enrol: %w", err))
	}
}

func (c *Conn) failStart(reason error) {
	c.mu.Lock()
	c.state = stateClosed
	c.preStart = nil
	c.mu.Unlock()
	reason = c.setReason(reason)
	_ = c.ad.Close()
	c.deliverClose(reason)
}

// Enqueue copies item into the conn's send queue; the loop writes queued
// items in order, many per socket write. It blocks while the conn's queued
// bytes are at the high-water mark, until the loop brings them below the
// low-water mark, ctx is done (the error wraps ctx.Err()) or the conn
// closes (the error wraps ErrClosed). It does not allocate in steady state.
// Safe from any goroutine, including the conn's own loop (where it must not
// be made to wait: the loop is what drains).
func (c *Conn) Enqueue(ctx context.Context, item []byte) error {
	if c.closed.Load() {
		return c.closedErr()
	}
	if c.queued.Load() >= c.e.opts.high {
		if err := c.waitRoom(ctx); err != nil {
			return err
		}
	}
	c.push(item)
	return nil
}

// push queues a copy of item and schedules the conn on its loop if it was
// not scheduled already (only the CAS winner does).
func (c *Conn) push(item []byte) {
	c.queued.Add(int64(len(item)))
	c.q.push(item)
	if !c.scheduled.Load() && c.scheduled.CompareAndSwap(false, true) {
		if ls := c.ls.Load(); ls != nil {
			c.dispatch(ls)
		}
		// else: OnOpen has not run; it drains a scheduled queue itself.
	}
}

// directIdleGap: a sender that wins the drain token writes itself only if
// no drain ended for this long. A stream (the next push right after a
// drain) thus stays on the loop, where items batch; a lone message (a
// request, a ping) skips the loop's wake-up.
const directIdleGap = 5 * time.Microsecond

// directSpacing: at most one direct write per loop in this interval. Direct
// writes cost a TLS seal and a write(2) each; a sender spreading a stream
// over many connections finds every one of them idle, and without this
// bound paid a syscall per message (50 connections ran at 0.02x the
// baseline). Requests and pings, which are what direct writes are for, come
// far less often than this per loop.
const directSpacing = 20 * time.Microsecond

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
		if now-c.idleSince.Load() >= int64(directIdleGap) && now-last >= int64(directSpacing) &&
			ls.lastDirect.CompareAndSwap(last, now) {
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
	if !c.acquireFD() {
		ls.schedule(c)
		return
	}
	c.nDirect.Add(1)
	// prev: output a Read produced (KeyUpdate) while nobody held the token.
	prev := c.ad.SwapOutput(c.dout)
	plain := c.ds.drainQueue(c)
	var werr error
	if len(plain) > 0 {
		_, werr = c.tc.Write(plain)
		c.ds.keepPlain(plain)
	}
	out := c.ad.SwapOutput(nil)
	rest := prev
	if len(prev) > 0 {
		rest = writeFD(c.dfd, prev)
	}
	if len(rest) == 0 {
		rest = writeFD(c.dfd, out)
	} else {
		rest = append(rest, out...)
	}
	c.releaseFD()
	if len(rest) > 0 {
		c.direct.Store(false)
		c.spill = append(c.spill, rest...)
	}
	if cap(out) <= maxDirectOut {
		c.dout = out[:0]
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
	if (c.queued.Load() > 0 || c.closingA.Load() || c.ad.PendingOutput()) &&
		c.scheduled.CompareAndSwap(false, true) {
		ls.schedule(c) // busy or closing: the loop takes over
	}
}

// maxDirectOut: a direct writer keeps its output buffer up to this size.
const maxDirectOut = 64 << 10

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

// acquireFD takes a reference to dfd, unless it is closed.
func (c *Conn) acquireFD() bool {
	for {
		r := c.dref.Load()
		if r <= 0 {
			return false
		}
		if c.dref.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// releaseFD drops a reference to dfd; the last one closes it.
func (c *Conn) releaseFD() {
	if c.dref.Add(-1) == 0 {
		_ = syscall.Close(c.dfd)
	}
}

// EnqueueNoWait is Enqueue for items that must go out without their sender
// ever waiting: control signals, and anything sent from a loop. It copies
// item into the queue whatever the high-water mark says. Past the hard limit
// (four times the high-water mark) it closes the conn with ErrSlowConsumer
// instead, so memory stays bounded and the peer's loss is reported, never
// silent. Safe from any goroutine, including any loop.
func (c *Conn) EnqueueNoWait(item []byte) error {
	if c.closed.Load() {
		return c.closedErr()
	}
	if c.queued.Load() >= 4*c.e.opts.high {
		_ = c.Close(ErrSlowConsumer)
		return c.closedErr()
	}
	c.push(item)
	return nil
}

// Queued returns the bytes enqueued and not yet taken by the loop. Safe from
// any goroutine.
func (c *Conn) Queued() int { return int(c.queued.Load()) }

func (c *Conn) waitRoom(ctx context.Context) error {
	for {
		c.waitMu.Lock()
		c.waiters.Store(true)
		if c.queued.Load() < c.e.opts.high {
			c.waitMu.Unlock()
			return nil
		}
		if c.waitCh == nil {
			c.waitCh = make(chan struct{})
		}
		ch := c.waitCh
		c.waitMu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			return c.closedErr()
		case <-ctx.Done():
			return fmt.Errorf("loop: send queue full: %w", ctx.Err())
		}
	}
}

// wakeSenders releases senders waiting for room once queued is below the
// low-water mark. Holder of the drain token.
func (c *Conn) wakeSenders() {
	if !c.waiters.Load() || c.queued.Load() >= c.e.opts.low {
		return
	}
	c.waitMu.Lock()
	if c.waitCh != nil {
		close(c.waitCh)
		c.waitCh = nil
	}
	c.waiters.Store(false)
	c.waitMu.Unlock()
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
		c.closed.Store(true)
		close(c.done)
	}
	r := c.reason
	c.mu.Unlock()
	return r
}

// Close closes the connection: close_notify, then the socket, on the loop.
// The first reason given (to Close or by a failure) sticks and is what
// OnClose receives. Safe from any goroutine; it does not wait for OnClose.
func (c *Conn) Close(reason error) error {
	reason = c.setReason(reason)
	c.mu.Lock()
	if c.state == stateNew {
		c.state = stateClosed
		c.mu.Unlock()
		_ = c.tc.Close() // blocking mode: close_notify with tls's own deadline, then the socket
		c.deliverClose(reason)
		return nil
	}
	c.mu.Unlock()
	c.exec(func() { c.closeOnLoop(reason) })
	return nil
}

// AfterFunc runs fn on the conn's loop after about d, unless the conn has
// closed by then or the timer is stopped. A timer set before Start fires
// after Start. Safe from any goroutine.
func (c *Conn) AfterFunc(d time.Duration, fn func()) *Timer {
	return c.e.timers.add(c, d, fn)
}

// Execute runs fn on the conn's loop soon (after Start), unless the conn
// has closed by then. Safe from any goroutine.
func (c *Conn) Execute(fn func()) { c.exec(fn) }

// exec runs fn on the loop (queued until OnOpen when not yet there). fn is
// skipped once gnet closed the conn.
func (c *Conn) exec(fn func()) {
	c.mu.Lock()
	ls := c.ls.Load()
	if ls == nil {
		if c.state == stateNew || c.state == stateStarting {
			c.preStart = append(c.preStart, fn)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.e.execute(ls.el, gnet.RunnableFunc(func(context.Context) error {
		ls.enter()
		if !c.gnetClosed {
			fn()
		}
		ls.leave()
		return nil
	}))
}

// closeOnLoop sends close_notify and asks gnet to close the socket; gnet's
// OnClose then delivers Handler.OnClose. Loop only.
func (c *Conn) closeOnLoop(reason error) {
	c.setReason(reason)
	if c.closing || c.gnetClosed {
		return
	}
	c.closing = true
	c.closingA.Store(true)
	c.direct.Store(false)
	// The token's holder writes close_notify: the loop itself when it holds
	// the token (a backlog recheck) or wins it now; else a direct writer,
	// which hands the token to the loop when it sees closingA, or the
	// loop's pending flush.
	if c.recheck || c.scheduled.CompareAndSwap(false, true) {
		c.finishClose(c.ls.Load())
	}
}

// finishClose sends what is pending, then close_notify, and asks gnet to
// close the socket. Loop only, holding the drain token.
func (c *Conn) finishClose(ls *loopState) {
	if c.closeSent || c.gnetClosed {
		return
	}
	c.closeSent = true
	prev := c.ad.SwapOutput(ls.out)
	// What was queued before the close goes out before close_notify: a
	// sender that enqueued while another held the drain token must not
	// lose its items to a close that came after them.
	if plain := ls.s.drainQueue(c); len(plain) > 0 {
		_, _ = c.tc.Write(plain)
		ls.s.keepPlain(plain)
	}
	_ = c.tc.Close() // appends close_notify; the adapter does not close the socket
	out := c.ad.SwapOutput(nil)
	c.writePending(prev, out)
	ls.out = out[:0]
	if !c.gnetClosed {
		_ = c.gc.Close() // asynchronous: OnClose follows on this loop
	}
}

// writePending hands gnet, in order: the spill of an earlier direct write,
// output produced while nobody held the token (prev), then out. Loop only,
// holding the drain token.
func (c *Conn) writePending(prev, out []byte) {
	if len(c.spill) > 0 {
		c.writeOut(c.spill)
		c.spill = c.spill[:0]
		if cap(c.spill) > maxDirectOut {
			c.spill = nil
		}
	}
	c.writeOut(prev)
	c.writeOut(out)
}

// deliverClose runs Handler.OnClose once and forgets the conn.
func (c *Conn) deliverClose(reason error) {
	if c.delivered {
		return
	}
	c.delivered = true
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

// writeOut hands ciphertext to gnet: one write, the unwritten rest copied
// into gnet's outbound buffer. Loop only.
func (c *Conn) writeOut(b []byte) {
	if len(b) == 0 || c.gnetClosed {
		return
	}
	_, _ = c.gc.Write(b) // on failure gnet closes the conn and calls OnClose
}

// flushQueue drains every queued item into one TLS write and one socket
// write, unless the socket is backed up. Loop only.
func (c *Conn) flushQueue(ls *loopState) {
	if c.gnetClosed || c.closeSent {
		return // the token stays taken: nothing more goes out
	}
	if c.closing {
		c.finishClose(ls)
		return
	}
	if ob := c.gc.OutboundBuffered(); int64(ob) >= c.e.opts.high {
		c.armRecheck(ob)
		return // scheduled stays true: senders do not wake the loop meanwhile
	} else if ob > 0 {
		// The socket is full. While gnet's backlog drains, wait briefly;
		// if it stops draining (the peer has stopped reading), back off
		// as for a full backlog rather than wake every socketWait.
		if ob < c.sockBacklog {
			c.sockWaits = 0
		}
		c.sockBacklog = ob
		if c.sockWaits < maxSocketWaits {
			c.sockWaits++
			c.armSocketWait()
		} else {
			c.armRecheck(ob)
		}
		return
	}
	c.sockWaits, c.sockBacklog = 0, 0
	c.backoff, c.lastBacklog = 0, 0
	// direct first: a sender that wins the token from here on hands it back
	// to the loop instead of writing while the loop still does.
	c.direct.Store(false)
	c.scheduled.Store(false)
	prev := c.ad.SwapOutput(ls.out)
	plain := ls.s.drainQueue(c)
	var err error
	if len(plain) > 0 {
		_, err = c.tc.Write(plain)
		ls.s.keepPlain(plain)
	}
	out := c.ad.SwapOutput(nil)
	c.writePending(prev, out)
	ls.out = out[:0]
	if cap(ls.out) > 8<<20 {
		ls.out = nil
	}
	if err != nil {
		c.closeOnLoop(fmt.Errorf("%w: write: %w", ErrTLS, err))
		return
	}
	c.idleSince.Store(monoNow())
	if !c.gnetClosed && c.gc.OutboundBuffered() == 0 {
		c.direct.Store(true)
	}
}

const (
	minRecheck = time.Millisecond
	maxRecheck = 32 * time.Millisecond
)

// socketWait: how long the loop leaves items queued when the socket was
// full at gnet's last write (gnet holds the rest and waits for the socket).
// Writing them now would only copy their ciphertext into gnet's buffer;
// after the wait they go out in one larger write, mostly straight into the
// socket. A socket buffer holds far more than this much traffic, so the
// wait does not let it run dry.
const socketWait = 100 * time.Microsecond

// maxSocketWaits: socket waits in a row with gnet's backlog not shrinking
// before the loop backs off (armRecheck).
const maxSocketWaits = 4

// armSocketWait flushes the queue again after socketWait. Loop only,
// holding the drain token.
func (c *Conn) armSocketWait() {
	if c.recheck {
		return
	}
	c.recheck = true
	c.nSocketWait.Add(1)
	c.AfterFunc(socketWait, func() {
		c.recheck = false
		c.flushQueue(c.ls.Load())
	})
}

// armRecheck polls the socket backlog while it is above the high-water
// mark (gnet does not report when its outbound buffer drains): every
// millisecond while the backlog shrinks, backing off to 32 ms while the
// peer reads nothing.
func (c *Conn) armRecheck(backlog int) {
	if c.recheck {
		return
	}
	c.recheck = true
	if c.backoff == 0 || backlog < c.lastBacklog {
		c.backoff = minRecheck
	} else {
		c.backoff = min(2*c.backoff, maxRecheck)
	}
	c.lastBacklog = backlog
	c.AfterFunc(c.backoff, func() {
		c.recheck = false
		c.flushQueue(c.ls.Load())
	})
}

// minReadRoom is the free space kept for one tls.Conn Read: a whole record.
const minReadRoom = 16<<10 + 256

// readBatch: plaintext gathered before the handler is called.
const readBatch = 64 << 10

// readTLS decrypts the fed ciphertext (and whatever tls.Conn buffered) and
// offers the plaintext to the handler. Loop only.
func (c *Conn) readTLS(ls *loopState, in []byte) {
	if c.closing || c.gnetClosed {
		return
	}
	c.ad.Feed(in)
	// Gather into the conn's own buffer when it holds an incomplete frame,
	// else into the loop's scratch buffer.
	own := len(c.leftover) > 0
	buf := ls.rbuf[:0]
	if own {
		buf = c.leftover
	}
	var rerr error
	for {
		if cap(buf)-len(buf) < minReadRoom {
			buf = growBuf(buf, minReadRoom)
		}
		n, err := c.tc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if !tlsconn.IsWouldBlock(err) {
				rerr = err
			}
			break
		}
		if len(buf) >= readBatch {
			if buf, own = c.offer(ls, buf, own); buf == nil {
				return
			}
		}
	}
	c.ad.Feed(nil)
	if len(buf) > 0 {
		if buf, own = c.offer(ls, buf, own); buf == nil {
			return
		}
	}
	if own {
		c.leftover = buf
	} else {
		ls.rbuf = buf[:0]
	}
	// A KeyUpdate answer: the token's holder sends it; if nobody holds the
	// token, take it and send it now.
	if c.ad.PendingOutput() && !c.closing && c.scheduled.CompareAndSwap(false, true) {
		c.flushQueue(ls)
	}
	if rerr != nil {
		if errors.Is(rerr, io.EOF) {
			c.closeOnLoop(fmt.Errorf("%w: close_notify", ErrPeerClosed))
		} else {
			c.closeOnLoop(fmt.Errorf("%w: read: %w", ErrTLS, rerr))
		}
	}
}

// offer gives buf to the handler and keeps what it leaves. It returns the
// buffer to continue gathering in (nil when the conn is closing) and
// whether that is the conn's own buffer.
func (c *Conn) offer(ls *loopState, buf []byte, own bool) ([]byte, bool) {
	if c.closed.Load() {
		c.ad.Feed(nil)
		return nil, false
	}
	n, err := c.handler.OnData(c, buf)
	if err != nil {
		c.ad.Feed(nil)
		c.closeOnLoop(err)
		return nil, false
	}
	n = min(max(n, 0), len(buf))
	rest := len(buf) - n
	switch {
	case rest == 0 && own:
		if cap(buf) > 4*readBatch {
			c.leftover = nil
			return ls.rbuf[:0], false
		}
		c.leftover = buf[:0]
		return ls.rbuf[:0], false
	case rest == 0:
		return buf[:0], false
	case rest > c.e.opts.maxInput:
		c.ad.Feed(nil)
		c.closeOnLoop(ErrInputTooLarge)
		return nil, false
	case own:
		copy(buf, buf[n:])
		return buf[:rest], true
	default:
		c.leftover = append(c.leftover[:0], buf[n:]...)
		ls.rbuf = buf[:0]
		return c.leftover, true
	}
}

func growBuf(b []byte, room int) []byte {
	nb := make([]byte, len(b), max(2*cap(b), len(b)+room, readBatch+minReadRoom))
	copy(nb, b)
	return nb
}
