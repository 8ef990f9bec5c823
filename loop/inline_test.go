package loop

// Inline reading (inline.go) as a threat model. A process waiting for a
// reply takes its conn's read duty and runs the conn's input on its own
// goroutine; what could go wrong, and what guards it here:
//
//   - Two readers of one socket (rules 1, 2, 4): input lost, reordered, or
//     OnData running beside itself; the loop's OnTraffic meeting a duty
//     that is away, or on its way back. Every test's client handler counts
//     OnData calls that overlap another, every stream is checked for order,
//     and Conn.inlineFailed (the loop's own rule-break count) must stay 0.
//     Several processes share one conn, and two conns share one loop.
//   - The loop writing through gnet while a process holds the duty (rule 3):
//     gnet would re-arm EPOLLIN beside the holder. The recall test makes
//     the loop write while a process holds the duty, and backs the socket
//     up so gnet writes partially; a handler answers its peer from OnData
//     on the holder's goroutine.
//   - A close while a process holds the duty (rule 5), from either end,
//     gently, abruptly or by a reset, or by Engine.Close: OnData after or
//     during OnClose, the descriptor used after gnet closed it, a holder
//     that never wakes, a goroutine left behind.
//   - A wait that ends otherwise (deadline, cancel, a local message, the
//     mailbox's close) losing or duplicating a message, losing the kick
//     that ends a parked owner's wait, or leaving a past read deadline that
//     ends every later wait at once (a stale poke).
//
// The "processes" are goroutines owning a real *mailbox.Mailbox whose
// InlineReader (inlineProbe) calls Conn.ReadInline, and which call
// ParkNext before each Receive, as package node does after a remote send.
// Timeouts here are failure detectors only (inlineBound); nothing is timed.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/meshrt/mesh/internal/leaktest"
	"github.com/meshrt/mesh/mailbox"
)

// inlineBound bounds every wait of these tests: a failure detector for a
// loaded machine, never reached by a passing run.
const inlineBound = 30 * time.Second

// Frames between the client's processes and the server: the tag (the
// client mailbox a reply goes to), a kind, a body.
const (
	kindEcho  = 'e' // the server echoes the frame, on its loop
	kindHold  = 'h' // the server holds the frame for the test to answer (inlineServer.held)
	kindSink  = 's' // the server checks the body's order (orderCheck: sender, seq); no reply
	kindGate  = 'g' // the server's loop blocks until the test opens the gate
	kindOther = 'o' // a server-side stream to a mailbox nobody waits inline on
	kindQuery = 'q' // from the server: the client's handler answers it itself, from OnData, as kindSink
	kindPanic = 'p' // from the server: the client's handler panics (errHandlerPanic)
)

var errHandlerPanic = errors.New("inline test: the handler panics")

func inlineMsg(tag, kind byte, body []byte) []byte { return append([]byte{tag, kind}, body...) }

func seqBody(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// sinkBody is an orderCheck body: sender, seq, then pad bytes.
func sinkBody(sender, seq uint32, pad int) []byte {
	b := binary.BigEndian.AppendUint32(nil, sender)
	b = binary.BigEndian.AppendUint32(b, seq)
	return append(b, make([]byte, pad)...)
}

// inlineServer is the server conn's frame handler.
type inlineServer struct {
	held     chan []byte // kindHold frames, in arrival order
	order    *orderCheck // kindSink frames' bodies
	gate     chan struct{}
	gateOnce sync.Once
}

func newInlineServer(senders int) *inlineServer {
	return &inlineServer{held: make(chan []byte, 64), order: newOrderCheck(senders), gate: make(chan struct{})}
}

func (s *inlineServer) frame(c *Conn, f []byte) {
	if len(f) < 2 {
		return
	}
	switch f[1] {
	case kindEcho:
		_ = c.EnqueueNoWait(frame(nil, f))
	case kindHold:
		s.held <- append([]byte(nil), f...)
	case kindSink:
		s.order.frame(c, f[2:])
	case kindGate:
		<-s.gate
	}
}

func (s *inlineServer) openGate() { s.gateOnce.Do(func() { close(s.gate) }) }

// take returns the next held request.
func (s *inlineServer) take(t *testing.T) []byte {
	t.Helper()
	select {
	case f := <-s.held:
		return f
	case <-time.After(inlineBound):
		t.Fatal("the server got no held request")
		return nil
	}
}

// inlineClient is the client conn's handler: it pushes a copy of each
// frame (a string) into the mailbox the frame's tag names, on the loop or
// on a holder of the read duty, as a node delivers to its processes. It
// records what must never happen.
type inlineClient struct {
	fh    *frameHandler
	boxes []*mailbox.Mailbox

	inData   atomic.Int32 // OnData calls running
	overlaps atomic.Int32 // OnData calls that began while another ran: two readers
	late     atomic.Int32 // OnData calls that began after OnClose did (rule 5)
	stray    atomic.Int32 // frames for no mailbox
	own      atomic.Int32 // frames given to the holder's own mailbox as its own (Conn.Holder)
	alien    atomic.Int32 // OnData calls whose Conn.Holder named none of the boxes
	closing  atomic.Bool  // OnClose began

	mu       sync.Mutex
	reason   error    // OnClose's
	closeBad []string // what OnClose found wrong (rule 5)
}

func newInlineClient(boxes int) *inlineClient {
	h := &inlineClient{}
	for range boxes {
		h.boxes = append(h.boxes, mailbox.New())
	}
	h.fh = newFrameHandler(h.deliver)
	return h
}

func (h *inlineClient) deliver(c *Conn, f []byte) {
	if len(f) >= 2 && f[1] == kindQuery {
		// Answered on whichever goroutine reads, the loop or a holder (a
		// node answers its peer's pings and link signals so), through
		// AfterFlush as work that follows a callback: deferred on the
		// loop, at once on a holder (never appended to the loop's list
		// from the holder's goroutine: -race).
		answer := frame(nil, inlineMsg(f[0], kindSink, f[2:]))
		c.AfterFlush(func() {
			if err := c.EnqueueNoWait(answer); err != nil {
				h.stray.Add(1)
			}
		})
		return
	}
	if len(f) >= 2 && f[1] == kindPanic {
		panic(errHandlerPanic)
	}
	if len(f) == 0 || int(f[0]) >= len(h.boxes) {
		h.stray.Add(1)
		return
	}
	box := h.boxes[f[0]]
	if hp := c.Holder(); hp != nil {
		hb, ok := hp.(*mailbox.Mailbox)
		if !ok || !slices.Contains(h.boxes, hb) {
			h.alien.Add(1)
		} else if hb == box {
			// The holder's own message, on its own goroutine, as a node
			// gives it (mailbox.PushEncodedOwn: owner only, so a Holder
			// left over for the loop's OnData would race with -race).
			h.own.Add(1)
			box.PushEncodedOwn(&stringDecoder, f)
			return
		}
	}
	box.Push(string(f))
}

// stringDecoder decodes a frame given to its holder as its own
// (inlineClient.deliver) as the string the loop pushes.
var stringDecoder = mailbox.Decoder{Decode: func(b []byte) (any, error) { return string(b), nil }}

func (h *inlineClient) OnData(c *Conn, b []byte) (int, error) {
	if h.closing.Load() {
		h.late.Add(1)
	}
	if h.inData.Add(1) != 1 {
		h.overlaps.Add(1)
	}
	defer h.inData.Add(-1)
	return h.fh.OnData(c, b)
}

// OnClose checks rule 5 (no OnData running, the duty home, the inline
// resources closed), then closes every mailbox: a waiting process's
// Receive ends with mailbox.ErrClosed.
func (h *inlineClient) OnClose(c *Conn, reason error) {
	h.closing.Store(true)
	var bad []string
	if n := h.inData.Load(); n != 0 {
		bad = append(bad, fmt.Sprintf("ran while %d OnData ran", n))
	}
	if d := c.duty.Load(); d != 0 {
		bad = append(bad, fmt.Sprintf("ran with the read duty away (duty %#x)", d))
	}
	if c.inl.Load() != inlineClosed {
		bad = append(bad, "ran before the conn's inline resources were closed")
	}
	h.mu.Lock()
	h.reason, h.closeBad = reason, bad
	h.mu.Unlock()
	for _, m := range h.boxes {
		m.Close()
	}
	h.fh.OnClose(c, reason)
}

func (h *inlineClient) closeReason() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reason
}

// inlineProbe is a test InlineReader, as node's: it reads c inline for its
// mailbox and counts the waits that took the duty (ReadInline true), so a
// test can tell the inline path from the mailbox's own park. A sticky
// probe tries again until it takes the duty, its owner's wait is over, ctx
// ends or c closes (the loop may be busy at the first try): a test device,
// for tests that need the duty held at a given point. A loop can be left
// waiting in gnet's own epoll_wait rather than in the netpoller (a wake-up
// that was already handled: idle.go's ready), where it lends no duty until
// its next event: a sticky probe that keeps failing gives it one (a no-op
// task, after which the loop waits in the netpoller), and counts it.
type inlineProbe struct {
	c       *Conn
	sticky  bool
	persist atomic.Bool // sticky, and it reads again after a wait that ended with nothing
	tries   atomic.Int64
	took    atomic.Int64
	empty   atomic.Int64 // waits that ended with no message, no context end and no close
	nudges  atomic.Int64 // no-op tasks given to a loop found outside the netpoller
	inside  atomic.Bool  // in ReadInline now (holding the duty, or trying to take it)
}

