package loop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
	"golang.org/x/sys/cpu"

	"github.com/meshrt/mesh/tlsconn"
)

// Hook runs right after TLS completes, on the handshake goroutine, in
// blocking mode: it may read and write tc freely until ctx's deadline (the
// handshake deadline), after which tc's reads and writes fail. The engine
// holds tc's deadline: the hook's calls to tc's deadline methods change
// nothing (see tlsconn.Adapter.SetHandshakeDeadline). outbound
// tells which side dialled; dialArg is Dial's peer argument (nil inbound).
// What it returns becomes Conn.Info; an error drops the connection.
type Hook func(ctx context.Context, tc *tls.Conn, outbound bool, dialArg any) (info any, err error)

// Stats are the engine's handshake counters, and its read duties'
// (loop/inline.go).
type Stats struct {
	Handshakes       uint64 // completed (TLS and hook)
	Failed           uint64 // TLS or hook error
	TimedOut         uint64 // missed the first-byte or the handshake deadline
	DroppedAtLimit   uint64 // inbound connections refused or evicted at an admission limit
	PendingNow       int    // handshakes in flight, inbound and dials
	ConnectionsNow   int    // conns past the handshake and not yet closed
	MaxPendingConfig int
	ParkedNow        int64 // goroutines parked for input the loops read for them, and inline readers (ParkBegin)
	LingeringNow     int64 // conns whose read duty lingers, or is about to (Conn.ReadInline's hand-back)
}

// Handshake outcomes the engine reports to [WithHandshakeOutcome], for
// connections that end before the hook ran or that the engine ends itself.
const (
	OutcomeLimit   = "limit"   // refused or evicted at an admission limit (inbound)
	OutcomeTimeout = "timeout" // no first bytes in time, or TLS past the handshake deadline
	OutcomeTLS     = "tls"     // the TLS handshake failed
)

// Engine runs one gnet engine: its loops serve every inbound and outbound
// connection of a node. See the package documentation.
type Engine struct {
	opts      options
	serverTLS *tls.Config
	clientTLS *tls.Config
	log       *slog.Logger
	cli       *gnet.Client
	timers    timers

	ctx       context.Context // cancelled by Close: aborts handshakes
	cancel    context.CancelFunc
	dialSlots chan struct{} // one token per Dial in flight
	adm       *admission    // inbound handshakes in flight (admission.go)
	limitWarn limitWarner
	wg        sync.WaitGroup

	handshakes, failed, timedOut, dropped atomic.Uint64

	mu        sync.Mutex // guards the fields below; leaf except conn.mu may not be held under it
	closed    bool
	listeners []net.Listener
	conns     map[*Conn]struct{}
	loops     map[gnet.EventLoop]*loopState
	drained   chan struct{} // closed when closed && len(conns) == 0

	execs atomic.Int64 // execute calls in flight

	// Lingering read duties (inline.go, rule 4). The two counters have a
	// cache line of their own: every park of every process adds to parked.
	_           cpu.CacheLinePad
	parked      atomic.Int64 // goroutines parked for input the loops read for them, and holders (ParkBegin)
	lingering   atomic.Int64 // conns whose read duty lingers, or is about to
	_           cpu.CacheLinePad
	lingerMu    sync.Mutex
	lingerConns []*Conn      // conns a holder ever read, until OnClose: those whose duty may linger (ParkBegin's scan); guarded by lingerMu
	stopping    atomic.Bool  // set before the loops stop: execute refuses
	enrolling   atomic.Int64 // Starts in EnrollContext: no loop waits in the netpoller (idle.go)
	epolls      []int        // epoll descriptors gnet opened (idle.go); constant after New

	// The bulk loops: a gnet client of event loops of their own (as many as
	// the engine's), made by the first Start of a bulk-only conn
	// (Conn.SetBulkOnly), so that bulk data never shares a loop with the
	// conns that carry small items.
	bulkMu     sync.Mutex
	bulkCli    *gnet.Client          // guarded by bulkMu
	bulkEpolls atomic.Pointer[[]int] // its epoll descriptors, set before its first enrolment

	closeOnce sync.Once
	closeErr  error
	timerDone chan struct{}
}

