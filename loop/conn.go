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
//   - scheduled is true from the first push that finds the queue idle until
//     the loop drains; only the CAS winner asks the loop for a drain.
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
}

func newConn(e *Engine, tc *tls.Conn, ad *tlsconn.Adapter, info any, outbound bool) *Conn {
	c := &Conn{
		e: e, tc: tc, ad: ad, info: info, outbound: outbound,
		remote: ad.RemoteAddr(),
		drain:  concatItems,
		done:   make(chan struct{}),
	}
	c.q.init()
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
func (c *Conn) SetHandler(h Handler) { c.handler = h }

// SetDrain sets the function the loop uses to turn one drained run of
// queued items (in order) into output plaintext appended to dst; the default
// concatenates them. It runs on the loop; items are valid only during the
// call. Call it before Start.
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
	if c.handler == nil {
		panic("loop: Start without a handler")
	}
	c.mu.Lock()
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
	c.q.push(getNode(item))
	if !c.scheduled.Load() && c.scheduled.CompareAndSwap(false, true) {
		if ls := c.ls.Load(); ls != nil {
			ls.schedule(c)
		}
		// else: OnOpen has not run; it drains a scheduled queue itself.
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
// low-water mark. Loop only.
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
	ls := c.ls.Load()
	c.ad.SetOutput(ls.out[:0])
	_ = c.tc.Close() // appends close_notify; the adapter does not close the socket
	ls.out = c.ad.TakeOutput()
	c.writeOut(ls.out)
	if !c.gnetClosed {
		_ = c.gc.Close() // asynchronous: OnClose follows on this loop
	}
}

// deliverClose runs Handler.OnClose once and forgets the conn.
func (c *Conn) deliverClose(reason error) {
	if c.delivered {
		return
	}
	c.delivered = true
	c.e.forget(c)
	c.handler.OnClose(c, reason)
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
	if c.closing || c.gnetClosed {
		return
	}
	if ob := c.gc.OutboundBuffered(); int64(ob) >= c.e.opts.high {
		c.armRecheck(ob)
		return // scheduled stays true: senders do not wake the loop meanwhile
	}
	c.backoff, c.lastBacklog = 0, 0
	c.scheduled.Store(false)
	var total int
	for n := c.q.pop(); n != nil; n = c.q.pop() {
		ls.nodes = append(ls.nodes, n)
		ls.items = append(ls.items, n.b)
		total += len(n.b)
	}
	if len(ls.nodes) == 0 {
		return
	}
	plain := c.drain(ls.plain[:0], ls.items)
	for i, n := range ls.nodes {
		putNode(n)
		ls.nodes[i] = nil
		ls.items[i] = nil
	}
	ls.nodes, ls.items = ls.nodes[:0], ls.items[:0]
	c.queued.Add(-int64(total))
	c.wakeSenders()

	c.ad.SetOutput(ls.out[:0])
	_, err := c.tc.Write(plain)
	ls.out = c.ad.TakeOutput()
	ls.keepPlain(plain)
	if err != nil {
		c.closeOnLoop(fmt.Errorf("%w: write: %w", ErrTLS, err))
		return
	}
	c.writeOut(ls.out)
}

const (
	minRecheck = time.Millisecond
	maxRecheck = 32 * time.Millisecond
)

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
	if out := c.ad.TakeOutput(); len(out) > 0 { // a KeyUpdate reply
		c.writeOut(out)
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
