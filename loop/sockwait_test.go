//go:build linux

package loop

// The socket wait (idle.go, waitSocket): a loop with one conn waits on
// that conn's socket itself, with the socket's input off in gnet's epoll
// instance, and reads and handles the input where it woke. Whatever gnet's
// instance would have reported while it waits must still reach the loop;
// each test below is one such event. Timeouts are failure detectors only;
// nothing is timed.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockWaiting reports whether c's loop waits on c's socket now: it
// published its duplicate and holds c's read duty for itself.
func sockWaiting(c *Conn) bool {
	ls := c.ls.Load()
	if ls == nil {
		return false
	}
	w := ls.idle.Load()
	if w == nil {
		return false
	}
	s := w.sock.Load()
	return s != nil && s.c == c && c.duty.Load() == dutyLoop && w.waiting.Load()
}

// loopFD returns c's socket descriptor, read on its loop.
func loopFD(t *testing.T, c *Conn) int {
	t.Helper()
	fd := make(chan int, 1)
	c.Execute(func() { fd <- c.gc.Fd() })
	select {
	case n := <-fd:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("a task did not run")
		return -1
	}
}

// gnetEvents returns the events gnet's epoll instance (the loop's
// duplicate of it) watches on fd, from /proc/self/fdinfo.
func gnetEvents(t *testing.T, c *Conn, fd int) uint32 {
	t.Helper()
	ev, err := epollEvents(c.ls.Load().idle.Load().epfd, fd)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// sockPair is an echo pair of one loop per engine; got receives the
// client's frames.
func sockPair(t *testing.T, srvFrame func(*Conn, []byte)) (*pair, chan string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the socket wait needs the netpoller wait (Linux: epoll, eventfd, /proc)")
	}
	got := make(chan string, 64)
	p := newPair(t, srvFrame, func(_ *Conn, f []byte) { got <- string(f) }, WithLoops(1))
	if p.cliConn.ls.Load().idle.Load() == nil {
		t.Skip("this loop found no gnet epoll to wait on (/proc?)")
	}
	return p, got
}

func echoFrame(c *Conn, f []byte) { _ = c.EnqueueNoWait(frame(nil, f)) }

// roundTrip sends m on c and waits for its echo on got.
func roundTrip(t *testing.T, c *Conn, got <-chan string, m string) {
	t.Helper()
	if err := c.Enqueue(context.Background(), frame(nil, []byte(m))); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-got:
		if f != m {
			t.Fatalf("got %q, want %q", f, m)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%q did not come back", m)
	}
}

// untilSocketWait round-trips on c until c's loop waits on c's socket.
func untilSocketWait(t *testing.T, c *Conn, got <-chan string) {
	t.Helper()
	eventually(t, 10*time.Second, "the loop waiting on its conn's socket", func() bool {
		if sockWaiting(c) {
			return true
		}
		roundTrip(t, c, got, "probe")
		time.Sleep(time.Millisecond)
		return false
	})
}

// A loop with one conn waits on the conn's socket with the socket's input
// off in gnet's epoll instance (the instance would otherwise wake the
// netpoller through a second level of epoll), reads and handles what
// comes there, and turns the input back on when it goes back to gnet.
func TestALoopWithOneConnWaitsOnItsSocketWithGnetsInputOff(t *testing.T) {
	p, got := sockPair(t, echoFrame)
	fd := loopFD(t, p.cliConn)
	untilSocketWait(t, p.cliConn, got)
	if ev := gnetEvents(t, p.cliConn, fd); ev&unix.EPOLLIN != 0 {
		t.Fatalf("gnet's instance watches input (events %#x) while the loop waits on the socket", ev)
	}
	for i := range 200 {
		roundTrip(t, p.cliConn, got, "m"+strconv.Itoa(i))
	}
	untilSocketWait(t, p.cliConn, got)
	// Back in gnet (a task runs there), the input is gnet's again.
	ev := make(chan uint32, 1)
	p.cliConn.Execute(func() { ev <- gnetEvents(t, p.cliConn, fd) })
	if e := <-ev; e&unix.EPOLLIN == 0 {
		t.Fatalf("gnet's instance does not watch input (events %#x) while gnet runs", e)
	}
	if n := p.cliConn.inlineFailed.Load(); n != 0 {
		t.Fatalf("%d rule breaks (inlineFailed)", n)
	}
}