// KickInline implements mailbox.InlineReader.
func (r *inlineProbe) KickInline() { r.c.KickInline() }

// ParkBegin implements mailbox.InlineReader as a node's process does: the
// owner parks while the loop reads for it.
func (r *inlineProbe) ParkBegin() { r.c.e.ParkBegin() }

// ParkEnd implements mailbox.InlineReader.
func (r *inlineProbe) ParkEnd() { r.c.e.ParkEnd() }

func (r *inlineProbe) WaitInline(ctx context.Context, m *mailbox.Mailbox) bool {
	failed := 0
	for {
		r.tries.Add(1)
		r.inside.Store(true)
		took := r.c.ReadInline(ctx, m)
		r.inside.Store(false)
		if took {
			r.took.Add(1)
			if m.InlineReady() || ctx.Err() != nil || r.c.reached(closeRequested) {
				return true
			}
			r.empty.Add(1) // a recall, or a wait ended for nothing
			if !r.persist.Load() {
				return true
			}
			continue
		}
		if !r.sticky {
			return false
		}
		if m.InlineReady() || ctx.Err() != nil || r.c.reached(closeRequested) {
			return true // the mailbox's wait checks for the message and ctx
		}
		if failed++; failed%25 == 0 {
			if w := r.c.ls.Load().idle.Load(); w != nil && !w.waiting.Load() {
				r.nudges.Add(1)
				r.c.Execute(func() {})
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// inlineProc is a process: the goroutine that calls its methods owns m.
type inlineProc struct {
	tag byte
	m   *mailbox.Mailbox
	r   *inlineProbe
	c   *Conn
}

// proc makes the process of the client conn's mailbox tag.
// echoRound sends round i's echo request and checks that its reply is
// the next message p receives. On the test's goroutine.
func (p *inlineProc) echoRound(t *testing.T, ctx context.Context, i int) {
	t.Helper()
	body := seqBody(uint64(i))
	if err := p.send(ctx, kindEcho, body); err != nil {
		t.Fatalf("round %d: send: %v", i, err)
	}
	got, err := p.recv(ctx)
	if err != nil {
		t.Fatalf("round %d: receive: %v", i, err)
	}
	if want := string(inlineMsg(p.tag, kindEcho, body)); got != want {
		t.Fatalf("round %d: got %q, want %q", i, got, want)
	}
}

func (ip *inlinePair) proc(tag byte, sticky bool) *inlineProc {
	p := newInlineProc(ip.cliConn, ip.cli, tag, sticky)
	ip.mu.Lock()
	ip.probes = append(ip.probes, p.r)
	ip.mu.Unlock()
	return p
}

// newInlineProc makes the process of h's mailbox tag, reading c inline.
func newInlineProc(c *Conn, h *inlineClient, tag byte, sticky bool) *inlineProc {
	p := &inlineProc{tag: tag, m: h.boxes[tag], r: &inlineProbe{c: c, sticky: sticky}, c: c}
	p.m.SetInlineReader(p.r)
	return p
}

// pingPong runs rounds of request and reply (kindEcho); the first error.
func (p *inlineProc) pingPong(ctx context.Context, rounds int) error {
	for i := range rounds {
		body := seqBody(uint64(i))
		if err := p.send(ctx, kindEcho, body); err != nil {
			return fmt.Errorf("process %d round %d: send: %w", p.tag, i, err)
		}
		msg, err := p.recv(ctx)
		if err != nil {
			return fmt.Errorf("process %d round %d: receive: %w", p.tag, i, err)
		}
		if want := string(inlineMsg(p.tag, kindEcho, body)); msg != want {
			return fmt.Errorf("process %d round %d: got %q, want %q", p.tag, i, msg, want)
		}
	}
	return nil
}

// serverStream sends kindOther frames to mailbox tag through the server
// conn c, numbered from 0, until stop (at most maxStream), then "end";
// it reports how many it numbered.
func serverStream(t *testing.T, ctx context.Context, c *Conn, tag byte, stop *atomic.Bool, sent chan<- uint64) {
	const maxStream = 20000
	n := uint64(0)
	defer func() { sent <- n }()
	for ; n < maxStream && !stop.Load(); n++ {
		if err := c.Enqueue(ctx, frame(nil, inlineMsg(tag, kindOther, seqBody(n)))); err != nil {
			t.Errorf("stream to %d: %v", tag, err)
			return
		}
		runtime.Gosched()
	}
	if err := c.Enqueue(ctx, frame(nil, inlineMsg(tag, kindOther, []byte("end")))); err != nil {
		t.Errorf("stream to %d: %v", tag, err)
	}
}

// streamReceiver is the owner of m (no inline reader: it parks as usual),
// receiving serverStream's frames to tag in order until "end"; it reports
// how many came in sequence.
func streamReceiver(t *testing.T, ctx context.Context, m *mailbox.Mailbox, tag byte, got chan<- uint64) {
	n := uint64(0)
	defer func() { got <- n }()
	end := string(inlineMsg(tag, kindOther, []byte("end")))
	for {
		v, err := m.Receive(ctx)
		if err != nil {
			t.Errorf("stream receiver %d: after %d: %v", tag, n, err)
			return
		}
		if v == end {
			return
		}
		if want := string(inlineMsg(tag, kindOther, seqBody(n))); v != want {
			t.Errorf("stream receiver %d: got %q, want %q", tag, v, want)
			return
		}
		n++
	}
}

// send is a remote send: the request goes out on c.
func (p *inlineProc) send(ctx context.Context, kind byte, body []byte) error {
	return p.c.Enqueue(ctx, frame(nil, inlineMsg(p.tag, kind, body)))
}

// recv waits for the next message as a process does after a remote send:
// ParkNext, then Receive (whose wait asks the probe first).
func (p *inlineProc) recv(ctx context.Context) (string, error) {
	p.m.ParkNext()
	v, err := p.m.Receive(ctx)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("received a %T", v)
	}
	return s, nil
}

// recvAsync runs recv on a new goroutine (which owns m until the result
// is read).
func (p *inlineProc) recvAsync(ctx context.Context) <-chan recvResult {
	res := make(chan recvResult, 1)
	go func() {
		s, err := p.recv(ctx)
		res <- recvResult{s, err}
	}()
	return res
}

type recvResult struct {
	msg string
	err error
}

func awaitRecv(t *testing.T, res <-chan recvResult, what string) recvResult {
	t.Helper()
	return awaitRecvFor(t, res, what, inlineBound)
}

// awaitRecvFor is awaitRecv with its own bound.
func awaitRecvFor(t *testing.T, res <-chan recvResult, what string, d time.Duration) recvResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(d):
		t.Fatalf("still waiting after %v: %s", d, what)
		return recvResult{}
	}
}

type inlinePair struct {
	server, client   *Engine
	srvConn, cliConn *Conn
	srv              *inlineServer
	cli              *inlineClient

	addr     string
	accepted chan *Conn

	mu     sync.Mutex
	probes []*inlineProbe // proc's
}

// newInlinePair is newPair with the client's handler an inlineClient of
// boxes mailboxes. It skips the test where the client's loop does not
// wait in Go's netpoller: no process can take a read duty there. The
// handshake and its first byte are bounded by inlineBound, as every wait
// here: under load the defaults (5 s, 1 s) dropped the client's conn
// before the test began ("handshake failed: tls: EOF").
func newInlinePair(t *testing.T, srv *inlineServer, boxes int, opts ...Option) *inlinePair {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("inline reading needs the loop's netpoller wait (Linux: epoll, eventfd, /proc)")
	}
	with := func(name string) []Option {
		return append([]Option{WithLoops(2), WithHandshakeTimeout(inlineBound), WithFirstByteTimeout(inlineBound),
			WithHook(nameHook(name))}, opts...)
	}
	se, err := New(with("srv")...)
	if err != nil {
		t.Fatal(err)
	}
	ce, err := New(with("cli")...)
	if err != nil {
		_ = se.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ce.Close(); _ = se.Close() })
	ip := &inlinePair{server: se, client: ce, srv: srv, cli: newInlineClient(boxes), accepted: make(chan *Conn, 4)}
	addr, err := se.Listen("127.0.0.1:0", func(c *Conn) {
		c.SetHandler(newFrameHandler(srv.frame))
		c.Start()
		ip.accepted <- c
	})
	if err != nil {
		t.Fatal(err)
	}
	ip.addr = addr.String()
	ip.cliConn, ip.srvConn = ip.dial(t, ip.cli)
	t.Cleanup(func() { // runs before the engines close
		if t.Failed() {
			t.Logf("client conn at the end: %s; inlineFailed %d; OnClose reason %v",
				dutyState(ip.cliConn), ip.cliConn.inlineFailed.Load(), ip.cli.closeReason())
		}
		ip.mu.Lock()
		defer ip.mu.Unlock()
		var nudges int64
		for _, r := range ip.probes {
			nudges += r.nudges.Load()
		}
		if nudges > 0 {
			t.Logf("sticky probes found the loop outside the netpoller and gave it a task %d times", nudges)
		}
	})
	if ip.cliConn.ls.Load().idle.Load() == nil {
		t.Skip("inline reading needs the loop's netpoller wait: this loop found none (/proc?)")
	}
	return ip
}

