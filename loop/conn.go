package loop

// The connection: its API, its fields and its life up to the loop.
//
// Files by concern (doc.go has the whole picture):
//   - conn.go: the Conn type, Start, timers and loop calls (this file).
//   - send.go: Enqueue, the send queue's drain on the loop, backpressure.
//   - direct.go: direct writes by the sender that wins the drain token.
//   - read.go: decrypting input and offering it to the handler.
//   - close.go: the close ladder, Close, close_notify and OnClose.
//
// Invariants:
//   - Fields under "loop only" are touched only on the conn's loop, after
//     OnOpen. tc and ad are used by the handshake goroutine until Start, then
//     by the loop (and, for writes, by the drain token's holder) only.
//   - mu guards start, reason, preStart, handler and the publication of ls
//     for exec. It is a leaf lock except that waitMu is never taken under it
//     and it is never held across a call into gnet, TLS or the handler.
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
//     then rechecks queued, the close ladder and the adapter's pending
//     output. A sender that wins it before the conn has a loop hands it to
//     OnOpen through openOwed, and takes it back if the loop appeared
//     meanwhile (handToLoop): exactly one of the two drains.
//   - closeState only moves up its ladder (close.go); every "is it closed"
//     question is one comparison against it.
//   - dup (a dup of the socket, made lazily: direct.go) is written only by
//     a direct writer holding a reference to it; it is made and dropped
//     only on the loop (at the latest at gnet's OnClose), and the last
//     reference closes it, so the number is never reused under a writer.
//   - queued (bulkQueued) counts bytes pushed to q (bulk) and not yet
//     drained. Each may overshoot high by the concurrent senders' items,
//     never more.
//   - A drain takes the bulk lane's share first and the urgent lane second,
//     and writes the urgent items first: an urgent item pushed before a bulk
//     item is always written before it. bulkTaken (the bulk items drained)
//     grows only after the urgent lane was taken, so an urgent item pushed
//     once BulkPassed reports a bulk item is written after it.
//   - done is closed exactly once, when the first close reason is set.
//   - Handler.OnClose runs exactly once: on the loop for a started conn
//     (gnet's OnClose), else on the goroutine whose Close won.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/meshrt/mesh/tlsconn"
)

// Handler receives a connection's input and its end. Both methods run on
// the conn's loop, or OnData on a goroutine reading the conn inline
// (Conn.ReadInline), never two at once and OnClose after every OnData
// (OnClose runs off the loop only for a conn closed before Start); they
// must not block.
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

// startState is how far a conn got towards its loop.
type startState int

const (
	startNew      startState = iota // handshake done, not started
	startEnroling                   // Start is enrolling the socket
	startOnLoop                     // OnOpen ran: the loop owns it
	startAborted                    // closed before it got on a loop
)

