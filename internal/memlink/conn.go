// Package memlink is an in-memory stand-in for [loop.Conn], for tests of
// what runs above a connection: [Pair] makes two connected ends, and a
// [Network] routes dials between named endpoints and can cut two of them
// apart. No TLS, no socket, no event loop: bytes go from one end's send
// queue into the other end's input, each end served by one goroutine.
//
// An end serves a [loop.Handler] with loop's semantics, so code written for
// loop.Conn runs over it unchanged:
//
//   - OnData is offered the bytes in order, one call at a time, on the
//     end's goroutine; unconsumed bytes are kept and offered again with
//     more, bounded ([WithMaxInputPending]: past it the end closes with
//     [loop.ErrInputTooLarge]). The *loop.Conn argument is nil: a handler
//     that serves memlink ends must know its connection otherwise.
//   - OnClose runs exactly once per end with the first reason: the one
//     given to Close or Shutdown, [loop.ErrPeerClosed] when the other end
//     closed, [loop.ErrEngineClosed] when the end's [Endpoint] closed, the
//     error OnData returned. It runs on the end's goroutine for a started
//     end; for an end closed before Start, on the closing goroutine if a
//     handler is set, else in Start (loop.Conn tells nobody then: memlink
//     never loses an end's close, so a test cannot hang on one).
//   - Sends are bounded: [Conn.Enqueue] waits while the end's queued bytes
//     are at the high-water mark until its goroutine brings them below the
//     low one; [Conn.EnqueueNoWait] never waits and closes the end with
//     [loop.ErrSlowConsumer] past four times the high mark. The goroutine
//     moves the queue to the other end only while that end holds less than
//     the high mark of unread input, so an end whose handler does not
//     keep up holds its sender back, as a socket's buffers do.
//   - Close cuts: what is queued goes out if the other end has room, then
//     the other end sees the close after the bytes before it. Shutdown
//     drains: everything queued goes out with the usual backpressure, then
//     the close, and the end waits for the other to close its side.
//
// Invariants.
//
//  1. mu guards every field under it; it is a leaf lock per end, never held
//     across a handler call, a drain function or the other end's mu.
//  2. Only an end's own goroutine takes its queue, its input, and appends
//     to the other end's input (so an end's input grows only from one
//     goroutine, and shrinks only on its own).
//  3. done closes with the first close reason; gone closes after OnClose.
package memlink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/meshrt/mesh/loop"
)

// ErrPartitioned is the cause of a link's end when a [Network] partition
// cut it, and the error of a dial across a partition. A cut end's OnClose
// reason wraps both [loop.ErrPeerClosed] (the network reset it) and this.
var ErrPartitioned = errors.New("memlink: partitioned")

// errCloseNotify is what an end's OnClose reason wraps when the other end
// closed it, as loop's does for a TLS close_notify.
var errCloseNotify = errors.New("close_notify")

// Defaults of the options.
const (
	DefaultHighWater       = 256 << 10
	DefaultLowWater        = 64 << 10
	DefaultMaxInputPending = loop.DefaultMaxInputPending
)

// Option configures the ends made by [Pair] or a [Network].
type Option func(*options)

type options struct {
	high, low, maxInput int
}

func defaultOptions() options {
	return options{high: DefaultHighWater, low: DefaultLowWater, maxInput: DefaultMaxInputPending}
}

// WithWaterMarks sets the send queue's marks in bytes (defaults 64 KiB and
// 256 KiB): Enqueue waits at high until the queue is below low; high also
// bounds the unread input an end accepts from the other. Values with
// low < 0 or high <= low are ignored.
func WithWaterMarks(low, high int) Option {
	return func(o *options) {
		if low >= 0 && high > low {
			o.low, o.high = low, high
		}
	}
}

// WithMaxInputPending bounds the input a handler may leave unconsumed
// (default loop's, 16 MiB); n <= 0 is ignored.
func WithMaxInputPending(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxInput = n
		}
	}
}