// dial connects the client engine to the server once more, with handler h.
func (ip *inlinePair) dial(t *testing.T, h Handler) (cli, srv *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	c, err := ip.client.Dial(ctx, ip.addr, "srv")
	if err != nil {
		t.Fatal(err)
	}
	c.SetHandler(h)
	c.Start()
	select {
	case srv = <-ip.accepted:
	case <-ctx.Done():
		t.Fatal("server did not accept")
	}
	eventually(t, inlineBound, "the client conn is on its loop", func() bool { return c.ls.Load() != nil })
	return c, srv
}

// answer sends a held request back to the client as its reply.
func (ip *inlinePair) answer(t *testing.T, held []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	if err := ip.srvConn.Enqueue(ctx, frame(nil, held)); err != nil {
		t.Fatal(err)
	}
}

// holding waits until a process holds the client conn's read duty.
func (ip *inlinePair) holding(t *testing.T, who string) {
	t.Helper()
	deadline := time.Now().Add(inlineBound)
	for ip.cliConn.duty.Load()&dutyHeld == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v: %s holds the client conn's read duty (%s)", inlineBound, who, dutyState(ip.cliConn))
		}
		time.Sleep(time.Millisecond)
	}
}

// dutyState describes what ReadInline checks, and the send queue's
// drain token (drainState), for failure messages.
func dutyState(c *Conn) string {
	s := fmt.Sprintf("duty %#x, direct %v, close state %d, inline resources %v; %s",
		c.duty.Load(), c.direct.Load(), c.closeState.Load(), c.inl.Load() != nil, drainState(c))
	if ls := c.ls.Load(); ls != nil {
		if w := ls.idle.Load(); w != nil {
			s += fmt.Sprintf("; loop waiting %v, at a task %v, at this conn's OnTraffic %v, lend %v, owed %d, enrolling %d, busy %v",
				w.waiting.Load(), w.anyConn.Load(), w.parkedIn.Load() == c, w.lend.Load(), ls.owed.Load(), c.e.enrolling.Load(), ls.busy.Load())
		}
	}
	return s
}

// drainState describes c's send queue and its drain token: bytes queued
// with the conn not scheduled, once nothing runs, is an item nobody will
// send until the next push.
func drainState(c *Conn) string {
	return fmt.Sprintf("queued %d, bulk queued %d, scheduled %v", c.queued.Load(), c.bulkQueued.Load(), c.scheduled.Load())
}

// checkRules reports every rule break seen: the loop's own count
// (inlineFailed, both conns), overlapping or late OnData calls, frames
// for no mailbox, and what OnClose found.
func (ip *inlinePair) checkRules(t *testing.T) {
	t.Helper()
	if n := ip.srvConn.inlineFailed.Load(); n != 0 {
		t.Errorf("server conn: %d inline rule breaks (inlineFailed)", n)
	}
	checkClientRules(t, "client conn", ip.cliConn, ip.cli)
	checkLingerCounts(t, ip.client)
}