// Conn is an authenticated connection served by an event loop. Create it
// with Engine.Dial or receive it from Listen's accept function, set its
// handler, then Start it.
type Conn struct {
	dbg connDebug // the meshdebug build's stream checks (debug_on.go); empty (and not last: no padding) otherwise

	// Set by newConn (drain by SetDrain before Start), then constant.
	e        *Engine
	tc       *tls.Conn
	ad       *tlsconn.Adapter
	info     any
	outbound bool
	remote   net.Addr
	drain    func(dst []byte, items [][]byte) []byte

	// Send side: any goroutine.
	q          sendQueue                 // the urgent lane: every item but bulk
	queued     atomic.Int64              // bytes pushed to q and not yet drained
	backlog    atomic.Int64              // bytes allowed past the hard limit (AllowBacklog)
	bulk       sendQueue                 // the bulk lane (EnqueueBulk)
	bulkQueued atomic.Int64              // bytes pushed to bulk and not yet drained
	bulkTaken  atomic.Uint64             // bulk items drained (see BulkPassed)
	bulkWait   atomic.Bool               // the loop holds the token in a socket wait with bulk queued
	kicked     atomic.Bool               // a kickUrgent is on its way to the loop
	scheduled  atomic.Bool               // the drain token (see the invariants)
	openOwed   atomic.Bool               // the token, won before ls was seen, is OnOpen's to drain (handToLoop)
	ls         atomic.Pointer[loopState] // the owning loop, from OnOpen on
	waiters    atomic.Bool               // someone may wait in waitRoom
	sendWaits  atomic.Uint64             // enqueues that waited for room (SendWaits)
	waitMu     sync.Mutex                // guards waitCh
	waitCh     chan struct{}             // closed to wake the senders waiting for room

	// The close ladder (close.go): any goroutine reads it.
	closeState atomic.Int32
	done       chan struct{} // closed when the first close reason is set
	gone       chan struct{} // closed after Handler.OnClose ran
	flushedAll atomic.Bool   // a graceful close handed the socket everything

	// Direct writes (direct.go).
	direct      atomic.Bool             // the token winner may drain and write itself
	idleSince   atomic.Int64            // monoNow() when the last drain of the loop or a holder ended (a direct write's: lastDirect)
	nDirect     atomic.Uint64           // direct drains, for tests
	nSocketWait atomic.Uint64           // socket waits armed, for tests
	dup         atomic.Pointer[dupSock] // dup of the socket for direct writes; nil: none (yet)
	dupWant     atomic.Int64            // monoNow() of the last direct write wanted without a dup
	dupRetry    atomic.Int64            // monoNow() before which no dup is asked for (one was denied)
	dupAsked    atomic.Bool             // the loop was asked to make a dup and has not yet

	// Inline reading (inline.go).
	duty           atomic.Int32               // dutyHeld: a holder reads the socket; dutyLinger: nobody does, EPOLLIN off; dutyLoop: the loop does, in its socket wait (idle.go); dutyRecall: the loop wants it back; dutyEnd: OnClose does
	inl            atomic.Pointer[inlineRes]  // the holders' duplicate of the socket; nil: none yet; inlineClosed after OnClose
	inlRetry       atomic.Int64               // monoNow() before which no inline resources are asked for (denied); 0: none
	inlShared      atomic.Int64               // monoNow() when a waiter last found the duty held by another (sharedFor); 0: not lately
	inlTakeover    atomic.Int64               // monoNow() when a holder last took the duty over from the loop's socket wait (sockHoldOff); 0: not lately
	inCallback     atomic.Bool                // a holder is in the handler's OnData (AfterFlush runs fn at once)
	lingers        atomic.Uint64              // hand-backs that left the duty lingering (dutyLinger: inline.go, rule 4)
	lingerSeen     atomic.Uint64              // lingers when the linger timer was armed or last ticked
	lingerArmed    atomic.Bool                // the linger timer (lingerTick) is armed
	lingerFor      time.Duration              // lingerPeriod; tests set a longer one before the conn's first wait
	lingerT        atomic.Pointer[time.Timer] // the linger timer (lingerTick); made by the goroutine that arms it first; OnClose stops it (a tick or an arm racing the close may still fire once, and find the duty home)
	lingerListed   atomic.Bool                // c is on Engine.lingerConns
	lingerReclaims atomic.Uint64              // lingering duties reclaimed (the timer, a park, a recall), for tests
	grants         atomic.Uint64              // duties lent by a grant (rule 1: EPOLLIN masked), for tests (InlineGrants)
	inlineFailed   atomic.Uint64              // rule breaks seen (OnTraffic with the duty away, a lost epoll), for tests

	// Owned by the holder of the drain token.
	spill      []byte  // ciphertext a direct write left unsent; the loop sends it first
	directBufs scratch // a direct writer's drain buffers
	directOut  []byte  // a direct writer's ciphertext buffer

	mu       sync.Mutex
	handler  Handler
	start    startState
	reason   error    // the first close reason
	preStart []func() // loop calls made before OnOpen, run by it

	// Loop only; gc is read by a holder of the read duty too, and
	// leftover, readDropped and shortRecv belong to the duty's holder
	// (inline.go).
	gc          gnet.Conn
	leftover    []byte        // plaintext the handler left unconsumed
	readDropped bool          // fed ciphertext was dropped: tls.Conn is never fed again (readTLS)
	holder      InlineParker  // the holder's parker while it reads (holdDuty); nil while the loop reads
	recheck     bool          // a flush timer (socket wait or backlog recheck) is armed
	backoff     time.Duration // last backlog recheck delay
	lastBacklog int           // gnet's backlog at the last recheck
	sockWaits   socketWaits   // the full socket's wait streak (flushPlan)
	dupMark     uint64        // nDirect at the dup's last idle check
	drainHeld   bool          // draining: the loop holds the drain token until the close
	lingering   bool          // a graceful close_notify is out: waiting for the socket and the peer
	closeAsked  bool          // gc.Close was called and OnClose has not run (counted in idle.pending)
	shortSend   bool          // the socket's unsent limit is short: bulk items are queued (paceBulk)
	shortRecv   bool          // the socket's receive buffer was set short (ShortenReceive)
	// bulkOnly: the conn carries bulk data only (SetBulkOnly).
	bulkOnly atomic.Bool
}

