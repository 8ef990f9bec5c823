package loop

// The lingering duty (inline.go, rule 4): a holder that gives the duty
// back with nothing needing it home leaves EPOLLIN off, and the next
// waiter takes it without an epoll_ctl. What it must not cost: input that
// no waiter reads left unread for good, a close or an engine stop that
// waits for a duty nobody gives back, a write the socket did not take
// left unsent. Timeouts here are failure detectors only (inlineBound).

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshrt/mesh/mailbox"
)

// lingerLong makes the client conn's lingering duties outlast the test:
// only a waiter or a recall ends one, never the timer.
func lingerLong(ip *inlinePair) { ip.cliConn.lingerFor = time.Hour }

// lingering runs rounds of ping-pong on process p (a sticky probe: it
// reads inline whenever it finds the loop lending), then more, one at a
// time, until the duty lingers after a round: the first rounds may find
// the loop reading the conn itself (idle.go, waitSocket) and the reply
// already there. Once a hand-back left it lingering under lingerLong, only
// a waiter, a recall or the close takes it from there.
func lingering(t *testing.T, ip *inlinePair, p *inlineProc, rounds int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	if err := p.pingPong(ctx, rounds); err != nil {
		t.Fatal(err)
	}
	for i := 0; ip.cliConn.duty.Load() != dutyLinger; i++ {
		if i == 1000 {
			t.Fatalf("after %d rounds the duty does not linger: %s", rounds+i, dutyState(ip.cliConn))
		}
		if err := p.pingPong(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
}

// lingeringPair is an inlinePair with boxes mailboxes under lingerLong,
// whose process 0 (returned) left the client conn's duty lingering after
// a few rounds.
func lingeringPair(t *testing.T, boxes int) (*inlinePair, *inlineProc) {
	t.Helper()
	ip := newInlinePair(t, newInlineServer(0), boxes)
	lingerLong(ip)
	p := ip.proc(0, true)
	lingering(t, ip, p, 3)
	return ip, p
}

// A steady ping-pong: every wait after the first takes the duty its
// predecessor left lingering, with no epoll_ctl on gnet's instance for
// either the take or the hand-back.
func TestLingeringDutyIsTakenAgainWithoutEpollCtl(t *testing.T) {
	inlineLeakCheck(t)
	ip := newInlinePair(t, newInlineServer(0), 1)
	lingerLong(ip)
	p := ip.proc(0, true)
	lingering(t, ip, p, 1)
	w := ip.cliConn.ls.Load().idle.Load()
	ctls, lingers, took := w.epollCtls.Load(), ip.cliConn.lingers.Load(), p.r.took.Load()
	const rounds = 200
	lingering(t, ip, p, rounds)
	if n := w.epollCtls.Load() - ctls; n != 0 {
		t.Errorf("%d epoll_ctl calls in %d rounds that took a lingering duty; want 0", n, rounds)
	}
	if n := p.r.took.Load() - took; n < rounds {
		t.Errorf("%d of %d waits read inline", n, rounds)
	}
	if n := ip.cliConn.lingers.Load() - lingers; n < rounds {
		t.Errorf("%d of %d hand-backs left the duty lingering", n, rounds)
	}
	ip.checkRules(t)
}

// A process that read its reply and then waits no more leaves the duty
// lingering; a later message for another process, whose owner parks
// without reading inline, is still delivered: the loop reclaims the duty
// and reads it.
func TestLingeringDutyNobodyTakesAgainComesHome(t *testing.T) {
	inlineLeakCheck(t)
	ip := newInlinePair(t, newInlineServer(0), 2)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	p := ip.proc(0, true)
	// Rounds until a hand-back left the duty lingering (the first may find
	// the loop reading the conn itself, idle.go's waitSocket); the timer
	// may have reclaimed it since, which this test is about too.
	for i := 0; ip.cliConn.lingers.Load() == 0; i++ {
		if i == 1000 {
			t.Fatalf("after %d rounds no hand-back left the duty lingering: %s", i, dutyState(ip.cliConn))
		}
		if err := p.pingPong(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	want := string(inlineMsg(1, kindOther, seqBody(7)))
	if err := ip.srvConn.Enqueue(ctx, frame(nil, []byte(want))); err != nil {
		t.Fatal(err)
	}
	got, err := ip.cli.boxes[1].Receive(ctx) // no inline reader: the loop must read it
	if err != nil {
		t.Fatalf("the message for the parked process: %v (%s)", err, dutyState(ip.cliConn))
	}
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if ip.cliConn.lingerReclaims.Load() == 0 {
		t.Errorf("the message came with no lingering duty reclaimed: %s", dutyState(ip.cliConn))
	}
	ip.checkRules(t)
}

// A goroutine that parks for input the loop reads for it (a process
// parked for its next message, Engine.ParkBegin) may be waiting for
// anything on any conn: its park reclaims a lingering duty there and
// then, and no hand-back leaves the duty lingering while a park is
// counted; the loop reads the input. Once no park is counted, the duty
// lingers again. The linger timer never fires here (lingerLong).
func TestAParkedGoroutineKeepsTheDutyFromLingering(t *testing.T) {
	inlineLeakCheck(t)
	ip, p := lingeringPair(t, 2)
	reclaims := ip.cliConn.lingerReclaims.Load()
	ip.client.ParkBegin()
	parked := true
	defer func() {
		if parked {
			ip.client.ParkEnd()
		}
	}()
	if d := ip.cliConn.duty.Load(); d != 0 {
		t.Fatalf("after ParkBegin the duty is not home: %s", dutyState(ip.cliConn))
	}
	if n := ip.cliConn.lingerReclaims.Load() - reclaims; n != 1 {
		t.Errorf("ParkBegin reclaimed %d lingering duties, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	want := string(inlineMsg(1, kindOther, seqBody(7)))
	if err := ip.srvConn.Enqueue(ctx, frame(nil, []byte(want))); err != nil {
		t.Fatal(err)
	}
	if got, err := ip.cli.boxes[1].Receive(ctx); err != nil || got != want {
		t.Fatalf("the message for the parked goroutine: %q, %v; want %q (%s)", got, err, want, dutyState(ip.cliConn))
	}
	lingers := ip.cliConn.lingers.Load()
	const rounds = 20
	if err := p.pingPong(ctx, rounds); err != nil {
		t.Fatal(err)
	}
	if n := ip.cliConn.lingers.Load() - lingers; n != 0 {
		t.Errorf("%d hand-backs left the duty lingering while a park was counted", n)
	}
	if n := ip.client.lingering.Load(); n != 0 {
		t.Errorf("the engine counts %d lingering duties while a park was counted", n)
	}
	ip.client.ParkEnd()
	parked = false
	lingering(t, ip, p, 1)
	ip.checkRules(t)
}

// A process that reads one conn inline may be waiting for a message
// that comes on another (a reply from a second node): taking its duty
// reclaims the other conn's lingering duty, and while it holds it no
// hand-back on the other conn leaves the duty lingering.
func TestAHolderKeepsOtherConnsDutiesFromLingering(t *testing.T) {
	inlineLeakCheck(t)
	ip := newInlinePair(t, newInlineServer(0), 1)
	lingerLong(ip)
	cli2 := newInlineClient(1)
	c2, srv2 := ip.dial(t, cli2)
	c2.lingerFor = time.Hour // before c2's first wait: no duty of c2 lingers yet
	p := ip.proc(0, true)
	lingering(t, ip, p, 3)
	reclaims := ip.cliConn.lingerReclaims.Load()

	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	p2 := newInlineProc(c2, cli2, 0, true)
	res := p2.recvAsync(ctx)
	eventually(t, inlineBound, "the second process holds the second conn's duty", func() bool {
		return c2.duty.Load()&dutyHeld != 0
	})
	// The holder reclaims it in its ParkBegin, just after its take.
	eventually(t, inlineBound, "a holder of another conn's duty reclaims this one's lingering duty", func() bool {
		return ip.cliConn.duty.Load() == 0
	})
	if n := ip.cliConn.lingerReclaims.Load() - reclaims; n != 1 {
		t.Errorf("%d lingering duties reclaimed, want 1", n)
	}
	lingers := ip.cliConn.lingers.Load()
	if err := p.pingPong(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if n := ip.cliConn.lingers.Load() - lingers; n != 0 {
		t.Errorf("%d hand-backs left the duty lingering while another conn's holder waited", n)
	}
	want := string(inlineMsg(0, kindOther, seqBody(9)))
	if err := srv2.Enqueue(ctx, frame(nil, []byte(want))); err != nil {
		t.Fatal(err)
	}
	if r := awaitRecv(t, res, "the second process's message"); r.err != nil || r.msg != want {
		t.Fatalf("the second process got %q, %v; want %q", r.msg, r.err, want)
	}
	ip.checkRules(t)
}

// A park that begins after a hand-back counted its duty lingering but
// before the duty lingers: ParkBegin's scan finds the duty still held, so
// the hand-back's second look at the parks must send it home.
func TestAParkBetweenTheCountAndTheLingerSendsTheDutyHome(t *testing.T) {
	inlineLeakCheck(t)
	ip, p := lingeringPair(t, 1)
	var fired atomic.Bool
	h := func(c *Conn) {
		if c == ip.cliConn && fired.CompareAndSwap(false, true) {
			c.e.ParkBegin()
		}
	}
	testHookBeforeLinger.Store(&h)
	defer testHookBeforeLinger.Store(nil)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	for !fired.Load() {
		if err := p.pingPong(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if d := ip.cliConn.duty.Load(); d == dutyLinger {
		t.Errorf("the duty lingers while a park is counted: %s", dutyState(ip.cliConn))
	}
	if n := ip.client.lingering.Load(); n != 0 {
		t.Errorf("the engine counts %d lingering duties while a park is counted", n)
	}
	ip.client.ParkEnd()
	ip.checkRules(t)
}

// A hand-back that leaves the duty lingering while the linger timer's
// tick is between its look at the duty and its disarm finds the timer
// armed and does not arm it: the tick must look again, or the duty would
// linger with no timer, and input nobody waits for (a peer's tick) would
// stay unread.
func TestAHandBackDuringTheTicksDisarmKeepsTheTimerArmed(t *testing.T) {
	inlineLeakCheck(t)
	ip, p := lingeringPair(t, 1)
	c := ip.cliConn
	if !c.lingerArmed.Load() {
		t.Fatalf("a duty lingers with its timer disarmed: %s", dutyState(c))
	}
	if !c.reclaimDuty() {
		t.Fatalf("no lingering duty to reclaim: %s", dutyState(c))
	}
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	h := func(*Conn) {
		testHookTickDisarm.Store(nil)
		for i := 0; c.duty.Load() != dutyLinger; i++ {
			if i == 1000 {
				t.Errorf("the duty does not linger: %s", dutyState(c))
				return
			}
			if err := p.pingPong(ctx, 1); err != nil {
				t.Error(err)
				return
			}
		}
	}
	testHookTickDisarm.Store(&h)
	defer testHookTickDisarm.Store(nil)
	c.lingerTick() // as the timer: it finds the duty home; the hook's hand-back then lingers
	if c.duty.Load() == dutyLinger && !c.lingerArmed.Load() {
		t.Errorf("the duty lingers with its timer disarmed: %s", dutyState(c))
	}
	ip.checkRules(t)
}

// A close while the duty lingers (rule 5): OnClose reclaims it at once,
// runs with the duty home and the inline resources closed, and no OnData
// runs beside or after it.
func TestLingeringDutyConnCloseCompletes(t *testing.T) {
	inlineLeakCheck(t)
	ip, _ := lingeringPair(t, 1)
	cause := errors.New("closed by the test")
	if err := ip.cliConn.Close(cause); err != nil {
		t.Fatal(err)
	}
	eventually(t, inlineBound, "OnClose ran for the conn whose duty lingered", func() bool {
		_, closes, _ := ip.cli.fh.count()
		return closes == 1
	})
	if err := ip.cli.closeReason(); !errors.Is(err, cause) {
		t.Errorf("close reason %v, want %v", err, cause)
	}
	ip.client.lingerMu.Lock()
	for _, c := range ip.client.lingerConns {
		if c == ip.cliConn {
			t.Error("the closed conn is still on the engine's list of conns whose duty may linger")
		}
	}
	ip.client.lingerMu.Unlock()
	ip.checkRules(t)
}

// An engine stop while the duty lingers: Close returns, and OnClose finds
// the duty home and the inline resources closed.
func TestLingeringDutyEngineCloseReturns(t *testing.T) {
	inlineLeakCheck(t)
	ip, _ := lingeringPair(t, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = ip.client.Close()
	}()
	waitGroup(t, &wg, "the client engine's Close while a duty lingered")
	if _, closes, _ := ip.cli.fh.count(); closes != 1 {
		t.Errorf("%d OnClose calls, want 1", closes)
	}
	ip.checkRules(t)
}

// A write the socket does not take while the duty lingers (rule 3): the
// loop writes beside the lingering duty, and for the rest, which gnet
// must hold, reclaims the duty at once (no holder would give it back);
// everything reaches the peer, in order.
func TestLingeringDutySpillIsWritten(t *testing.T) {
	inlineLeakCheck(t)
	srv := newInlineServer(2)
	ip := newInlinePair(t, srv, 1, WithSocketBuffers(96<<10, 24<<10))
	t.Cleanup(srv.openGate) // before the engines close: never leave the server's loop blocked
	lingerLong(ip)
	lingering(t, ip, ip.proc(0, true), 3)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	if err := ip.cliConn.Enqueue(ctx, frame(nil, inlineMsg(0, kindGate, nil))); err != nil {
		t.Fatal(err)
	}
	const bulkN, bulkPad, urgentN, urgentPad = 48, 32 << 10, 2000, 256
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range bulkN {
			if _, err := ip.cliConn.EnqueueBulk(ctx, frame(nil, inlineMsg(0, kindSink, sinkBody(0, uint32(i), bulkPad)))); err != nil {
				t.Errorf("bulk %d: %v", i, err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := range urgentN {
			if err := ip.cliConn.Enqueue(ctx, frame(nil, inlineMsg(0, kindSink, sinkBody(1, uint32(i), urgentPad)))); err != nil {
				t.Errorf("urgent %d: %v", i, err)
				return
			}
		}
	}()
	eventually(t, inlineBound, "the backlog reclaimed the lingering duty", func() bool {
		return ip.cliConn.lingerReclaims.Load() > 0
	})
	srv.openGate()
	waitGroup(t, &wg, "the burst was queued")
	eventually(t, inlineBound, "every frame of the burst reached the server", func() bool {
		_, next := srv.order.result()
		return next[0] == bulkN && next[1] == urgentN
	})
	if bad, next := srv.order.result(); bad != 0 {
		t.Fatalf("%d frames out of order at the server (per sender in sequence: %v)", bad, next)
	}
	ip.checkRules(t)
}

// A holder that reads the end of the input (the peer's FIN, no
// close_notify) gives the duty home rather than leave it lingering: gnet
// must see the end to close the conn, which it cannot with EPOLLIN off,
// and a next holder would only read the end again. The waiting process
// learns of the close (its mailbox closes), and OnClose runs once.
func TestLingeringDutyHolderThatReadsTheEndGivesItHome(t *testing.T) {
	inlineLeakCheck(t)
	ip := newInlinePair(t, newInlineServer(0), 1)
	lingerLong(ip)
	p := ip.proc(0, true)
	p.r.persist.Store(true) // a wait that ends with nothing reads again, as a process whose message has not come
	lingering(t, ip, p, 3)
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	res := p.recvAsync(ctx)
	ip.holding(t, "the process")
	done := make(chan error, 1)
	ip.srvConn.Execute(func() { done <- unix.Shutdown(ip.srvConn.gc.Fd(), unix.SHUT_WR) })
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(inlineBound):
		t.Fatal("a task on the server's loop did not run")
	}
	if r := awaitRecv(t, res, "the wait after the peer's FIN"); !errors.Is(r.err, mailbox.ErrClosed) {
		t.Fatalf("got %q, %v after the peer's FIN; want the mailbox closed (%v)", r.msg, r.err, mailbox.ErrClosed)
	}
	eventually(t, inlineBound, "OnClose ran for the conn whose peer sent FIN", func() bool {
		_, closes, _ := ip.cli.fh.count()
		return closes == 1
	})
	ip.checkRules(t)
}