// New starts an engine: its loops, and a timer goroutine. Close it when
// done. An option out of its range is an error wrapping [ErrOption]. Safe
// from any goroutine.
func New(opts ...Option) (*Engine, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		opts:      o,
		log:       o.logger,
		dialSlots: make(chan struct{}, o.maxPending),
		adm:       newAdmission(o.maxPending, o.maxSilent, o.perSource),
		conns:     make(map[*Conn]struct{}),
		loops:     make(map[gnet.EventLoop]*loopState),
		timerDone: make(chan struct{}),
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.serverTLS, e.clientTLS = o.serverTLS, o.clientTLS
	if e.serverTLS == nil {
		cert := o.cert
		if cert == nil {
			c, err := tlsconn.NewCertificate(0)
			if err != nil {
				return nil, err
			}
			cert = &c
		}
		e.serverTLS = tlsconn.ServerConfig(*cert)
	}
	if e.clientTLS == nil {
		e.clientTLS = tlsconn.ClientConfig()
	}
	cli, eps, err := e.startClient(o.loops)
	if err != nil {
		return nil, err
	}
	e.cli, e.epolls = cli, eps
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.timers.init()
	go func() {
		defer close(e.timerDone)
		e.timers.run()
	}()
	return e, nil
}

// startClient starts a gnet client of n event loops, all served by the
// engine's handler, and returns it with the epoll descriptors it opened
// (idle.go; nil where they cannot be told).
func (e *Engine) startClient(n int) (*gnet.Client, []int, error) {
	before := fdSet(nil)
	cli, err := gnet.NewClient(&gnetHandler{e: e},
		gnet.WithNumEventLoop(n),
		gnet.WithLogger(gnetLogger{e.log}),
		gnet.WithTicker(false),
		gnet.WithReadBufferCap(64<<10),
		gnet.WithWriteBufferCap(64<<10),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("loop: gnet client: %w", err)
	}
	if err := cli.Start(); err != nil {
		return nil, nil, fmt.Errorf("loop: gnet start: %w", err)
	}
	return cli, newEpolls(before), nil
}

// clientFor returns the gnet client that enrols c: the bulk loops' for a
// bulk-only conn (made here the first time), else the engine's. In a Start
// in flight (beginStart), so Close cannot have stopped the clients.
func (e *Engine) clientFor(c *Conn) (*gnet.Client, error) {
	if !c.bulkOnly.Load() {
		return e.cli, nil
	}
	e.bulkMu.Lock()
	defer e.bulkMu.Unlock()
	if e.bulkCli == nil {
		cli, eps, err := e.startClient(e.opts.loops)
		if err != nil {
			return nil, err
		}
		e.bulkEpolls.Store(&eps)
		e.bulkCli = cli
	}
	return e.bulkCli, nil
}

// idleCandidates lists the epoll descriptors a loop's idle wait may use
// (idle.go): the engine's loops' and the bulk loops'.
func (e *Engine) idleCandidates() []int {
	p := e.bulkEpolls.Load()
	if p == nil {
		return e.epolls
	}
	return append(append([]int(nil), e.epolls...), *p...)
}

// Stats returns the counters. Safe from any goroutine.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	n := len(e.conns)
	e.mu.Unlock()
	return Stats{
		Handshakes:       e.handshakes.Load(),
		Failed:           e.failed.Load(),
		TimedOut:         e.timedOut.Load(),
		DroppedAtLimit:   e.dropped.Load(),
		PendingNow:       e.adm.len() + len(e.dialSlots),
		ConnectionsNow:   n,
		MaxPendingConfig: e.opts.maxPending,
		ParkedNow:        e.parked.Load(),
		LingeringNow:     e.lingering.Load(),
	}
}