// Conn is one end of an in-memory link. Make a pair with [Pair] or
// [Endpoint.Dial]; set its handler, then Start it. Its methods are those of
// [loop.Conn] that a connection's user calls, with loop's semantics (see the
// package documentation).
type Conn struct {
	other    *Conn
	opts     *options
	info     any
	outbound bool
	ep       *Endpoint // the endpoint that owns this end, or nil (Pair)

	queued  atomic.Int64  // bytes in the queue, read without mu
	backlog atomic.Int64  // bytes allowed past the hard limit (AllowBacklog)
	wake    chan struct{} // capacity 1: the end's goroutine has work
	done    chan struct{} // closed with the first close reason
	gone    chan struct{} // closed after OnClose ran

	mu         sync.Mutex
	handler    loop.Handler
	drain      func(dst []byte, items [][]byte) []byte
	started    bool
	reason     error  // the first close reason
	shutdown   bool   // Shutdown: drain the queue, then close
	delivered  bool   // OnClose ran or is running
	atStart    bool   // closed before Start with no handler: Start delivers OnClose
	queue      []byte // queued items, concatenated
	lens       []int  // their lengths, in order
	input      []byte // bytes the other end sent and this end has not taken
	eof        bool   // the other end closed: no more input after input
	frozen     bool   // the network holds this end's input back (Network.Freeze)
	roomCh     chan struct{}
	flushedAll bool // Shutdown: everything went out before the other end closed
}

// Pair returns the two ends of a new link: a is the dialling end
// (Outbound), b the accepting one. Neither has started.
func Pair(opts ...Option) (a, b *Conn) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return newPair(&o, nil, nil, nil, nil)
}

func newPair(o *options, aInfo, bInfo any, aEP, bEP *Endpoint) (a, b *Conn) {
	a = newConn(o, aInfo, true, aEP)
	b = newConn(o, bInfo, false, bEP)
	a.other, b.other = b, a
	return a, b
}

func newConn(o *options, info any, outbound bool, ep *Endpoint) *Conn {
	return &Conn{
		opts:     o,
		info:     info,
		outbound: outbound,
		ep:       ep,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		gone:     make(chan struct{}),
	}
}

// Info returns what the accepting side's handshake gave this end (see
// [Endpoint.Dial]); nil for a [Pair]. Safe from any goroutine.
func (c *Conn) Info() any { return c.info }

// Outbound reports whether this end dialled. Safe from any goroutine.
func (c *Conn) Outbound() bool { return c.outbound }

// SetHandler sets the handler. Call it before Start.
func (c *Conn) SetHandler(h loop.Handler) {
	c.mu.Lock()
	c.handler = h
	c.mu.Unlock()
}

// SetDrain sets the function that turns one run of queued items into the
// bytes sent (default: concatenation), as [loop.Conn.SetDrain]: it runs on
// the end's goroutine, never twice at once. Call it before Start.
func (c *Conn) SetDrain(fn func(dst []byte, items [][]byte) []byte) {
	c.mu.Lock()
	c.drain = fn
	c.mu.Unlock()
}

// Start starts the end's goroutine, which offers input to the handler and
// sends the queue. It panics without a handler, like loop's. On an end
// closed before Start it delivers OnClose (once) and returns. Call it once.
func (c *Conn) Start() {
	c.mu.Lock()
	if c.handler == nil {
		c.mu.Unlock()
		panic("memlink: Start without a handler")
	}
	if c.started {
		c.mu.Unlock()
		return
	}
	c.started = true
	if c.reason != nil && !c.shutdown {
		// Closed before it started: OnClose now, unless it ran already
		// (deliverClose runs it once). Not only when a close marked
		// atStart: a reset sets every end's reason before it closes any
		// (resetAll), so a Start between the two finds a reason and no
		// mark, and its OnClose would otherwise never come.
		c.atStart = false
		reason := c.reason
		c.mu.Unlock()
		c.deliverClose(reason)
		return
	}
	c.mu.Unlock()
	go c.run()
	c.signal()
}