func newConn(e *Engine, tc *tls.Conn, ad *tlsconn.Adapter, info any, outbound bool) *Conn {
	c := &Conn{
		e: e, tc: tc, ad: ad, info: info, outbound: outbound,
		remote: ad.RemoteAddr(),
		drain:  concatItems,
		done:   make(chan struct{}),
		gone:   make(chan struct{}),

		lingerFor: lingerPeriod,
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
	if c.start != startNew {
		c.mu.Unlock()
		return
	}
	c.start = startEnroling
	c.mu.Unlock()

	e := c.e
	if !e.beginStart() {
		c.failStart(ErrEngineClosed)
		return
	}
	defer e.wg.Done()
	nc := c.dbgDetached(c.ad.Detach())
	cli, err := e.clientFor(c)
	if err != nil {
		_ = nc.Close()
		c.failStart(err)
		return
	}
	// EnrollContext dups the fd, closes nc, and returns after OnOpen ran on
	// the chosen loop. gnet queues it as a task of that loop: no loop
	// waits in the netpoller meanwhile (idle.go).
	e.enrolling.Add(1)
	e.kickLoops()
	_, err = cli.EnrollContext(nc, c)
	e.enrolling.Add(-1)
	if err != nil {
		c.failStart(fmt.Errorf("loop: enrol: %w", err))
	}
}

func (c *Conn) failStart(reason error) {
	c.mu.Lock()
	c.start = startAborted
	c.preStart = nil
	c.mu.Unlock()
	reason = c.setReason(reason)
	_ = c.ad.Close()
	c.deliverClose(reason)
}

// AfterFunc runs fn on the conn's loop after about d, unless the conn has
// closed by then or the timer is stopped. A timer set before Start fires
// after Start. Safe from any goroutine.
func (c *Conn) AfterFunc(d time.Duration, fn func()) *Timer {
	return c.e.timers.add(c, d, fn)
}

// Holder returns the InlineParker of the goroutine reading c inline
// (ReadInline), the owner that waits, when called from the Handler.OnData
// that goroutine runs; nil when the loop reads c. A handler may hand
// that owner its own message on its own goroutine (package mailbox's
// PushEncodedOwn). Call it only from c's OnData.
func (c *Conn) Holder() InlineParker { return c.holder }

// AfterFlush runs fn on the conn's loop once the callback it is called
// from has ended and the output queued during it (on this conn and the
// loop's others) has been written, or left for the socket to take: work
// that answers a request but need not precede the answer (starting a
// goroutine, which may wake a thread) goes there, off the answer's path.
// Loop only: call it from a Handler callback of this conn (OnData) or a
// function run by Execute or AfterFunc; from OnClose, from an OnData run
// by a goroutine reading inline (ReadInline), or before the conn is on
// its loop, fn runs at once.
func (c *Conn) AfterFlush(fn func()) {
	ls := c.ls.Load()
	if ls == nil || !ls.busy.Load() || c.inCallback.Load() {
		fn() // not in a loop callback, or called by a holder of the read duty
		return
	}
	ls.after = append(ls.after, fn)
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
		if c.start == startNew || c.start == startEnroling {
			c.preStart = append(c.preStart, fn)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.e.execute(ls, gnet.RunnableFunc(func(context.Context) error {
		ls.taskStarted()
		ls.enter()
		if !c.reached(socketClosed) {
			fn()
		}
		ls.leave()
		ls.idleWait(nil)
		return nil
	}))
}