// A read that takes all the socket holds (less than the read buffer)
// parks the socket wait without reading again: what comes next notifies
// the wait, which did not begin again. So a round trip costs the waiting
// loop one read, not two (the second finding nothing), beyond the first
// read of each wait begun. The bound leaves room for the reads after a
// poke (a kick), which begin the netpoller wait again.
func TestTheSocketWaitParksAfterAReadThatDrainedTheSocket(t *testing.T) {
	p, got := sockPair(t, echoFrame)
	untilSocketWait(t, p.cliConn, got)
	w := p.cliConn.ls.Load().idle.Load()
	const rounds = 200
	waits, reads := w.sockWaits.Load(), w.sockReads.Load()
	for i := range rounds {
		roundTrip(t, p.cliConn, got, "m"+strconv.Itoa(i))
	}
	waits, reads = w.sockWaits.Load()-waits, w.sockReads.Load()-reads
	if reads > waits+rounds*9/5 {
		t.Fatalf("%d reads in %d socket waits for %d round trips; want about one a round trip and one a wait", reads, waits, rounds)
	}
	if n := p.cliConn.inlineFailed.Load(); n != 0 {
		t.Fatalf("%d rule breaks (inlineFailed)", n)
	}
}

// A task queued while the loop waits on its socket runs (the kick pokes
// the socket wait), and so does a timer (a task too).
func TestTheSocketWaitEndsForATaskAndATimer(t *testing.T) {
	p, got := sockPair(t, echoFrame)
	untilSocketWait(t, p.cliConn, got)
	ran := make(chan struct{})
	p.cliConn.Execute(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a task queued while the loop waited on its socket did not run")
	}
	untilSocketWait(t, p.cliConn, got)
	fired := make(chan struct{})
	p.cliConn.AfterFunc(time.Millisecond, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("a timer did not fire while the loop waited on its socket")
	}
	roundTrip(t, p.cliConn, got, "after")
}