// Enqueue copies item into the end's queue. It waits while the queued bytes
// are at the high-water mark, until they fall below the low one, ctx ends
// (the error wraps ctx.Err()) or the end closes (the error wraps
// [loop.ErrClosed]). Safe from any goroutine.
func (c *Conn) Enqueue(ctx context.Context, item []byte) error {
	for c.queued.Load() >= int64(c.opts.high) {
		c.mu.Lock()
		if c.reason != nil {
			c.mu.Unlock()
			return c.closedErr()
		}
		if c.queued.Load() < int64(c.opts.high) {
			c.mu.Unlock()
			break
		}
		if c.roomCh == nil {
			c.roomCh = make(chan struct{})
		}
		ch := c.roomCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			return c.closedErr()
		case <-ctx.Done():
			return fmt.Errorf("memlink: send queue full: %w", ctx.Err())
		}
	}
	return c.push(item)
}

// EnqueueNoWait copies item into the queue whatever the high-water mark
// says; past four times the mark it closes the end with
// [loop.ErrSlowConsumer] instead. Safe from any goroutine.
func (c *Conn) EnqueueNoWait(item []byte) error {
	if c.queued.Load() >= 4*int64(c.opts.high)+c.backlog.Load() {
		_ = c.Close(loop.ErrSlowConsumer)
		return c.closedErr()
	}
	return c.push(item)
}

// AllowBacklog raises the hard limit of EnqueueNoWait by n bytes until n
// more bytes have left the queue, as [loop.Conn.AllowBacklog]. Safe from
// any goroutine.
func (c *Conn) AllowBacklog(n int) {
	if n > 0 {
		c.backlog.Add(int64(n))
	}
}

// EnqueueBulk is Enqueue: an in-memory link has one lane, nothing
// overtakes, so its ticket (0) has always passed. Safe from any goroutine.
func (c *Conn) EnqueueBulk(ctx context.Context, item []byte) (loop.BulkTicket, error) {
	return 0, c.Enqueue(ctx, item)
}

// EnqueueBulkNoWait is EnqueueNoWait (see EnqueueBulk). Safe from any
// goroutine.
func (c *Conn) EnqueueBulkNoWait(item []byte) (loop.BulkTicket, error) {
	return 0, c.EnqueueNoWait(item)
}

// BulkPassed is always true (see EnqueueBulk). Safe from any goroutine.
func (c *Conn) BulkPassed(loop.BulkTicket) bool { return true }

func (c *Conn) push(item []byte) error {
	c.mu.Lock()
	if c.reason != nil {
		c.mu.Unlock()
		return c.closedErr()
	}
	c.queue = append(c.queue, item...)
	c.lens = append(c.lens, len(item))
	c.queued.Add(int64(len(item)))
	c.mu.Unlock()
	c.signal()
	return nil
}

// Queued returns the bytes enqueued and not yet sent. Safe from any
// goroutine.
func (c *Conn) Queued() int { return int(c.queued.Load()) }

// Close closes the end: what is queued goes out if the other end has room
// for it, then the other end sees the close. The first reason given (nil
// means loop.ErrClosed) sticks and is what OnClose receives. It does not
// wait for OnClose. Safe from any goroutine.
func (c *Conn) Close(reason error) error {
	c.closeEnd(reason)
	return nil
}

// Shutdown closes the end gracefully: Enqueue fails from the call on,
// everything queued before is sent (with backpressure), then the close, and
// the end finishes when the other end has closed its side. If ctx ends
// first the end is cut as by Close. It returns after OnClose ran: nil if
// everything went out before the other end closed, an error wrapping
// ctx.Err() if ctx ended first, else one wrapping [loop.ErrClosed] and the
// reason the end finished with. On an end not started it is Close. Safe
// from any goroutine but the end's own handler.
func (c *Conn) Shutdown(ctx context.Context, reason error) error {
	if reason == nil {
		reason = loop.ErrClosed
	}
	c.mu.Lock()
	if !c.started {
		c.mu.Unlock()
		c.closeEnd(reason)
		return c.closedErr()
	}
	if c.reason == nil {
		c.reason = reason
		c.shutdown = true
		close(c.done)
	}
	c.mu.Unlock()
	c.signal()
	select {
	case <-c.gone:
	case <-ctx.Done():
		c.cut(reason)
		<-c.gone
		return fmt.Errorf("memlink: shutdown: %w", ctx.Err())
	}
	c.mu.Lock()
	ok := c.flushedAll
	c.mu.Unlock()
	if ok {
		return nil
	}
	return c.closedErr()
}