// checkLingerCounts checks e's lingering duties once nothing moves them:
// Engine.lingering counts exactly the conns whose duty lingers, each of
// those has its timer armed, and every conn that may linger is listed
// for ParkBegin's scan. A holder may be between two steps when it is
// called: it waits for that to pass (a failure detector's bound).
func checkLingerCounts(t *testing.T, e *Engine) {
	t.Helper()
	var why string
	ok := func() bool {
		e.mu.Lock()
		conns := make([]*Conn, 0, len(e.conns))
		for c := range e.conns {
			conns = append(conns, c)
		}
		e.mu.Unlock()
		e.lingerMu.Lock()
		listed := make(map[*Conn]bool, len(e.lingerConns))
		for _, c := range e.lingerConns {
			listed[c] = true
		}
		e.lingerMu.Unlock()
		n := 0
		for _, c := range conns {
			if c.duty.Load() != dutyLinger {
				continue
			}
			n++
			switch {
			case !c.lingerArmed.Load():
				why = "a duty lingers with its timer disarmed: " + dutyState(c)
				return false
			case !listed[c]:
				why = "a duty lingers on a conn ParkBegin does not scan: " + dutyState(c)
				return false
			}
		}
		if got := e.lingering.Load(); got != int64(n) {
			why = fmt.Sprintf("the engine counts %d lingering duties; %d linger", got, n)
			return false
		}
		if got := e.parked.Load(); got != 0 {
			why = fmt.Sprintf("the engine counts %d parks with no goroutine parked (ParkBegin without ParkEnd)", got)
			return false
		}
		return true
	}
	deadline := time.Now().Add(inlineBound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Error(why)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// checkClientRules is checkRules for a client conn c with handler h.
func checkClientRules(t *testing.T, name string, c *Conn, h *inlineClient) {
	t.Helper()
	if n := c.inlineFailed.Load(); n != 0 {
		t.Errorf("%s: %d inline rule breaks (inlineFailed); its close reason: %v", name, n, h.closeReason())
	}
	if n := h.overlaps.Load(); n != 0 {
		t.Errorf("%s: %d OnData calls began while another ran: two readers of one socket", name, n)
	}
	if n := h.late.Load(); n != 0 {
		t.Errorf("%s: %d OnData calls began after OnClose did", name, n)
	}
	if n := h.stray.Load(); n != 0 {
		t.Errorf("%s: %d frames for no mailbox, or answers refused", name, n)
	}
	if n := h.alien.Load(); n != 0 {
		t.Errorf("%s: %d frames read by a holder whose Conn.Holder is none of the waiting mailboxes", name, n)
	}
	h.mu.Lock()
	bad := h.closeBad
	h.mu.Unlock()
	for _, b := range bad {
		t.Errorf("%s: OnClose %s", name, b)
	}
}

// inlineLeakCheck fails the test if a goroutine it started is left once
// its cleanups (the engines' Close) ran. Call it before newInlinePair.
func inlineLeakCheck(t *testing.T) {
	t.Helper()
	opts := append(leaktest.Options(), goleak.IgnoreCurrent())
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// waitGroup waits for wg; past inlineBound it logs every goroutine's
// stack and fails the test.
func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	if !waitFor(wg, inlineBound) {
		logStacks(t)
		t.Fatalf("still waiting after %v: %s", inlineBound, what)
	}
}

// waitFor reports whether wg's count reached zero within d.
func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// logStacks logs every goroutine's stack: where a stalled test's
// goroutines wait (a holder of a read duty is in holdDuty).
func logStacks(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	t.Logf("every goroutine's stack:\n%s", buf)
}

// A context that can end and comes back wait after wait (a process
// receiving with one context) keeps its registration, which ends a
// holder's wait with it, from its second wait on (inlineRes.ctxStop: the
// registration costs more than the rest of a side's wait); a wait with
// another context drops it, and closing the conn drops a kept one, so
// that a context that lives on keeps nothing of the conn. (Its cancel
// ending a wait that kept it: TestInlineWaitEndsWithItsContextAndLosesNoReply;
// one before such a wait: TestInlineKeptContextEndedBeforeTheWaitEndsIt.)
func TestInlineContextRegistrationIsKeptForAReturningContext(t *testing.T) {
	ip := newInlinePair(t, newInlineServer(0), 1)
	p := ip.proc(0, true)
	ctx1, cancel1 := context.WithTimeout(context.Background(), inlineBound)
	defer cancel1()
	ctx2, cancel2 := context.WithTimeout(context.Background(), inlineBound)
	defer cancel2()
	// round runs rounds with ctx until one's wait reads inline (a reply
	// can be there before the wait takes the duty, and the loop reads it).
	i := 0
	round := func(ctx context.Context) {
		t.Helper()
		for took := p.r.took.Load(); p.r.took.Load() == took; i++ {
			if i > 1000 {
				t.Fatalf("no wait of %d read inline", i)
			}
			p.echoRound(t, ctx, i)
		}
	}
	round(ctx1)
	r := ip.cliConn.inl.Load() // made by the first holder; every holder's since
	round(ctx1)
	if r.ctxDone != ctx1.Done() || r.ctxStop == nil {
		t.Fatal("a context's second inline wait in a row did not keep its registration")
	}
	round(ctx1)
	round(ctx2)
	if r.ctxStop != nil || r.ctxDone != nil {
		t.Fatal("a wait with another context left the first one's registration kept")
	}
	cancel1() // its registration is gone: nothing to end
	round(ctx2)
	if r.ctxDone != ctx2.Done() || r.ctxStop == nil {
		t.Fatal("the second context's second wait did not keep its registration")
	}
	ip.checkRules(t)
	if err := ip.cliConn.Close(errClientGone); err != nil {
		t.Fatal(err)
	}
	// OnClose closes the mailbox after the inline resources (rule 5).
	for i := 0; !p.m.Closed(); i++ {
		if i > 10_000 {
			t.Fatal("the client's OnClose did not run")
		}
		time.Sleep(time.Millisecond)
	}
	if r.ctxStop != nil || r.ctxDone != nil {
		t.Fatal("the conn closed with a context's registration kept")
	}
}

// A kept context that ended between two waits (its callback set the
// cancel flag and poked, a past read deadline, while nobody held the
// duty) ends the next wait with it, although that wait's resets clear
// both before it reads: holdDuty looks at the kept context itself. This
// is the window between the mailbox's look at the context and its
// WaitInline, taken here by calling ReadInline with the ended context. A
// lost cancel leaves the wait, which has no deadline and no reply to
// come, reading until inlineBound.
func TestInlineKeptContextEndedBeforeTheWaitEndsIt(t *testing.T) {
	srv := newInlineServer(0)
	ip := newInlinePair(t, srv, 1)
	p := ip.proc(0, true)
	bound, cancelBound := context.WithTimeout(context.Background(), inlineBound)
	defer cancelBound()
	kept, cancelKept := context.WithCancel(context.Background()) // no deadline: only its cancel ends a wait
	defer cancelKept()
	var r *inlineRes
	for i := 0; r == nil || r.ctxDone != kept.Done(); i++ {
		if i > 1000 {
			t.Fatalf("no wait of %d kept the context's registration", i)
		}
		p.echoRound(t, kept, i)
		r = ip.cliConn.inl.Load()
	}
	if err := p.send(bound, kindHold, seqBody(1)); err != nil {
		t.Fatal(err)
	}
	held := srv.take(t) // no reply comes until it is answered
	cancelKept()
	eventually(t, inlineBound, "the kept registration's callback ran", r.cancel.Load)

	done := make(chan bool, 1)
	var give atomic.Bool
	go func() { // the owner of p.m until done is read
		for !give.Load() {
			if ip.cliConn.ReadInline(kept, p.m) {
				done <- true
				return
			}
			time.Sleep(time.Millisecond) // the duty is away (the loop's, or being given back)
		}
		done <- false
	}()
	select {
	case took := <-done:
		if !took {
			t.Fatal("ReadInline never took the duty")
		}
	case <-time.After(inlineBound):
		give.Store(true)
		p.m.Push("unstick") // its park's waker kicks the holder
		<-done
		t.Fatalf("a wait with its kept context ended before it began still waited after %v: the cancel was lost", inlineBound)
	}
	ip.answer(t, held)
	if msg, err := p.recv(bound); err != nil || msg != string(held) {
		t.Fatalf("after the ended wait: got %q, %v; want the held reply %q", msg, err, held)
	}
	if v, ok := p.m.TryReceive(); ok {
		t.Fatalf("a message too many: %v", v)
	}
	ip.checkRules(t)
}

// Rules 1-4 in the steady case: a process that sends a request and waits
// for the reply reads the reply itself. Every reply arrives, exactly and
// in order, the inline path is really taken (ReadInline held the duty,
// not just the mailbox's park), and no rule break is seen.
func TestInlinePingPongRepliesArriveInOrderThroughTheInlinePath(t *testing.T) {
	ip := newInlinePair(t, newInlineServer(0), 1)
	p := ip.proc(0, false)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	const rounds = 300
	for i := range rounds {
		p.echoRound(t, ctx, i)
	}
	if p.r.took.Load() == 0 {
		t.Fatalf("no wait of %d rounds took the read duty (%d tries): the inline path was never taken", rounds, p.r.tries.Load())
	}
	if ip.cli.own.Load() == 0 {
		t.Fatal("no reply read inline was for the holder's own mailbox (Conn.Holder)")
	}
	ip.checkRules(t)
	t.Logf("%d of %d waits read inline", p.r.took.Load(), rounds)
}

// A holder runs the conn's input for every mailbox, not just its own
// (rule 2's other side: while it holds the duty the loop reads nothing).
// A server-side stream to a second mailbox, whose owner parks as usual,
// arrives whole and in order while the first process ping-pongs inline;
// so do the answers the client's handler writes from OnData (on the
// holder's goroutine, as a node answers its peer's pings) to a stream of
// queries: none is lost or reordered, and none is written through gnet
// beside the holder (inlineFailed).
func TestInlineHolderDeliversOtherMailboxesInputInOrder(t *testing.T) {
	srv := newInlineServer(1)
	ip := newInlinePair(t, srv, 2)
	p := ip.proc(0, false)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	const rounds, maxQueries = 300, 20000
	var stop atomic.Bool
	sent := make(chan uint64, 1)
	var queries atomic.Uint32
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // the server's queries, answered by the client's handler
		defer wg.Done()
		for n := uint32(0); n < maxQueries && !stop.Load(); n++ {
			if err := ip.srvConn.Enqueue(ctx, frame(nil, inlineMsg(1, kindQuery, sinkBody(0, n, 0)))); err != nil {
				t.Errorf("queries: %v", err)
				return
			}
			queries.Add(1)
			runtime.Gosched()
		}
	}()
	go func() { defer wg.Done(); serverStream(t, ctx, ip.srvConn, 1, &stop, sent) }()
	got := make(chan uint64, 1)
	go func() { defer wg.Done(); streamReceiver(t, ctx, ip.cli.boxes[1], 1, got) }()
	for i := range rounds {
		body := seqBody(uint64(i))
		if err := p.send(ctx, kindEcho, body); err != nil {
			t.Fatalf("round %d: send: %v", i, err)
		}
		msg, err := p.recv(ctx)
		if err != nil {
			t.Fatalf("round %d: receive: %v", i, err)
		}
		if want := string(inlineMsg(0, kindEcho, body)); msg != want {
			t.Fatalf("round %d: got %q, want %q", i, msg, want)
		}
	}
	stop.Store(true)
	waitGroup(t, &wg, "the stream to the other mailbox ended")
	if s, g := <-sent, <-got; s != g {
		t.Errorf("the other mailbox got %d frames of %d", g, s)
	}
	eventually(t, inlineBound, "every query was answered", func() bool {
		_, next := srv.order.result()
		return next[0] == queries.Load()
	})
	if bad, _ := srv.order.result(); bad != 0 {
		t.Errorf("%d answers out of order", bad)
	}
	if p.r.took.Load() == 0 {
		t.Fatalf("no wait of %d rounds took the read duty (%d tries)", rounds, p.r.tries.Load())
	}
	ip.checkRules(t)
	t.Logf("%d of %d waits read inline", p.r.took.Load(), rounds)
}

// Rule 3: the loop never writes through gnet while a process holds the
// duty (gnet would set EPOLLIN again beside the holder): it writes the
// socket itself beside the holder, and recalls the duty only when the
// socket does not take everything (gnet must hold the rest). First, a
// process holds the duty, its reply held back, and a bulk item (always
// written by the loop) goes out while it keeps holding. Then the socket
// backs up (the server's loop blocked) under a burst of bulk and urgent
// items: the duty is recalled, the holder's wait ends, and gnet holds
// unsent bytes (partial writes), while a second process keeps trying to
// take the duty (refused until gnet's buffer is empty). Every byte
// arrives in order, both processes get their replies afterwards, and no
// rule break is seen.
func TestInlineLoopWritesBesideTheHolderAndRecallsTheDutyForABacklog(t *testing.T) {
	srv := newInlineServer(3)
	ip := newInlinePair(t, srv, 3, WithSocketBuffers(96<<10, 24<<10))
	t.Cleanup(srv.openGate) // before the engines close: never leave the server's loop blocked
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()

	p1 := ip.proc(1, true)
	if err := p1.send(ctx, kindHold, seqBody(1)); err != nil {
		t.Fatal(err)
	}
	held1 := srv.take(t)
	res1 := p1.recvAsync(ctx)
	ip.holding(t, "process 1")
	if _, err := ip.cliConn.EnqueueBulk(ctx, frame(nil, inlineMsg(0, kindSink, sinkBody(0, 0, 0)))); err != nil {
		t.Fatal(err)
	}
	eventually(t, inlineBound, "the loop wrote the bulk item beside the holder", func() bool {
		_, next := srv.order.result()
		return next[0] == 1
	})
	if ip.cliConn.duty.Load()&dutyHeld == 0 || p1.r.took.Load() != 0 {
		t.Fatalf("a write the socket took whole ended the hold (%s; holds ended %d)", dutyState(ip.cliConn), p1.r.took.Load())
	}

	p2 := ip.proc(2, true)
	if err := p2.send(ctx, kindHold, seqBody(2)); err != nil {
		t.Fatal(err)
	}
	held2 := srv.take(t)
	var expired atomic.Int64
	res2 := make(chan recvResult, 1)
	go func() { // process 2 waits in short deadlines: it keeps trying to take the duty
		for {
			short, cancelShort := context.WithTimeout(ctx, 2*time.Millisecond)
			msg, err := p2.recv(short)
			cancelShort()
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				expired.Add(1)
				continue
			}
			res2 <- recvResult{msg, err}
			return
		}
	}()

	if _, err := ip.cliConn.EnqueueBulk(ctx, frame(nil, inlineMsg(0, kindGate, nil))); err != nil {
		t.Fatal(err)
	}
	const bulkN, bulkPad, urgentN, urgentPad = 48, 32 << 10, 4000, 256
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range bulkN {
			if _, err := ip.cliConn.EnqueueBulk(ctx, frame(nil, inlineMsg(0, kindSink, sinkBody(1, uint32(i), bulkPad)))); err != nil {
				t.Errorf("bulk %d: %v", i, err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range urgentN {
			if err := ip.cliConn.Enqueue(ctx, frame(nil, inlineMsg(0, kindSink, sinkBody(2, uint32(i), urgentPad)))); err != nil {
				t.Errorf("urgent %d: %v", i, err)
				return
			}
		}
	}()
	outbound := func() int {
		ob := make(chan int, 1)
		ip.cliConn.Execute(func() { ob <- ip.cliConn.gc.OutboundBuffered() })
		select {
		case n := <-ob:
			return n
		case <-time.After(inlineBound):
			t.Fatal("a task on the client's loop did not run")
			return 0
		}
	}
	eventually(t, inlineBound, "the backlog recalled the duty: process 1's hold ended", func() bool { return p1.r.took.Load() == 1 })
	eventually(t, inlineBound, "the burst backed the socket up: gnet holds unsent bytes (partial writes)", func() bool {
		return outbound() > 0
	})
	srv.openGate()
	waitGroup(t, &wg, "the burst was queued")
	eventually(t, inlineBound, "every frame of the burst reached the server", func() bool {
		_, next := srv.order.result()
		return next[1] == bulkN && next[2] == urgentN
	})
	if bad, next := srv.order.result(); bad != 0 {
		t.Fatalf("%d frames out of order at the server (per sender in sequence: %v)", bad, next)
	}

	ip.answer(t, held1)
	ip.answer(t, held2)
	if r := awaitRecv(t, res1, "process 1's reply after the recall"); r.err != nil || r.msg != string(held1) {
		t.Errorf("process 1 got %q, %v; want %q", r.msg, r.err, held1)
	}
	if r := awaitRecv(t, res2, "process 2's reply"); r.err != nil || r.msg != string(held2) {
		t.Errorf("process 2 got %q, %v; want %q", r.msg, r.err, held2)
	}
	for _, p := range []*inlineProc{p1, p2} {
		if v, ok := p.m.TryReceive(); ok {
			t.Errorf("process %d got a second message: %v", p.tag, v)
		}
	}
	ip.checkRules(t)
	t.Logf("process 2: %d short waits expired, %d of %d waits read inline", expired.Load(), p2.r.took.Load(), p2.r.tries.Load())
}

// Rule 3's drain token: the loop that wrote beside a holder gives the
// token up and only then looks at the queue again. A sender that pushed
// while the loop still held the token saw the conn scheduled and left its
// item to the token's holder; that item must go out. The loop used to
// decide "nothing more" first and give the token up after: an item pushed
// in between stayed queued, unscheduled, until some later push. With
// eight processes on one conn and the loop's goroutine descheduled there
// for as long as the round trips in flight took, every process's next
// request ended up queued so, and all of them waited for replies to
// requests never sent, the duty held by one of them in the netpoller and
// the loop idle (TestInlineManyProcessesOnOneConnEachGetTheirRepliesInOrder's
// stall, once under load). testHookBesideHolder pushes at that point, on
// the loop itself, so the interleaving is the same in every run.
func TestInlineLoopWritingBesideTheHolderSendsWhatCameWhileItHeldTheToken(t *testing.T) {
	srv := newInlineServer(1)
	ip := newInlinePair(t, srv, 1)
	c := ip.cliConn
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	p := ip.proc(0, true)
	p.r.persist.Store(true) // a wait that ended for nothing holds again
	if err := p.send(ctx, kindHold, seqBody(1)); err != nil {
		t.Fatal(err)
	}
	held := srv.take(t)
	res := p.recvAsync(ctx)

	var sent atomic.Uint32 // sink items pushed, all on the loop, in order
	push := func() {
		if err := c.EnqueueNoWait(frame(nil, inlineMsg(0, kindSink, sinkBody(0, sent.Add(1)-1, 0)))); err != nil {
			t.Errorf("item %d: %v", sent.Load()-1, err)
		}
	}
	var fired atomic.Bool
	hook := func(hc *Conn) {
		if hc == c && fired.CompareAndSwap(false, true) {
			push() // the token still taken: push leaves the item to the loop
		}
	}
	testHookBesideHolder.Store(&hook)
	t.Cleanup(func() { testHookBesideHolder.Store(nil) })

	type tokenState struct {
		queued    int64
		scheduled bool
	}
	for !fired.Load() {
		if ctx.Err() != nil {
			t.Fatal("no flush of the loop ran beside the holder")
		}
		ip.holding(t, "the process")
		// Pushed from a task: the loop drains it in that task's leave,
		// through flushBesideHolder while the duty is away. The second
		// task runs after that leave, with nothing of the conn's running.
		c.Execute(push)
		st := make(chan tokenState, 1)
		c.Execute(func() { st <- tokenState{c.queued.Load(), c.scheduled.Load()} })
		select {
		case s := <-st:
			if s.queued > 0 && !s.scheduled {
				t.Fatalf("after the loop's write beside the holder, %d bytes are queued and the conn is not scheduled: "+
					"nobody holds the drain token, and nothing sends them until the next push (%s)", s.queued, dutyState(c))
			}
		case <-time.After(inlineBound):
			t.Fatal("a task on the client's loop did not run")
		}
	}
	eventually(t, inlineBound, "every item reached the server, the one pushed in the hook too", func() bool {
		_, next := srv.order.result()
		return next[0] == sent.Load()
	})
	if bad, _ := srv.order.result(); bad != 0 {
		t.Errorf("%d items out of order at the server", bad)
	}
	ip.answer(t, held)
	if r := awaitRecv(t, res, "the holder's reply"); r.err != nil || r.msg != string(held) {
		t.Fatalf("the holder got %q, %v; want %q", r.msg, r.err, held)
	}
	ip.checkRules(t)
}

var (
	errServerGone = errors.New("inline test: the server closes")
	errClientGone = errors.New("inline test: the client closes")
)

// resetConn closes c with a reset (SO_LINGER 0): its peer reads
// ECONNRESET, or an error event with nothing to read.
func resetConn(c *Conn, reason error) error {
	done := make(chan error, 1)
	c.Execute(func() {
		done <- unix.SetsockoptLinger(c.gc.Fd(), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	})
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-time.After(inlineBound):
		return errors.New("a task on the server's loop did not run")
	}
	return c.Close(reason)
}

// breakWriteBesideHolder makes the client loop's next write fail in TLS
// while a process holds the conn's duty: on the loop, tls.Conn's write
// side is shut (its close_notify dropped), and an item enqueued there goes
// out through flushBesideHolder, whose seal fails. The conn must close
// (closeOnLoop takes the drain token the failed flush gave up, and
// recalls the duty), not hang half-closed.
func breakWriteBesideHolder(ip *inlinePair) error {
	c := ip.cliConn
	done := make(chan error, 1)
	c.Execute(func() {
		if err := c.tc.CloseWrite(); err != nil {
			done <- err
			return
		}
		c.ad.SwapOutput(nil) // the close_notify: the peer must not see it
		done <- c.EnqueueNoWait(frame(nil, inlineMsg(0, kindSink, sinkBody(0, 0, 0))))
	})
	select {
	case err := <-done:
		return err
	case <-time.After(inlineBound):
		return errors.New("a task on the client's loop did not run")
	}
}

// Rule 5: a conn closing while a process holds its duty, from either end,
// gently or not. The holder's wait ends (its mailbox is closed by
// OnClose), OnClose runs only once the duty is home and the inline
// resources are closed, never beside or before an OnData, and no
// goroutine is left.
func TestInlineCloseWhileAHolderWaitsEndsTheWaitAndRunsOnCloseAlone(t *testing.T) {
	shutdown := func(c *Conn, reason error) error {
		ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
		defer cancel()
		if err := c.Shutdown(ctx, reason); errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
	cases := []struct {
		name   string
		close  func(ip *inlinePair) error
		reason error // the client's OnClose reason wraps it
	}{
		{"server Close", func(ip *inlinePair) error { return ip.srvConn.Close(errServerGone) }, ErrPeerClosed},
		{"server Shutdown", func(ip *inlinePair) error { return shutdown(ip.srvConn, errServerGone) }, ErrPeerClosed},
		{"server engine Close", func(ip *inlinePair) error { return ip.server.Close() }, ErrPeerClosed},
		{"server reset", func(ip *inlinePair) error { return resetConn(ip.srvConn, errServerGone) }, ErrPeerClosed},
		{"client Close", func(ip *inlinePair) error { return ip.cliConn.Close(errClientGone) }, errClientGone},
		{"client Shutdown", func(ip *inlinePair) error { return shutdown(ip.cliConn, errClientGone) }, errClientGone},
		{"client TLS write error beside the holder", breakWriteBesideHolder, ErrTLS},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inlineLeakCheck(t)
			_, ip, p, ctx, _ := heldRequest(t, 1)
			res := p.recvAsync(ctx)
			ip.holding(t, "the process")
			if err := tc.close(ip); err != nil {
				t.Fatalf("close: %v", err)
			}
			if r := awaitRecv(t, res, "the holder's wait ended with the conn"); !errors.Is(r.err, mailbox.ErrClosed) {
				t.Fatalf("the holder's Receive = %q, %v; want mailbox.ErrClosed (OnClose closed its mailbox)", r.msg, r.err)
			}
			select {
			case <-ip.cli.fh.closedC:
			case <-time.After(inlineBound):
				t.Fatal("the client's OnClose did not finish")
			}
			if reason := ip.cli.closeReason(); !errors.Is(reason, tc.reason) {
				t.Errorf("the client's OnClose reason = %v, want one wrapping %v", reason, tc.reason)
			}
			if p.r.took.Load() == 0 {
				t.Error("the holder's ReadInline did not report a wait")
			}
			ip.checkRules(t)
			if err := ip.client.Close(); err != nil {
				t.Errorf("client engine Close: %v", err)
			}
			if err := ip.server.Close(); err != nil {
				t.Errorf("server engine Close: %v", err)
			}
		})
	}
}

// Rule 5 through the engine: Engine.Close while a process holds a conn's
// duty returns (its OnClose waits for the duty, which the holder gives
// back when recalled), the holder's wait ends, and nothing is left behind.
func TestInlineEngineCloseWhileAHolderWaitsReturns(t *testing.T) {
	inlineLeakCheck(t)
	_, ip, p, ctx, _ := heldRequest(t, 1)
	res := p.recvAsync(ctx)
	ip.holding(t, "the process")
	closed := make(chan error, 1)
	go func() { closed <- ip.client.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Engine.Close: %v", err)
		}
	case <-time.After(inlineBound):
		t.Fatal("Engine.Close did not return while a process held a conn's read duty")
	}
	if r := awaitRecv(t, res, "the holder's wait ended with the engine"); !errors.Is(r.err, mailbox.ErrClosed) {
		t.Fatalf("the holder's Receive = %q, %v; want mailbox.ErrClosed", r.msg, r.err)
	}
	if reason := ip.cli.closeReason(); !errors.Is(reason, ErrEngineClosed) {
		t.Errorf("the client's OnClose reason = %v, want ErrEngineClosed", reason)
	}
	ip.checkRules(t)
}