// Listen accepts TCP connections on addr ("host:port", port 0 picks one).
// Each runs TLS and the hook on its own short-lived goroutine: its first
// bytes must arrive within the first-byte timeout, and the whole within the
// handshake timeout. Inbound connections in their handshake are bounded in
// total and per source address; at a bound the oldest silent one makes way
// for the newest (see admission.go). accept is called (on the handshake
// goroutine) with every conn that completes them, and should set a handler
// and Start it. It returns the bound address. Safe from any goroutine.
func (e *Engine) Listen(addr string, accept func(*Conn)) (net.Addr, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(e.ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("loop: listen: %w", err)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = ln.Close()
		return nil, ErrEngineClosed
	}
	e.listeners = append(e.listeners, ln)
	e.wg.Add(1)
	e.mu.Unlock()
	go e.acceptLoop(ln, accept)
	return ln.Addr(), nil
}

func (e *Engine) acceptLoop(ln net.Listener, accept func(*Conn)) {
	defer e.wg.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if e.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = acceptBackoff(backoff)
			e.log.Warn("loop: accept", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-e.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		source := sourceOf(nc)
		in, victim, v := e.adm.admit(nc, source)
		if victim != nil {
			_ = victim.nc.Close() // its goroutine sees the eviction
		}
		if v != admitted {
			// One outcome per connection: an evicted one whose hook
			// runs is reported by the hook, which sees its socket close.
			e.atLimit(v, source, victim == nil || !victim.hooked.Load())
		}
		if in == nil {
			_ = nc.Close()
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			c, err := e.handshake(e.ctx, nc, false, nil, in)
			if e.adm.done(in) {
				if c != nil {
					// Evicted after its hook succeeded: the hook's
					// side must treat it like a dropped connection.
					_ = nc.Close()
					e.forget(c)
				}
				return
			}
			if err != nil {
				e.log.Debug("loop: inbound handshake", "remote", nc.RemoteAddr(), "err", err)
				return
			}
			accept(c)
		}()
	}
}

// atLimit counts an admission limit hit and logs it, rate-limited.
func (e *Engine) atLimit(v verdict, source string, report bool) {
	e.dropped.Add(1)
	if report {
		e.outcome(OutcomeLimit)
	}
	if ok, count := e.limitWarn.hit(time.Now()); ok {
		what := "evicting the oldest connection of its kind"
		switch v {
		case refusedSource:
			what = "refusing a source over its bound"
		case refusedFull:
			what = "refusing: evicted handshakes still finishing"
		}
		e.log.Warn("loop: inbound handshakes at their limit", "action", what, "source", source,
			"hits", count, "max_pending", e.opts.maxPending, "max_silent", e.opts.maxSilent,
			"max_per_source", e.opts.perSource)
	}
}

// outcome reports a handshake outcome to the WithHandshakeOutcome callback.
func (e *Engine) outcome(reason string) {
	if f := e.opts.outcome; f != nil {
		f(reason)
	}
}