// Output the socket does not take, written by the loop from input it read
// in its socket wait, needs gnet's writability: the wait gives the conn
// back to gnet, which sends the rest once the peer reads again; every
// byte arrives.
func TestAWriteTheSocketDoesNotTakeGoesOnThroughGnet(t *testing.T) {
	saved := dupIdle
	dupIdle = time.Hour // its idle check's task would end the wait and hide a lost recall
	t.Cleanup(func() { dupIdle = saved })
	var stalled atomic.Bool
	var recvd atomic.Int64
	srvFrame := func(c *Conn, f []byte) {
		switch {
		case string(f) == "stall":
			_ = c.EnqueueNoWait(frame(nil, []byte("burst")))
			if stalled.CompareAndSwap(false, true) {
				time.Sleep(300 * time.Millisecond) // the server's loop reads nothing meanwhile
			}
		case len(f) > 0 && f[0] == 'b':
			recvd.Add(int64(len(f)))
		default:
			echoFrame(c, f)
		}
	}
	if runtime.GOOS != "linux" {
		t.Skip("the socket wait needs the netpoller wait (Linux: epoll, eventfd, /proc)")
	}
	got := make(chan string, 64)
	var sent atomic.Int64
	burst := bytes.Repeat([]byte{'b'}, 256<<10)
	p := newPair(t, srvFrame, func(c *Conn, f []byte) {
		if string(f) != "burst" {
			got <- string(f)
			return
		}
		for range 32 { // 8 MiB, more than both kernels' buffers hold while the server reads nothing
			if c.EnqueueNoWait(frame(nil, burst)) != nil {
				break
			}
			sent.Add(int64(len(burst)))
		}
		got <- "burst"
	}, WithLoops(1), WithWaterMarks(32<<20, 16<<20))
	if p.cliConn.ls.Load().idle.Load() == nil {
		t.Skip("this loop found no gnet epoll to wait on (/proc?)")
	}
	untilSocketWait(t, p.cliConn, got)
	if err := p.cliConn.Enqueue(context.Background(), frame(nil, []byte("stall"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(inlineBound):
		t.Fatal("the burst was not asked for")
	}
	if sent.Load() == 0 {
		t.Fatal("the loop queued nothing")
	}
	eventually(t, 2*inlineBound, "every byte of the burst at the server", func() bool {
		return recvd.Load() == sent.Load()
	})
	roundTrip(t, p.cliConn, got, "after")
	if n := p.cliConn.inlineFailed.Load(); n != 0 {
		t.Fatalf("%d rule breaks (inlineFailed)", n)
	}
}

// A second conn enrolled on the loop while it waits on the first's socket
// is served (the enrolment pokes the wait), and the loop then waits on
// gnet's instance, for both; once the second closes, the loop waits on
// the first's socket again.
func TestASecondConnOnTheLoopEndsTheSocketWait(t *testing.T) {
	p, got := sockPair(t, echoFrame)
	untilSocketWait(t, p.cliConn, got)
	got2 := make(chan string, 64)
	c2, h2 := secondConn(t, p, echoFrame, func(_ *Conn, f []byte) { got2 <- string(f) })
	if c2.ls.Load() != p.cliConn.ls.Load() {
		t.Fatal("the second conn is on another loop")
	}
	for i := range 50 {
		roundTrip(t, c2, got2, "two"+strconv.Itoa(i))
		roundTrip(t, p.cliConn, got, "one"+strconv.Itoa(i))
		if sockWaiting(p.cliConn) || sockWaiting(c2) {
			t.Fatal("a loop with two conns waits on one conn's socket")
		}
	}
	_ = c2.Close(nil)
	waitClosed(t, h2, "the second conn did not close")
	untilSocketWait(t, p.cliConn, got)
}

// The peer's close (its close_notify, which the socket wait reads and
// closes the conn on) ends the conn; so does a close asked from another
// goroutine. A peer's end without close_notify: the test after this one.
func TestTheSocketWaitEndsForAPeerCloseAndACloseAsked(t *testing.T) {
	p, got := sockPair(t, echoFrame)
	untilSocketWait(t, p.cliConn, got)
	_ = p.srvConn.Close(nil)
	waitClosed(t, p.cliHandl, "the peer's close did not end the conn")
	q, got2 := sockPair(t, echoFrame)
	untilSocketWait(t, q.cliConn, got2)
	_ = q.cliConn.Close(nil)
	waitClosed(t, q.cliHandl, "a close asked while the loop waited on the socket did not end the conn")
}

// A peer that ends the connection without close_notify (a FIN: its
// process died) ends the conn while the loop waits on the socket, and a
// reset is reported as one, not as a clean end of input: the loop's read
// takes the socket's pending error, which gnet's own read then never sees.
func TestTheSocketWaitEndsForAPeersFINAndReportsAReset(t *testing.T) {
	saved := dupIdle
	dupIdle = time.Hour // no idle check's task may end the wait for it
	t.Cleanup(func() { dupIdle = saved })
	for _, tc := range []struct {
		name  string
		end   func(fd int)
		reset bool
	}{
		{"FIN", func(fd int) { _ = unix.Shutdown(fd, unix.SHUT_RDWR) }, false},
		{"reset", func(fd int) {
			_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, got := sockPair(t, echoFrame)
			untilSocketWait(t, p.cliConn, got)
			p.srvConn.Execute(func() {
				tc.end(p.srvConn.gc.Fd())
				if tc.reset {
					p.srvConn.closeGnet() // close(2) with a zero linger sends a reset
				}
			})
			waitClosed(t, p.cliHandl, "the peer's end did not end the conn")
			_, _, reason := p.cliHandl.count()
			if !errors.Is(reason, ErrPeerClosed) {
				t.Fatalf("close reason %v, want ErrPeerClosed", reason)
			}
			if tc.reset && !errors.Is(reason, unix.ECONNRESET) {
				t.Fatalf("close reason %v, want the reset (ECONNRESET)", reason)
			}
		})
	}
}

// Engine.Close returns while its loop waits on a conn's socket.
func TestEngineCloseEndsTheSocketWait(t *testing.T) {
	p, got := sockPair(t, echoFrame)
	untilSocketWait(t, p.cliConn, got)
	done := make(chan error, 1)
	go func() { done <- p.client.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Engine.Close did not return")
	}
	select {
	case <-p.cliHandl.closedC:
	default:
		t.Fatal("Engine.Close returned before the conn's OnClose")
	}
}

// A process that reads the conn inline takes the read duty over from the
// loop's socket wait (its input is its own then, not the loop's), and once
// it gave the duty back the loop waits on the socket again.
func TestAProcessTakesTheDutyOverFromTheSocketWait(t *testing.T) {
	ip := newInlinePair(t, newInlineServer(0), 1)
	p := ip.proc(0, false)
	ran := make(chan struct{})
	ip.cliConn.Execute(func() { close(ran) }) // the loop's wait after a task: its conn's socket
	<-ran
	eventually(t, 10*time.Second, "the loop waiting on its conn's socket", func() bool { return sockWaiting(ip.cliConn) })
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	const rounds = 100
	for i := range rounds {
		p.echoRound(t, ctx, i)
	}
	if p.r.took.Load() == 0 {
		t.Fatalf("no wait of %d rounds took the read duty (%d tries)", rounds, p.r.tries.Load())
	}
	if ip.cliConn.ls.Load().idle.Load().takenOver.Load() == 0 {
		t.Fatal("no holder took the duty over from the loop's socket wait")
	}
	ip.checkRules(t)
	eventually(t, 10*time.Second, "the loop waiting on its conn's socket again", func() bool {
		if sockWaiting(ip.cliConn) {
			return true
		}
		ip.cliConn.Execute(func() {})
		time.Sleep(time.Millisecond)
		return false
	})
}

// After a holder took the duty over from the socket wait, the loop keeps
// off that conn's socket for sockHoldOff: it waits on gnet's instance,
// so that a conn its processes read inline does not pay a takeover (a
// poke, a wake of the loop) at every input the loop would otherwise wait
// for. The hold-off is an hour here, so the machine's speed cannot end it.
func TestAfterATakeoverTheLoopKeepsOffTheSocket(t *testing.T) {
	saved := sockHoldOff
	sockHoldOff = time.Hour
	t.Cleanup(func() { sockHoldOff = saved })
	ip := newInlinePair(t, newInlineServer(0), 1)
	p := ip.proc(0, false)
	ran := make(chan struct{})
	ip.cliConn.Execute(func() { close(ran) })
	<-ran
	eventually(t, 10*time.Second, "the loop waiting on its conn's socket", func() bool { return sockWaiting(ip.cliConn) })
	w := ip.cliConn.ls.Load().idle.Load()
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	for i := 0; w.takenOver.Load() == 0; i++ {
		if i == 1000 {
			t.Fatalf("no holder took the duty over in %d rounds", i)
		}
		p.echoRound(t, ctx, i)
	}
	// The loop wakes for a task and then waits again: not on the socket.
	// The second task runs only after the loop chose where to wait after
	// the first (a socket wait would have been poked for it).
	before := w.sockWaits.Load()
	for range 2 {
		done := make(chan struct{})
		ip.cliConn.Execute(func() { close(done) })
		<-done
	}
	if n := w.sockWaits.Load() - before; n != 0 {
		t.Fatalf("the loop waited on the conn's socket %d times within the hold-off", n)
	}
	ip.checkRules(t)
}

// A poke stores its flag and then its deadline. A socket wait that takes
// the flag and clears the deadline between the two must not keep the past
// deadline the poke sets after it: every Read would then fail without
// reading, and the conn's input would wait for the next task. The test
// holds a kick's poke between its two stores (testHookPoke) while input
// wakes the wait, which goes back to gnet for the kick's task, runs it,
// and waits on the socket again, taking the flag and clearing the
// deadline on its way; then the poke sets its deadline, and a frame must
// still arrive.
func TestAPokesDeadlineAfterTheWaitTookItsFlagLeavesItListening(t *testing.T) {
	p, got := sockPair(t, echoFrame)
	untilSocketWait(t, p.cliConn, got)
	ran := make(chan struct{})
	var armed atomic.Bool
	armed.Store(true)
	var inWindow atomic.Bool
	hook := func(s *loopSock) {
		if s.c != p.cliConn || !armed.CompareAndSwap(true, false) {
			return
		}
		inWindow.Store(true)
		// No t.Fatal here: the hook runs inside Execute (Engine.execute
		// counts it in flight, and the engine's Close waits for that).
		_ = p.srvConn.EnqueueNoWait(frame(nil, []byte("wake")))
		end := time.Now().Add(inlineBound)
		for {
			select {
			case <-ran:
				if !s.poked.Load() && sockWaiting(p.cliConn) {
					return // the wait took the flag, cleared the deadline, and waits again
				}
			default:
			}
			if time.Now().After(end) {
				t.Errorf("the loop did not run the task and wait on its socket again (poked %v, socket wait %v)",
					s.poked.Load(), sockWaiting(p.cliConn))
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	testHookPoke.Store(&hook)
	t.Cleanup(func() { testHookPoke.Store(nil) })
	p.cliConn.Execute(func() { close(ran) }) // its kick pokes the socket wait
	if !inWindow.Load() {
		t.Fatal("the kick did not poke the socket wait")
	}
	if t.Failed() {
		t.FailNow()
	}
	testHookPoke.Store(nil)
	_ = p.srvConn.EnqueueNoWait(frame(nil, []byte("probe")))
	bound := time.After(inlineBound)
	for f := ""; f != "probe"; {
		select {
		case f = <-got:
		case <-bound:
			t.Fatalf("input after the poke never came: the socket wait kept the past deadline (socket wait %v, duty %d)",
				sockWaiting(p.cliConn), p.cliConn.duty.Load())
		}
	}
}

// Kicks racing the socket wait never leave it deaf: a poke stores its
// flag and then its deadline, and a wait that takes the flag and clears
// the deadline between the two must not keep the past deadline (every
// Read would then fail without reading, and input would wait for the next
// task). Tasks hammer the loop while a stream comes in; then, quiet, one
// frame must still arrive. A stress, not a guard of one interleaving:
// TestAPokesDeadlineAfterTheWaitTookItsFlagLeavesItListening drives the
// one above every run; this looks for others.
//
// The stream is sent with Enqueue, which waits for room at the high-water
// mark. It was sent with EnqueueNoWait, which never waits: with the
// sender spinning on the server's P (GOMAXPROCS=1 beside a burner failed
// 2 runs of 3, at 100 to 200 runs each) its loop, starved, fell behind by
// the hard limit (four times the high-water mark, 8 MiB), and the server
// cut the conn as a slow consumer, as EnqueueNoWait's contract says
// (TestEnqueueNoWaitCutsTheConnPastTheHardLimit); the probe was then
// "lost" with both conns closed, which read as a deaf loop (the client's
// loop, without its conn, was not in a socket wait, duty 0). Every send
// is checked, so a close fails the round as itself.
func TestKicksRacingTheSocketWaitNeverLeaveItDeaf(t *testing.T) {
	p, got := sockPair(t, echoFrame)
	cliFD, srvFD := loopFD(t, p.cliConn), loopFD(t, p.srvConn)
	untilSocketWait(t, p.cliConn, got)
	for round := range 50 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var sendErr atomic.Pointer[error]
		wg.Add(2)
		go repeatUntil(stop, &wg, func() { // the stream
			if err := p.srvConn.Enqueue(context.Background(), frame(nil, []byte("s"))); err != nil {
				sendErr.CompareAndSwap(nil, &err)
			}
		})
		go repeatUntil(stop, &wg, func() { p.cliConn.Execute(func() {}) }) // the kicks
		drain(got, 30*time.Millisecond)
		close(stop)
		wg.Wait()
		if err := sendErr.Load(); err != nil {
			t.Fatalf("round %d: the stream's Enqueue failed: %v\n  client: %s; %s\n  server: %s; %s", round, *err,
				sideState(p.cliConn, cliFD), handlerState(p.cliHandl), sideState(p.srvConn, srvFD), handlerState(p.srvHandler))
		}
		drain(got, 20*time.Millisecond)
		want := "probe" + strconv.Itoa(round)
		if err := p.srvConn.EnqueueNoWait(frame(nil, []byte(want))); err != nil {
			t.Fatalf("round %d: the probe's EnqueueNoWait failed: %v", round, err)
		}
		bound := time.After(inlineBound)
		for f := ""; f != want; {
			select {
			case f = <-got:
			case <-bound:
				probeLost(t, p, got, want, cliFD, srvFD, "round "+strconv.Itoa(round)+": the probe never came")
			}
		}
	}
}

// probeLost fails a test whose frame want, sent by p's server, did not
// reach the client: it says where the frame is (both sides' state, and
// the sockets' queues), then runs a task on each loop in turn and says
// whether the frame came after it, which tells a lost wake-up (it came)
// from a frame gone for good.
func probeLost(t *testing.T, p *pair, got <-chan string, want string, cliFD, srvFD int, what string) {
	t.Helper()
	msg := what + "\n  client: " + sideState(p.cliConn, cliFD) + "; " + handlerState(p.cliHandl) +
		"\n  server: " + sideState(p.srvConn, srvFD) + "; " + handlerState(p.srvHandler)
	for _, side := range []struct {
		name string
		c    *Conn
	}{{"server", p.srvConn}, {"client", p.cliConn}} {
		if side.c.reached(socketClosed) {
			msg += "\n  the " + side.name + "'s conn is closed: no task of it runs"
			continue
		}
		ran := make(chan string, 1)
		side.c.Execute(func() {
			ran <- fmt.Sprintf("spill %d recheck %v gnet outbound %d", len(side.c.spill), side.c.recheck, side.c.gc.OutboundBuffered())
		})
		select {
		case s := <-ran:
			msg += "\n  a task on the " + side.name + "'s loop ran (" + s + ")"
		case <-time.After(5 * time.Second):
			msg += "\n  a task on the " + side.name + "'s loop did not run in 5 s"
		}
		end := time.After(time.Second)
	wait:
		for {
			select {
			case f := <-got:
				if f == want {
					t.Fatal(msg + "; then the frame came")
				}
			case <-end:
				break wait
			}
		}
	}
	t.Fatal(msg + "; the frame never came")
}

// drain takes what comes on got for d.
func drain(got <-chan string, d time.Duration) {
	end := time.After(d)
	for {
		select {
		case <-got:
		case <-end:
			return
		}
	}
}

// sideState describes one conn of a pair whose input or output is stuck,
// from any goroutine (atomics and loopState.mu only), so that a failure
// says which side held the frame: its send side (queued bytes, the drain
// token, direct writes), its loop (busy, the ready list, our tasks owed,
// the idle wait and the socket wait), its read duty, gnet's events on its
// socket (fd, as the loop gave it) and the socket's own queues (bytes
// unread, and bytes not yet sent or acknowledged).
func sideState(c *Conn, fd int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "close %d queued %d/%d scheduled %v openOwed %v direct %v bulkWait %v nDirect %d sockWaitsArmed %d duty %#x",
		c.closeState.Load(), c.queued.Load(), c.bulkQueued.Load(), c.scheduled.Load(), c.openOwed.Load(),
		c.direct.Load(), c.bulkWait.Load(), c.nDirect.Load(), c.nSocketWait.Load(), c.duty.Load())
	if ls := c.ls.Load(); ls != nil {
		ls.mu.Lock()
		ready, pending := len(ls.ready), ls.pending
		ls.mu.Unlock()
		fmt.Fprintf(&b, "; loop busy %v ready %d pending %v owed %d", ls.busy.Load(), ready, pending, ls.owed.Load())
		if w := ls.idle.Load(); w != nil {
			s := w.sock.Load()
			fmt.Fprintf(&b, " waiting %v lend %v parkedIn %v anyConn %v sockWait %v", w.waiting.Load(), w.lend.Load(),
				w.parkedIn.Load() == c, w.anyConn.Load(), s != nil)
			if s != nil {
				fmt.Fprintf(&b, " poked %v", s.poked.Load())
			}
			fmt.Fprintf(&b, " (begun %d, reads %d)", w.sockWaits.Load(), w.sockReads.Load())
			if ev, err := epollEvents(w.epfd, fd); err == nil {
				fmt.Fprintf(&b, " gnetEvents %#x", ev)
			}
		}
	}
	if n, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err == nil {
		fmt.Fprintf(&b, "; socket unread %d", n)
	}
	if n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ); err == nil {
		fmt.Fprintf(&b, " unacked %d", n)
	}
	return b.String()
}

// handlerState describes what h was given: frames, closes and the first
// close's reason.
func handlerState(h *frameHandler) string {
	frames, closes, reason := h.count()
	return fmt.Sprintf("handler frames %d closes %d reason %v", frames, closes, reason)
}

// epollEvents returns the events the epoll instance ep watches on fd, from
// /proc/self/fdinfo.
func epollEvents(ep, fd int) (uint32, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(ep))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 4 && f[0] == "tfd:" && f[1] == strconv.Itoa(fd) && f[2] == "events:" {
			ev, err := strconv.ParseUint(f[3], 16, 32)
			return uint32(ev), err
		}
	}
	return 0, fmt.Errorf("descriptor %d is not in epoll instance %d", fd, ep)
}