// closeSpy is an inlineClient whose OnClose first runs onClose, on the
// loop, after endInline brought the duty home and before the mailboxes
// close.
type closeSpy struct {
	*inlineClient
	onClose func(c *Conn)
}

func (h *closeSpy) OnClose(c *Conn, reason error) {
	h.onClose(c)
	h.inlineClient.OnClose(c, reason)
}

// A holder whose duty OnClose calls back (gnet closes the conn with no
// close of ours, so nothing holds the drain token) gives it back without
// scheduling the conn: a drain scheduled then would run with the token
// free (inline.go, rule 5). The spy waits, on the loop inside OnClose,
// until the holder's ReadInline returned (its hand-back, schedule
// included, is over), and looks at the loop's ready list, which only this
// loop empties: the conn must not be on it without the token.
func TestInlineOnCloseHandBackSchedulesNoDrain(t *testing.T) {
	inlineLeakCheck(t)
	srv := newInlineServer(0)
	ip := newInlinePair(t, srv, 1)
	h := &closeSpy{inlineClient: newInlineClient(1)}
	c, _ := ip.dial(t, h)
	p := newInlineProc(c, h.inlineClient, 0, true)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()

	var took0 int64
	found := make(chan string, 1)
	h.onClose = func(c *Conn) {
		deadline := time.Now().Add(inlineBound)
		for p.r.took.Load() == took0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond)
		}
		ls := c.ls.Load()
		ls.mu.Lock()
		queued := slices.Contains(ls.ready, c)
		ls.mu.Unlock()
		switch {
		case p.r.took.Load() == took0:
			found <- "the holder's ReadInline did not return"
		case queued && !c.scheduled.Load():
			found <- "the holder's hand-back put the conn on the ready list with the drain token free"
		default:
			found <- ""
		}
	}

	if err := p.send(ctx, kindHold, seqBody(1)); err != nil {
		t.Fatal(err)
	}
	srv.take(t) // held: the process's wait finds no reply
	res := p.recvAsync(ctx)
	deadline := time.Now().Add(inlineBound)
	for c.duty.Load()&dutyHeld == 0 || !p.r.inside.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("the process never held the read duty (%s)", dutyState(c))
		}
		time.Sleep(time.Millisecond)
	}
	took0 = p.r.took.Load()
	if c.scheduled.Load() {
		t.Fatalf("the drain token is taken before the close (%s)", drainState(c))
	}
	// gnet closes the conn with no close of ours: OnClose comes with the
	// duty held, no recall by the loop, and the token free.
	c.Execute(func() { c.closeGnet() })

	select {
	case why := <-found:
		if why != "" {
			t.Fatal(why)
		}
	case <-time.After(inlineBound):
		t.Fatalf("OnClose did not run (%s)", dutyState(c))
	}
	if r := awaitRecv(t, res, "the holder's wait ended with the close"); !errors.Is(r.err, mailbox.ErrClosed) {
		t.Fatalf("the holder's Receive = %q, %v; want mailbox.ErrClosed", r.msg, r.err)
	}
	checkClientRules(t, fmt.Sprintf("conn %p", c), c, h.inlineClient)
}