// Dial connects to addr, runs TLS and the hook (with peer as its dialArg)
// on the calling goroutine, and returns the conn, not yet started. The
// whole takes at most the handshake timeout, less if ctx ends sooner; it
// first waits (bounded by ctx) for one of the dial slots, which inbound
// connections never take. Safe from any goroutine but a loop callback.
func (e *Engine) Dial(ctx context.Context, addr string, peer any) (*Conn, error) {
	select {
	case e.dialSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("loop: dial %s: waiting for a dial slot: %w", addr, ctx.Err())
	case <-e.ctx.Done():
		return nil, ErrEngineClosed
	}
	defer func() { <-e.dialSlots }()
	if !e.addWorker() {
		return nil, ErrEngineClosed
	}
	defer e.wg.Done()
	hctx, cancel := context.WithTimeout(ctx, e.opts.handshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()
	var d net.Dialer
	nc, err := d.DialContext(hctx, "tcp", addr)
	if err != nil {
		if hctx.Err() != nil && ctx.Err() == nil && e.ctx.Err() == nil {
			e.timedOut.Add(1)
			return nil, fmt.Errorf("%w: dial %s: %w", ErrHandshakeTimeout, addr, err)
		}
		return nil, fmt.Errorf("loop: dial %s: %w", addr, err)
	}
	return e.handshake(hctx, nc, true, peer, nil)
}

func (e *Engine) addWorker() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// beginStart registers a Start in flight (Close waits for it).
func (e *Engine) beginStart() bool { return e.addWorker() }

// longAgo is a deadline in the past: it aborts blocked I/O at once.
var longAgo = time.Unix(1, 0)

// handshake runs TLS and the hook over nc in blocking mode, bounded by the
// handshake timeout and ctx, and for an inbound connection (in not nil) by
// the first-byte timeout before that. It owns nc: on failure nc is closed.
// It is the one owner of nc's deadline until the conn starts: the hook runs
// under it and must not change it.
func (e *Engine) handshake(ctx context.Context, nc net.Conn, outbound bool, dialArg any, in *inbound) (*Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, e.opts.handshakeTimeout)
	defer cancel()
	deadline, _ := hctx.Deadline()

	var (
		tc *tls.Conn
		ad *tlsconn.Adapter
	)
	if outbound {
		dc := dbgWrapConn(nc)
		tc, ad = tlsconn.Client(dc, dbgConfig(e.clientTLS, dc))
	} else {
		dc := dbgWrapConn(nc)
		tc, ad = tlsconn.Server(dc, dbgConfig(e.serverTLS, dc))
	}
	// The engine alone arms, aborts and clears the deadline: the hook runs
	// under it and cannot move it (tlsconn.Adapter.SetHandshakeDeadline).
	// An inbound connection is first held to the first-byte deadline.
	armed := deadline
	if in != nil {
		if first := time.Now().Add(e.opts.firstByte); first.Before(deadline) {
			armed = first
		}
	}
	_ = ad.SetHandshakeDeadline(armed)
	stop := context.AfterFunc(hctx, func() { _ = ad.SetHandshakeDeadline(longAgo) })
	hooked := false
	fail := func(step string, err error) (*Conn, error) {
		stop()
		_ = nc.Close()
		// Outcomes before the hook are the engine's to report; the hook
		// reports its own.
		report := func(reason string) {
			if !hooked {
				e.outcome(reason)
			}
		}
		switch {
		case e.ctx.Err() != nil:
			return nil, ErrEngineClosed
		case in != nil && in.evicted.Load():
			return nil, fmt.Errorf("%w: %s: evicted at the admission limit", ErrHandshake, step)
		case ctx.Err() != nil: // the caller gave up (Dial's ctx)
			return nil, fmt.Errorf("%w: %s: %w", ErrHandshake, step, ctx.Err())
		case hctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded):
			e.timedOut.Add(1)
			report(OutcomeTimeout)
			return nil, fmt.Errorf("%w: %s: %w", ErrHandshakeTimeout, step, err)
		}
		e.failed.Add(1)
		report(OutcomeTLS)
		return nil, fmt.Errorf("%w: %s: %w", ErrHandshake, step, err)
	}
	if in != nil {
		if err := awaitFirstBytes(nc); err != nil {
			return fail("first bytes", err)
		}
		victim, ok := e.adm.talk(in)
		if victim != nil {
			_ = victim.nc.Close()
			e.atLimit(admittedEvict, victim.source, !victim.hooked.Load())
		}
		if !ok {
			return fail("first bytes", net.ErrClosed)
		}
		// Set after the wait, then checked: a cancellation that came
		// before is seen here, one that comes after moves this deadline
		// into the past.
		_ = ad.SetHandshakeDeadline(deadline)
		if hctx.Err() != nil {
			return fail("start", hctx.Err())
		}
	}
	if err := tc.Handshake(); err != nil {
		return fail("tls", err)
	}
	var info any
	if h := e.opts.hook; h != nil {
		hooked = true
		if in != nil {
			in.hooked.Store(true)
		}
		var err error
		if info, err = h(hctx, tc, outbound, dialArg); err != nil {
			return fail("hook", err)
		}
	}
	stop()
	if hctx.Err() != nil {
		return fail("deadline", hctx.Err())
	}
	_ = ad.SetHandshakeDeadline(time.Time{})
	c := newConn(e, tc, ad, info, outbound)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = nc.Close()
		return nil, ErrEngineClosed
	}
	e.conns[c] = struct{}{}
	e.mu.Unlock()
	e.handshakes.Add(1)
	return c, nil
}