// closedErr is what a send on a closed end returns: loop.ErrClosed
// wrapping the reason.
func (c *Conn) closedErr() error {
	c.mu.Lock()
	r := c.reason
	c.mu.Unlock()
	if r == nil || errors.Is(r, loop.ErrClosed) {
		return loop.ErrClosed
	}
	return fmt.Errorf("%w: %w", loop.ErrClosed, r)
}

// closeEnd sets reason (unless one is set) and ends the end: on its
// goroutine once started, else here.
func (c *Conn) closeEnd(reason error) {
	if reason == nil {
		reason = loop.ErrClosed
	}
	c.mu.Lock()
	if c.reason == nil {
		c.reason = reason
		close(c.done)
	}
	c.shutdown = false // a Close during a Shutdown cuts it
	if c.started || c.delivered {
		c.mu.Unlock()
		c.signal()
		return
	}
	h := c.handler
	if h == nil {
		c.atStart = true
	}
	c.mu.Unlock()
	c.other.hangUp()
	if h != nil {
		c.deliverClose(c.reasonNow())
	}
}

// cut ends the end at once, as a Close whose queue is dropped.
func (c *Conn) cut(reason error) {
	c.mu.Lock()
	c.queue, c.lens = c.queue[:0], c.lens[:0]
	c.queued.Store(0)
	c.mu.Unlock()
	c.closeEnd(reason)
}

func (c *Conn) reasonNow() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// hangUp tells this end that the other end closed: it offers what input it
// holds, then closes with loop.ErrPeerClosed.
func (c *Conn) hangUp() {
	c.mu.Lock()
	c.eof = true
	c.mu.Unlock()
	c.signal()
}

// resetAll ends every end of ends as by a reset from the network: their
// input and queues are dropped and their close reason wraps
// loop.ErrPeerClosed and cause. Every reason is set before any end acts on
// it, so none of them sees the others' close as a close_notify: the ends
// are locked all at once while the reasons are set, since an end already
// awake would otherwise act on its new reason (hang up its other end)
// before the reset reached that other end. resetMu orders the resets, the
// only place that holds two ends' locks.
func resetAll(ends []*Conn, cause error) {
	reason := fmt.Errorf("%w: %w", loop.ErrPeerClosed, cause)
	seen := make(map[*Conn]bool, len(ends))
	ends = slices.DeleteFunc(slices.Clone(ends), func(c *Conn) bool { // each lock once
		dup := seen[c]
		seen[c] = true
		return dup
	})
	resetMu.Lock()
	for _, c := range ends {
		c.mu.Lock()
	}
	for _, c := range ends {
		c.input = nil
		c.queue, c.lens = c.queue[:0], c.lens[:0]
		c.queued.Store(0)
		if c.reason == nil {
			c.reason = reason
			close(c.done)
		}
	}
	for _, c := range ends {
		c.mu.Unlock()
	}
	resetMu.Unlock()
	for _, c := range ends {
		c.closeEnd(reason) // the reason set above sticks
	}
}

// resetMu is held by resetAll while it holds the locks of several ends.
var resetMu sync.Mutex

func (c *Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// deliverClose runs OnClose once, then releases everyone waiting on the
// end.
func (c *Conn) deliverClose(reason error) {
	c.mu.Lock()
	if c.delivered {
		c.mu.Unlock()
		return
	}
	c.delivered = true
	h := c.handler
	if c.roomCh != nil {
		close(c.roomCh)
		c.roomCh = nil
	}
	c.mu.Unlock()
	if h != nil {
		h.OnClose(nil, reason)
	}
	close(c.gone)
	if c.ep != nil {
		c.ep.untrack(c)
	}
}