// heldRequest starts a pair with one client process that reads inline,
// and sends a request (seq) that the server holds back: the process's
// next wait finds no reply until the test answers. It returns the held
// request, and a context bounded by inlineBound that ends with the test.
func heldRequest(t *testing.T, seq uint64) (*inlineServer, *inlinePair, *inlineProc, context.Context, []byte) {
	t.Helper()
	srv := newInlineServer(0)
	ip := newInlinePair(t, srv, 1)
	p := ip.proc(0, true)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	t.Cleanup(cancel)
	if err := p.send(ctx, kindHold, seqBody(seq)); err != nil {
		t.Fatal(err)
	}
	return srv, ip, p, ctx, srv.take(t)
}

// A holder's wait ends with its context: past a deadline Receive reports
// DeadlineExceeded, and the reply that comes later is received by the
// next wait, once (not lost with the ended wait, not duplicated); a
// cancelled context with no deadline ends the wait too, from another
// goroutine (the poke).
func TestInlineWaitEndsWithItsContextAndLosesNoReply(t *testing.T) {
	srv, ip, p, ctx, held1 := heldRequest(t, 1)
	for waits := 0; p.r.took.Load() == 0; waits++ { // until a wait held the duty when its deadline passed
		if ctx.Err() != nil {
			t.Fatalf("no wait of %d took the read duty", waits)
		}
		short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
		msg, err := p.recv(short)
		cancelShort()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Receive past its deadline = %q, %v; want context.DeadlineExceeded", msg, err)
		}
	}
	ip.answer(t, held1)
	if msg, err := p.recv(ctx); err != nil || msg != string(held1) {
		t.Fatalf("after the deadline: got %q, %v; want the held reply %q", msg, err, held1)
	}
	if err := p.send(ctx, kindEcho, seqBody(2)); err != nil {
		t.Fatal(err)
	}
	if msg, err := p.recv(ctx); err != nil || msg != string(inlineMsg(0, kindEcho, seqBody(2))) {
		t.Fatalf("the next round: got %q, %v; want its own reply", msg, err)
	}
	if v, ok := p.m.TryReceive(); ok {
		t.Fatalf("a message too many: %v", v)
	}

	// Rounds with the context first, until the conn's holders keep its
	// registration (holdDuty: from its second inline wait in a row on):
	// the wait below, with it again, registers nothing, and the kept
	// registration's callback must end it at the cancel.
	cctx, ccancel := context.WithCancel(context.Background())
	defer ccancel()
	for i := 3; ip.cliConn.inl.Load().ctxDone != cctx.Done(); i++ {
		if i > 1000 {
			t.Fatalf("no wait of %d kept the context's registration", i-3)
		}
		p.echoRound(t, cctx, i)
	}
	if err := p.send(ctx, kindHold, seqBody(3)); err != nil {
		t.Fatal(err)
	}
	held3 := srv.take(t)
	took := p.r.took.Load()
	res := p.recvAsync(cctx)
	ip.holding(t, "the process")
	ccancel()
	if r := awaitRecv(t, res, "a cancelled context ended the holder's wait"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Receive with its context cancelled = %q, %v; want context.Canceled", r.msg, r.err)
	}
	if p.r.took.Load() != took+1 {
		t.Errorf("the cancelled wait was not an inline one (took %d, was %d)", p.r.took.Load(), took)
	}
	ip.answer(t, held3)
	if msg, err := p.recv(ctx); err != nil || msg != string(held3) {
		t.Fatalf("after the cancel: got %q, %v; want the held reply %q", msg, err, held3)
	}
	if v, ok := p.m.TryReceive(); ok {
		t.Fatalf("a message too many: %v", v)
	}
	ip.checkRules(t)
}