// execute runs r on ls's loop unless the loops are stopping; r must call
// ls.taskStarted first. Any goroutine.
func (e *Engine) execute(ls *loopState, r gnet.Runnable) {
	e.execs.Add(1)
	if !e.stopping.Load() {
		// Counted whether or not the loop waits in the netpoller yet
		// (taskStarted always uncounts), and given back only when gnet
		// did not queue the task: a failed eventfd write still runs it.
		ls.owed.Add(1)
		if err := ls.el.Execute(context.Background(), r); errors.Is(err, gerrors.ErrEngineInShutdown) || errors.Is(err, gerrors.ErrNilRunnable) {
			ls.owed.Add(-1)
		}
		if w := ls.idle.Load(); w != nil && ls.owed.Load() > 0 {
			w.kick() // gnet signals its eventfd only if not running tasks
		}
	}
	e.execs.Add(-1)
}

// kickLoops wakes every loop waiting in the netpoller, to see a change of
// enrolling or stopping. Any goroutine.
func (e *Engine) kickLoops() {
	e.mu.Lock()
	for _, ls := range e.loops {
		if w := ls.idle.Load(); w != nil {
			w.kick()
		}
	}
	e.mu.Unlock()
}

// forget drops a closed conn from the engine's set.
func (e *Engine) forget(c *Conn) {
	e.mu.Lock()
	delete(e.conns, c)
	if e.closed && len(e.conns) == 0 && e.drained != nil {
		close(e.drained)
		e.drained = nil
	}
	e.mu.Unlock()
}

func (e *Engine) loopFor(el gnet.EventLoop) *loopState {
	e.mu.Lock()
	defer e.mu.Unlock()
	ls := e.loops[el]
	if ls == nil {
		ls = &loopState{e: e, el: el}
		e.loops[el] = ls
	}
	return ls
}

// closeWait bounds how long Close waits for conns to report OnClose.
const closeWait = 5 * time.Second

// Close stops accepting, aborts handshakes in flight, closes every conn
// (close_notify first; OnClose with ErrEngineClosed), stops the loops and
// the timer goroutine, and waits for all of it. Idempotent; safe from any
// goroutine but a loop callback.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() { e.closeErr = e.close() })
	return e.closeErr
}

func (e *Engine) close() error {
	e.mu.Lock()
	e.closed = true
	lns := e.listeners
	e.listeners = nil
	e.mu.Unlock()
	e.cancel()
	for _, ln := range lns {
		_ = ln.Close()
	}
	e.wg.Wait() // accept loops, handshakes, dials and Starts in flight

	e.mu.Lock()
	conns := make([]*Conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	var drained chan struct{}
	if len(e.conns) > 0 {
		drained = make(chan struct{})
		e.drained = drained
	}
	e.mu.Unlock()
	for _, c := range conns {
		_ = c.Close(ErrEngineClosed)
	}
	var err error
	if drained != nil {
		select {
		case <-drained:
		case <-time.After(closeWait):
			err = errors.New("loop: close: connections did not close in time")
		}
	}
	close(e.timers.done)
	<-e.timerDone
	// No task may reach a loop once gnet starts closing its pollers: the
	// eventfd number could be reused by then.
	e.stopping.Store(true)
	e.kickLoops()
	for e.execs.Load() != 0 {
		runtime.Gosched()
	}
	if serr := e.cli.Stop(); serr != nil && err == nil {
		err = fmt.Errorf("loop: stop loops: %w", serr)
	}
	e.bulkMu.Lock()
	if e.bulkCli != nil {
		if serr := e.bulkCli.Stop(); serr != nil && err == nil {
			err = fmt.Errorf("loop: stop the bulk loops: %w", serr)
		}
	}
	e.bulkMu.Unlock()
	e.mu.Lock()
	for _, ls := range e.loops {
		if w := ls.idle.Swap(nil); w != nil {
			w.close()
		}
	}
	e.mu.Unlock()
	return err
}

// gnetLogger routes gnet's logs to slog; gnet's info lines are debug here.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet: fatal: " + fmt.Sprintf(f, a...)) }