// The token protocol (InlineParker): a local Push ends a holder's wait
// (the waker that ends the owner's park kicks the conn's holder), every
// message is received once, in order, whether a push lands during a hold
// or not (a lost kick would leave a holder asleep), and closing the
// mailbox ends a hold the same way.
func TestInlineLocalPushWakesTheHolder(t *testing.T) {
	srv := newInlineServer(0)
	ip := newInlinePair(t, srv, 1)
	p := ip.proc(0, true)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()

	// A holder whose reply is held back is woken by local messages alone.
	if err := p.send(ctx, kindHold, seqBody(0)); err != nil {
		t.Fatal(err)
	}
	held := srv.take(t)
	const wakes = 40
	for i := range wakes {
		res := p.recvAsync(ctx)
		ip.holding(t, "the process")
		want := fmt.Sprintf("local %d", i)
		if !p.m.Push(want) {
			t.Fatal("Push refused")
		}
		if r := awaitRecv(t, res, "a local Push woke the holder"); r.err != nil || r.msg != want {
			t.Fatalf("wake %d: got %q, %v; want %q", i, r.msg, r.err, want)
		}
	}
	if took := p.r.took.Load(); took < wakes {
		t.Fatalf("%d of %d woken waits held the duty", took, wakes)
	}
	ip.answer(t, held)
	if msg, err := p.recv(ctx); err != nil || msg != string(held) {
		t.Fatalf("the held reply: got %q, %v", msg, err)
	}

	// Pushes at any point of a ping-pong.
	const rounds, pushes = 200, 200
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := range pushes {
			for k := 0; k < 50 && ip.cliConn.duty.Load()&dutyHeld == 0; k++ {
				time.Sleep(20 * time.Microsecond) // aim at a hold, without insisting
			}
			if !p.m.Push(fmt.Sprintf("push %d", j)) {
				t.Error("Push refused")
				return
			}
		}
	}()
	nextPush := 0
	take := func(msg string) bool { // a push: in order, once
		var j int
		if _, err := fmt.Sscanf(msg, "push %d", &j); err != nil {
			return false
		}
		if j != nextPush {
			t.Fatalf("got push %d, want push %d", j, nextPush)
		}
		nextPush++
		return true
	}
	for i := range rounds {
		body := seqBody(uint64(i))
		if err := p.send(ctx, kindEcho, body); err != nil {
			t.Fatal(err)
		}
		want := string(inlineMsg(0, kindEcho, body))
		for {
			msg, err := p.recv(ctx)
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if take(msg) {
				continue
			}
			if msg != want {
				t.Fatalf("round %d: got %q, want %q", i, msg, want)
			}
			break
		}
	}
	waitGroup(t, &wg, "the pusher ended")
	for nextPush < pushes {
		msg, err := p.recv(ctx)
		if err != nil {
			t.Fatalf("after %d pushes: %v", nextPush, err)
		}
		if !take(msg) {
			t.Fatalf("unexpected %q", msg)
		}
	}
	if v, ok := p.m.TryReceive(); ok {
		t.Fatalf("a message too many: %v", v)
	}
	if r := ip.cliConn.inl.Load(); r == nil || r == inlineClosed {
		t.Fatal("the conn has no inline resources although its duty was held")
	}

	// Closing the mailbox (the process exits) ends a hold the same way.
	if err := p.send(ctx, kindHold, seqBody(1)); err != nil {
		t.Fatal(err)
	}
	srv.take(t)
	res := p.recvAsync(ctx)
	ip.holding(t, "the process")
	p.m.Close()
	if r := awaitRecv(t, res, "closing its mailbox ended the holder's wait"); !errors.Is(r.err, mailbox.ErrClosed) {
		t.Fatalf("Receive after its mailbox closed = %q, %v; want mailbox.ErrClosed", r.msg, r.err)
	}
	ip.checkRules(t)
	t.Logf("%d of %d waits read inline", p.r.took.Load(), p.r.tries.Load())
}

// Many processes on one conn wait for their own replies at once: the
// duty goes to one at a time (the others park, or retry for sticky
// probes), OnData never runs beside itself, and every process gets its
// replies, in order, whoever read them.
func TestInlineManyProcessesOnOneConnEachGetTheirRepliesInOrder(t *testing.T) {
	const procs, rounds = 8, 100
	ip := newInlinePair(t, newInlineServer(0), procs)
	// The processes' bound is past the wait's: a stall is reported while
	// it lasts, not once their context has ended it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*inlineBound)
	defer cancel()
	ps := make([]*inlineProc, procs)
	for i := range ps {
		ps[i] = ip.proc(byte(i), i%2 == 0)
	}
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.pingPong(ctx, rounds); err != nil {
				t.Error(err)
			}
		}()
	}
	if !waitFor(&wg, inlineBound) {
		var inside []byte
		for _, p := range ps {
			if p.r.inside.Load() {
				inside = append(inside, p.tag)
			}
		}
		t.Errorf("still waiting after %v: every process finished its rounds; processes in ReadInline %v; client conn: %s; server conn: %s",
			inlineBound, inside, dutyState(ip.cliConn), drainState(ip.srvConn))
		logStacks(t)
		cancel() // the stuck processes report their rounds
		waitGroup(t, &wg, "the stuck processes returned once their context ended")
		t.FailNow()
	}
	var took int64
	for _, p := range ps {
		took += p.r.took.Load()
	}
	if took == 0 {
		t.Fatalf("no wait of %d processes x %d rounds took the read duty", procs, rounds)
	}
	ip.checkRules(t)
	t.Logf("%d of %d waits read inline", took, procs*rounds)
}

// Large replies read by a holder: the frame spans many socket reads and
// TLS records, is gathered across OnData calls (the conn's leftover), and
// arrives whole; the next round still works.
func TestInlineHolderReadsLargeRepliesWhole(t *testing.T) {
	srv := newInlineServer(0)
	ip := newInlinePair(t, srv, 1)
	p := ip.proc(0, true)
	// 5 MiB through TLS under the race detector: at load 6 that took
	// longer than the other tests' bound.
	ctx, cancel := context.WithTimeout(context.Background(), 4*inlineBound)
	defer cancel()
	for _, size := range []int{64<<10 + 1, 1 << 20, 4 << 20} {
		if err := p.send(ctx, kindHold, seqBody(uint64(size))); err != nil {
			t.Fatal(err)
		}
		srv.take(t)
		took := p.r.took.Load()
		res := p.recvAsync(ctx)
		ip.holding(t, "the process")
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i*7 + i>>16)
		}
		want := inlineMsg(0, 'L', body)
		ip.answer(t, want)
		r := awaitRecvFor(t, res, "the large reply", 4*inlineBound)
		if r.err != nil {
			t.Fatalf("%d bytes: %v", size, r.err)
		}
		if r.msg != string(want) {
			t.Fatalf("%d bytes: got %d bytes, not the reply sent", size, len(r.msg))
		}
		if p.r.took.Load() == took {
			t.Errorf("%d bytes: the wait was not an inline one", size)
		}
		if err := p.send(ctx, kindEcho, seqBody(1)); err != nil {
			t.Fatal(err)
		}
		if msg, err := p.recv(ctx); err != nil || msg != string(inlineMsg(0, kindEcho, seqBody(1))) {
			t.Fatalf("after %d bytes: got %q, %v", size, msg, err)
		}
	}
	ip.checkRules(t)
}

// Rules 1 and 4 as pure checks: the duty may be lent only where gnet has
// no event of the conn left from its last epoll_wait: at the end of one of
// our tasks (any conn) or of that conn's own OnTraffic (that conn only);
// a taker gets nothing while the loop does not wait, while another grant
// is in progress, or from a conn that is closing, not idle for writes, or
// whose duty is away; and OnTraffic takes a duty on its way back for
// home, not for a second reader.
func TestInlineDutyIsLendableOnlyWhereTheLoopWaits(t *testing.T) {
	x, y := new(Conn), new(Conn)
	lendable := []struct {
		name    string
		anyConn bool
		in      *Conn
		x, y    bool
	}{
		{"parked at the end of a task", true, nil, true, true},
		{"parked at the end of X's OnTraffic", false, x, true, false},
		{"parked at the end of Y's OnTraffic", false, y, false, true},
		{"not parked anywhere", false, nil, false, false},
	}
	for _, tc := range lendable {
		var w idleWait
		w.anyConn.Store(tc.anyConn)
		w.parkedIn.Store(tc.in)
		if got := w.lendable(x); got != tc.x {
			t.Errorf("%s: lendable(X) = %v, want %v", tc.name, got, tc.x)
		}
		if got := w.lendable(y); got != tc.y {
			t.Errorf("%s: lendable(Y) = %v, want %v", tc.name, got, tc.y)
		}
	}

	// takeDuty's refusals (each before it touches gnet's epoll).
	refusals := []struct {
		name string
		set  func(w *idleWait, c *Conn)
	}{
		{"the loop does not wait", func(w *idleWait, c *Conn) { w.waiting.Store(false) }},
		{"another taker is granting itself a duty", func(w *idleWait, c *Conn) { w.lend.Store(true) }},
		{"the loop waits at another conn's OnTraffic", func(w *idleWait, c *Conn) { w.anyConn.Store(false); w.parkedIn.Store(y) }},
		{"the conn is not idle for writes", func(w *idleWait, c *Conn) { c.direct.Store(false) }},
		{"the conn is closing", func(w *idleWait, c *Conn) { c.advance(closeRequested) }},
		{"the duty is away", func(w *idleWait, c *Conn) { c.duty.Store(dutyHeld) }},
		{"the duty is being recalled", func(w *idleWait, c *Conn) { c.duty.Store(dutyHeld | dutyRecall) }},
		{"the duty is being called back by OnClose", func(w *idleWait, c *Conn) { c.duty.Store(dutyHeld | dutyEnd) }},
		{"the duty is being given back", func(w *idleWait, c *Conn) { c.duty.Store(dutyHeld | dutyReturning) }},
	}
	for _, tc := range refusals {
		var w idleWait
		c := new(Conn)
		w.waiting.Store(true)
		w.anyConn.Store(true)
		c.direct.Store(true)
		tc.set(&w, c)
		lendBefore, dutyBefore := w.lend.Load(), c.duty.Load()
		if c.takeDuty(&w) {
			t.Errorf("%s: takeDuty granted the duty", tc.name)
			continue
		}
		if w.lend.Load() != lendBefore {
			t.Errorf("%s: lend changed from %v", tc.name, lendBefore)
		}
		if c.duty.Load() != dutyBefore {
			t.Errorf("%s: duty changed from %#x to %#x", tc.name, dutyBefore, c.duty.Load())
		}
	}

	// The loop's OnTraffic meets a reader away only while a holder still
	// reads: one giving the duty back has handed over its last input
	// (rules 2, 4).
	for _, tc := range []struct {
		duty int32
		away bool
	}{
		{0, false},
		{dutyHeld, true},
		{dutyHeld | dutyRecall, true},
		{dutyHeld | dutyReturning, false},
		{dutyHeld | dutyRecall | dutyReturning, false},
		{dutyHeld | dutyEnd, true},
		{dutyHeld | dutyEnd | dutyReturning, false},
	} {
		c := new(Conn)
		c.duty.Store(tc.duty)
		if got := c.readerAway(); got != tc.away {
			t.Errorf("duty %#x: readerAway = %v, want %v", tc.duty, got, tc.away)
		}
	}
}

// A poke (a cancelled context's, from context.AfterFunc on a goroutine of
// its own) is two steps, poked and then a read deadline in the past, and
// a holder starting meanwhile resets the deadline only when poked or when
// its own deadline differs from the last one set. A poke whose second
// step lands after the next holder's reset ends that wait for nothing,
// which is allowed ("waited again"); the hazard is what follows: the
// deadline must not stay in the past, or every later wait with no
// deadline (a node process's) ends at once and the conn is never read
// inline again. The test lands the second step so (a past deadline while
// a holder with no deadline waits), then checks that the next such wait
// holds until something ends it.
func TestInlineStalePokeDoesNotEndLaterWaits(t *testing.T) {
	_, ip, p, ctx, held := heldRequest(t, 1)

	res := p.recvAsync(context.Background())
	ip.holding(t, "the first wait")
	var r *inlineRes
	eventually(t, inlineBound, "the holder made the conn's inline resources", func() bool {
		r = ip.cliConn.inl.Load()
		return r != nil && r != inlineClosed
	})
	// A poke's second step, its first one already taken by this holder:
	// landed again until one comes after the holder set its own deadline.
	eventually(t, inlineBound, "the poked wait ended", func() bool {
		_ = r.sock.SetReadDeadline(time.Unix(1, 0))
		return p.r.empty.Load() == 1
	})
	if !p.m.Push("wake 1") {
		t.Fatal("Push refused")
	}
	if r := awaitRecv(t, res, "the first wait"); r.err != nil || r.msg != "wake 1" {
		t.Fatalf("the first wait: got %q, %v", r.msg, r.err)
	}

	p.r.persist.Store(true) // a wait that ends for nothing is counted and read again
	res = p.recvAsync(context.Background())
	ip.holding(t, "the next wait")
	if !p.m.Push("wake 2") {
		t.Fatal("Push refused")
	}
	if r := awaitRecv(t, res, "the next wait"); r.err != nil || r.msg != "wake 2" {
		t.Fatalf("the next wait: got %q, %v", r.msg, r.err)
	}
	if n := p.r.empty.Load() - 1; n != 0 {
		t.Errorf("the next wait with no deadline ended %d times for nothing: the stale deadline stayed on the conn's inline socket", n)
	}
	p.r.persist.Store(false)
	ip.answer(t, held)
	if msg, err := p.recv(ctx); err != nil || msg != string(held) {
		t.Fatalf("the held reply: got %q, %v", msg, err)
	}
	ip.checkRules(t)
}

// Rule 1 across conns: a loop waiting at the end of one conn's OnTraffic
// lends only that conn's duty (gnet may still hold an event of another
// conn from the same epoll_wait). Two conns on one loop, a process
// reading each inline and a stream on each to a mailbox read as usual:
// every reply and every streamed frame arrives, in order, and neither
// conn sees a rule break.
func TestInlineTwoConnsOnOneLoopLendOnlyTheirOwnDuty(t *testing.T) {
	srv := newInlineServer(0)
	ip := newInlinePair(t, srv, 2, WithLoops(1))
	cli2 := newInlineClient(2)
	c2, s2 := ip.dial(t, cli2)
	if c2.ls.Load() != ip.cliConn.ls.Load() {
		t.Fatal("the two client conns are not on one loop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	const rounds = 200
	ps := []*inlineProc{ip.proc(0, false), newInlineProc(c2, cli2, 0, false)}
	var stop atomic.Bool
	sent, got := make(chan uint64, 2), make(chan uint64, 2)
	var streams, procs sync.WaitGroup
	for _, st := range []struct {
		srv *Conn
		box *mailbox.Mailbox
	}{{ip.srvConn, ip.cli.boxes[1]}, {s2, cli2.boxes[1]}} {
		streams.Add(2)
		go func() { defer streams.Done(); serverStream(t, ctx, st.srv, 1, &stop, sent) }()
		go func() { defer streams.Done(); streamReceiver(t, ctx, st.box, 1, got) }()
	}
	for _, p := range ps {
		procs.Add(1)
		go func() {
			defer procs.Done()
			if err := p.pingPong(ctx, rounds); err != nil {
				t.Error(err)
			}
		}()
	}
	waitGroup(t, &procs, "both processes finished their rounds")
	stop.Store(true)
	waitGroup(t, &streams, "both streams ended")
	if s1, s2, g1, g2 := <-sent, <-sent, <-got, <-got; s1+s2 != g1+g2 {
		t.Errorf("the streams' mailboxes got %d frames of %d", g1+g2, s1+s2)
	}
	if ps[0].r.took.Load()+ps[1].r.took.Load() == 0 {
		t.Fatalf("no wait of 2 x %d rounds took a read duty", rounds)
	}
	ip.checkRules(t)
	checkClientRules(t, "second client conn", c2, cli2)
	if n := s2.inlineFailed.Load(); n != 0 {
		t.Errorf("second server conn: %d inline rule breaks", n)
	}
	t.Logf("waits read inline: %d and %d of %d", ps[0].r.took.Load(), ps[1].r.took.Load(), rounds)
}

// A panic in the handler's OnData on a holder's goroutine (a process may
// recover from it) still gives the duty back, and closes the conn (the
// frame it panicked on is half handled): its close is not stuck in
// OnClose waiting for the duty (rule 5).
func TestInlineHandlerPanicOnAHolderGivesTheDutyBack(t *testing.T) {
	inlineLeakCheck(t)
	srv := newInlineServer(0)
	ip := newInlinePair(t, srv, 2)
	p := ip.proc(0, true)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	if err := p.send(ctx, kindHold, seqBody(1)); err != nil {
		t.Fatal(err)
	}
	srv.take(t)
	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		_, _ = p.recv(ctx)
	}()
	ip.holding(t, "the process")
	ip.answer(t, inlineMsg(0, kindPanic, nil))
	select {
	case v := <-recovered:
		if v != errHandlerPanic {
			t.Fatalf("the process recovered %v, want the handler's panic", v)
		}
	case <-time.After(inlineBound):
		t.Fatal("the handler's panic did not reach the holder's process")
	}
	if p.r.tries.Load() == 0 {
		t.Fatal("the panic came from no inline wait")
	}
	if d := ip.cliConn.duty.Load(); d != 0 {
		t.Fatalf("after the panic the duty is still away (%#x)", d)
	}
	if ip.cliConn.inCallback.Load() {
		t.Error("after the panic the conn still counts a holder in OnData")
	}
	// The frame the handler panicked on is half handled: the conn is
	// closed (on the loop the panic would have ended the OS process), with
	// a reason that says why, and OnClose runs.
	select {
	case <-ip.cli.fh.closedC:
	case <-time.After(inlineBound):
		t.Fatalf("OnClose did not run after the panic (%s)", dutyState(ip.cliConn))
	}
	if _, _, reason := ip.cli.fh.count(); !errors.Is(reason, ErrClosed) || !strings.Contains(fmt.Sprint(reason), "panicked") {
		t.Fatalf("close reason after the panic: %v; want ErrClosed saying the handler panicked", reason)
	}
	ip.checkRules(t)
}

// Idle release: a conn's inline resources (a duplicate of its socket,
// from the dup budget) are given back once no holder used them
// for dupIdle, and the next holder makes them again: the inline path
// works again each time, and every descriptor taken from the budget is
// back once the engines closed.
func TestInlineIdleResourcesAreReleasedAndMadeAgain(t *testing.T) {
	saved := dupIdle
	dupIdle = 30 * time.Millisecond
	t.Cleanup(func() { dupIdle = saved }) // runs last, after the engines closed
	budget := dups.open.Load()
	t.Cleanup(func() {
		if n := dups.open.Load(); n != budget {
			t.Errorf("the dup budget counts %d descriptors open after the engines closed, %d before the test", n, budget)
		}
	})
	ip := newInlinePair(t, newInlineServer(0), 1)
	p := ip.proc(0, false)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	for round := range 3 {
		took := p.r.took.Load()
		for i := 0; p.r.took.Load() == took; i++ {
			if i == 1000 {
				t.Fatalf("round %d: no wait of %d read inline", round, i)
			}
			if err := p.pingPong(ctx, 1); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if r := ip.cliConn.inl.Load(); r == nil || r == inlineClosed {
			t.Fatalf("round %d: a wait read inline, and the conn has no inline resources", round)
		}
		eventually(t, inlineBound, "the idle conn's inline resources were given back", func() bool {
			return ip.cliConn.inl.Load() == nil
		})
	}
	ip.checkRules(t)
}
