package node

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/mailbox"
)

// Tests of the idle starters that read their peer's link (spawn_start.go,
// readLink). Their nodes tick once an hour: a tick read by a starter would
// end a wait that only a kick should end, and hide a missing kick.

// starterEv is one event of a starter (testHookStarter).
type starterEv struct {
	s  *starter
	ev int
}

// starterLog records the starters' events while a test runs.
type starterLog struct {
	mu   sync.Mutex
	evs  []starterEv // guarded by mu
	next int         // guarded by mu: the first event await has not passed
	more chan struct{}
	// on, when set, runs at each event on the starter's goroutine, before
	// the event is recorded.
	on atomic.Pointer[func(starterEv)]
}

// logStarters records every starter event until the test ends.
func logStarters(t *testing.T) *starterLog {
	l := &starterLog{more: make(chan struct{}, 1)}
	h := func(s *starter, ev int) {
		e := starterEv{s, ev}
		if f := l.on.Load(); f != nil {
			(*f)(e)
		}
		l.mu.Lock()
		l.evs = append(l.evs, e)
		l.mu.Unlock()
		select {
		case l.more <- struct{}{}:
		default:
		}
	}
	testHookStarter.Store(&h)
	t.Cleanup(func() { testHookStarter.Store(nil) })
	return l
}

// await returns the first event past the last one await returned that
// matches, and the events it passed over on the way.
func (l *starterLog) await(t *testing.T, what string, match func(starterEv) bool) (starterEv, []starterEv) {
	t.Helper()
	guard := time.NewTimer(testWait) // a hang guard
	defer guard.Stop()
	var passed []starterEv
	for {
		l.mu.Lock()
		for i := l.next; i < len(l.evs); i++ {
			if match(l.evs[i]) {
				l.next = i + 1
				ev := l.evs[i]
				l.mu.Unlock()
				return ev, passed
			}
			passed = append(passed, l.evs[i])
		}
		l.next = len(l.evs)
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-guard.C:
			t.Fatalf("no %s", what)
		}
	}
}

// onceAt makes do run, on the starter's goroutine, at the first event
// from now on that matches (only there: do must not call t.Fatal), and
// returns a report of whether it ran.
func (l *starterLog) onceAt(match func(starterEv) bool, do func()) (ran func() bool) {
	var armed atomic.Bool
	armed.Store(true)
	on := func(e starterEv) {
		if match(e) && armed.CompareAndSwap(true, false) {
			do()
		}
	}
	l.on.Store(&on)
	return func() bool { return !armed.Load() }
}

func isEv(ev int) func(starterEv) bool { return func(e starterEv) bool { return e.ev == ev } }

func isEvOf(s *starter, ev int) func(starterEv) bool {
	return func(e starterEv) bool { return e.s == s && e.ev == ev }
}

// quietPair starts a and b ticking once an hour, b's starters idle for
// an hour, and connects them.
func quietPair(t *testing.T) (a, b *Node) {
	a = startNamed(t, "a", "c", WithTickTimeout(time.Hour))
	b = startNamed(t, "b", "c", WithTickTimeout(time.Hour))
	setStarterIdle(b, time.Hour)
	connect(t, a, b)
	return a, b
}

// spawnFrom spawns actor on b from a process of a.
func spawnFrom(t *testing.T, a, b *Node, actor string, args ...any) PID {
	t.Helper()
	var pid PID
	within(t, a, func(p *Process) error {
		var err error
		pid, err = p.Spawn(b.Self(), actor, args...)
		return err
	})
	return pid
}

// spawnTakenBy spawns actor on b from a and fails the test unless s, the
// starter that reads a's link on b, took the process whose request it
// read (takeOwn), and returns its PID.
func spawnTakenBy(t *testing.T, l *starterLog, a, b *Node, s *starter, actor string) PID {
	t.Helper()
	pid := spawnFrom(t, a, b, actor)
	if ev, _ := l.await(t, "the starter taking the process it read", isEv(starterTakes)); ev.s != s {
		t.Fatalf("%s: another starter took the process it read", actor)
	}
	return pid
}

// linkOf returns b's peer a and its link.
func linkOf(t *testing.T, b, a *Node) (*peer, *loop.Conn) {
	t.Helper()
	pe := peerOf(b, a)
	if pe == nil {
		t.Fatalf("%s has no peer %s", b.Self(), a.Self())
	}
	lc, ok := pe.conn.(*loop.Conn)
	if !ok {
		t.Fatalf("%s's link to %s is a %T", b.Self(), a.Self(), pe.conn)
	}
	return pe, lc
}

// readingStarter returns the starter that reads a's link on b, once one
// does: a starter's first try may find b's loop still busy with the
// request it handed over, and then it waits on its signal until its next
// process, a noop spawned here. b defines noop.
func readingStarter(t *testing.T, l *starterLog, a, b *Node) *starter {
	t.Helper()
	return readingStarterAfter(t, l, a, b, true)
}

// readingStarterAfter is readingStarter; spawn false when a starter is
// about to try to read anyway (its process just ended).
func readingStarterAfter(t *testing.T, l *starterLog, a, b *Node, spawn bool) *starter {
	t.Helper()
	for range 100 {
		if spawn {
			spawnFrom(t, a, b, "noop")
		}
		ev, _ := l.await(t, "a starter reading its link, or waiting on its signal", func(e starterEv) bool {
			return e.ev == starterReads || e.ev == starterSleeps
		})
		if ev.ev == starterReads {
			return ev.s
		}
		spawn = true
	}
	t.Fatal("no starter read its link in 100 spawns")
	return nil
}

// The spawn requests of the peer an idle starter reads are read, answered
// and run on that starter's goroutine, one after another: no other
// goroutine starts them, whether each runs with the duty home (its last
// process slow) or lingering (quick: rule 4a).
func TestAnIdleStarterRunsItsPeersNextSpawns(t *testing.T) {
	for _, c := range []struct {
		name  string
		quick time.Duration
	}{{"home", time.Nanosecond}, {"lingering", time.Hour}} {
		t.Run(c.name, func(t *testing.T) { testAnIdleStarterRunsItsPeersNextSpawns(t, c.quick) })
	}
}

func testAnIdleStarterRunsItsPeersNextSpawns(t *testing.T, quick time.Duration) {
	a, b := quietPair(t)
	setStarterQuick(b, quick)
	l := logStarters(t)
	mark := make(chan struct{}, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("mark", func(*Process, []any) error { mark <- struct{}{}; return nil })
	s := readingStarter(t, l, a, b)
	for i := range 3 {
		spawnFrom(t, a, b, "mark")
		waitRecv(t, mark, "the spawned process to run")
		if ev, _ := l.await(t, "the starter taking the process it read", isEv(starterTakes)); ev.s != s {
			t.Fatalf("spawn %d: another starter took the process it read", i)
		}
		if r := readingStarterAfter(t, l, a, b, false); r != s {
			t.Fatalf("spawn %d: another starter reads the link", i)
		}
	}
	if k := idleStarters(b); k != 1 {
		t.Fatalf("%d idle starters; want the one", k)
	}
}

// Two starters whose processes came from one peer: one reads the link,
// the other finds it claimed and waits on its signal, and leaves the
// first one's claim in place; a goroutine that then waits for the link's
// input for itself finds that claim and makes the reader yield. (With a
// claim stored rather than swapped in, the second starter's release
// cleared the first one's, and the reader never yielded.)
func TestOneStarterReadsALinkAndASecondLeavesItsClaim(t *testing.T) {
	a, b := quietPair(t)
	l := logStarters(t)
	release1, release2 := make(chan struct{}), make(chan struct{})
	var running sync.WaitGroup
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("hold1", func(*Process, []any) error { running.Done(); <-release1; return nil })
	b.Define("hold2", func(*Process, []any) error { running.Done(); <-release2; return nil })
	running.Add(2)
	spawnFrom(t, a, b, "hold1")
	spawnFrom(t, a, b, "hold2")
	running.Wait() // each on a goroutine of its own: none was idle
	close(release1)
	s1 := readingStarterAfter(t, l, a, b, false) // the second still runs its process
	close(release2)
	l.await(t, "the second starter waiting on its signal", func(e starterEv) bool { return e.s != s1 && e.ev == starterSleeps })
	pe, lc := linkOf(t, b, a)
	if got := pe.starterReads.Load(); got != s1 {
		t.Fatalf("the link's claim is %p after the second starter's try; want the reader's, %p", got, s1)
	}
	pe.ownWait(lc)
	defer pe.ownWaitEnd()
	l.await(t, "the reader yielding the link", isEvOf(s1, starterSleeps))
	if got := pe.starterReads.Load(); got != nil {
		t.Fatalf("the link is still claimed (%p) after its reader yielded", got)
	}
}

// A goroutine that begins to wait for a link's input for itself just
// before an idle starter claims the link (so it finds no claim to kick)
// still makes the starter yield, and the starter does not even try to
// read the link: it looks for waiters after its claim, before its first
// read. The hook holds the starter at its claim while the waiter counts
// itself. (Without that look the starter still yields, since its wait's
// first step looks too (InlinePark), but only inside a read, which may
// take the link's duty first: the read begins and ends, starterLeaves.)
func TestAWaiterThatBeginsAsAStarterClaimsTheLinkMakesItYield(t *testing.T) {
	a, b := quietPair(t)
	l := logStarters(t)
	b.Define("noop", func(*Process, []any) error { return nil })
	s := readingStarter(t, l, a, b)
	pe, lc := linkOf(t, b, a)
	waited := l.onceAt(isEvOf(s, starterClaims), func() {
		pe.ownWait(lc) // no claim yet: nothing to kick
	})
	defer func() {
		if waited() {
			pe.ownWaitEnd()
		}
	}()
	spawnFrom(t, a, b, "noop") // s reads it, runs it, and claims the link again
	l.await(t, "the starter claiming its link with the waiter counted", isEvOf(s, starterClaims))
	ev, passed := l.await(t, "the starter reading its link or waiting on its signal", func(e starterEv) bool {
		return e.s == s && (e.ev == starterReads || e.ev == starterSleeps)
	})
	if ev.ev == starterReads {
		t.Fatal("the starter read the link with a waiter counted before its claim")
	}
	for _, e := range passed {
		if e.s == s && e.ev == starterLeaves {
			t.Fatal("the starter tried to read the link with a waiter counted before its claim")
		}
	}
}

// A process that waits for a reply on a link an idle starter reads, and
// a remote spawn's requester, make the starter yield the link (and get
// their replies). The process's reply is held until the starter has
// yielded, and so is the spawn's (its Waiter is woken by the test), so
// that each surely waits: a reply there before the wait began would need
// no wait, and no yield.
func TestAProcessOrASpawnWaitingOnTheLinkMakesItsStarterYield(t *testing.T) {
	a, b := quietPair(t)
	l := logStarters(t)
	b.Define("noop", func(*Process, []any) error { return nil })
	gate := make(chan struct{})
	var gateOnce sync.Once
	open := func() { gateOnce.Do(func() { close(gate) }) }
	t.Cleanup(open) // before the nodes stop, on a failure
	echo := a.SpawnFunc(func(p *Process) error {
		m, err := p.Receive(context.Background())
		if err != nil {
			return nil
		}
		<-gate
		tu := m.(codec.Tuple)
		return p.Send(tu[0].(PID), tu[1])
	})

	s := readingStarter(t, l, a, b)
	done := make(chan error, 1)
	go func() {
		done <- b.Run(context.Background(), func(p *Process) error {
			if err := p.Send(echo, codec.Tuple{p.Self(), "ping"}); err != nil {
				return err
			}
			_, err := recv(p)
			return err
		})
	}()
	l.await(t, "the starter yielding to a process waiting for a reply", isEvOf(s, starterSleeps))
	open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	s = readingStarter(t, l, a, b)
	pe, _ := linkOf(t, b, a)
	var w mailbox.Waiter
	w.Arm()
	woke := make(chan bool, 1)
	go func() { dl := monoDeadline(monoNanos() + int64(testWait)); woke <- waitReply(pe, &w, dl.Time(), dl) }()
	var wakeOnce sync.Once
	wake := func() { wakeOnce.Do(w.Wake) }
	defer func() {
		wake() // on a failure too: the wait ends
		if !<-woke {
			t.Error("the spawn's wait did not see its wake")
		}
		w.Disarm()
	}()
	l.await(t, "the starter yielding to a spawn waiting for its reply", isEvOf(s, starterSleeps))
}

// A waiter whose kick ended its starter's read, but whose own wait was
// over (ownWaitEnd: its inline try failed and it parked) before the
// starter looked, still makes the starter yield: here the starter is held
// at its unpark, after the kick and before its look, until the waiter's
// count is gone. (With the count as the only sign the starter saw none,
// took the kick for a stray one, and read on: the waiter's reply was read
// by the starter rather than the loop, and the waiter's next inline tries
// failed while the starter held the link.)
func TestAWaiterGoneBeforeItsStarterLooksStillMakesItYield(t *testing.T) {
	a, b := quietPair(t)
	l := logStarters(t)
	b.Define("noop", func(*Process, []any) error { return nil })
	s := readingStarter(t, l, a, b)
	pe, lc := linkOf(t, b, a)
	unparked := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	on := func(e starterEv) { // on s's goroutine
		if e.s == s && e.ev == starterUnparks {
			once.Do(func() {
				close(unparked)
				select {
				case <-release:
				case <-time.After(testWait): // a hang guard; the test fails below
				}
			})
		}
	}
	var relOnce sync.Once
	free := func() { relOnce.Do(func() { close(release) }) }
	defer free() // on a failure too: the starter goes on
	l.on.Store(&on)
	pe.ownWait(lc) // s holds the claim: this kicks its read
	select {
	case <-unparked:
	case <-time.After(testWait):
		t.Fatal("the waiter's kick did not end the starter's read")
	}
	pe.ownWaitEnd()
	free()
	l.await(t, "the starter yielding to a waiter gone before it looked", isEvOf(s, starterSleeps))
}

// A wake that comes after its starter left the link it read (here: the
// hand-off is held, after it took the starter from the pool, until the
// starter has yielded the link to a waiter and waits on its signal) writes
// the starter's signal: it looks where the starter waits only after the
// job is stored, by a swap. (A wake that looked before the hook kicked the
// link the starter had left, and the starter never woke.)
func TestAWakeAfterItsStarterLeftTheLinkWritesTheSignal(t *testing.T) {
	a, b := quietPair(t)
	c := startNamed(t, "c", "c", WithTickTimeout(time.Hour))
	connect(t, c, b)
	l := logStarters(t)
	mark := make(chan struct{}, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("mark", func(*Process, []any) error { mark <- struct{}{}; return nil })
	s := readingStarter(t, l, a, b)
	pe, lc := linkOf(t, b, a)
	yielded := make(chan struct{})
	hand := func() { // on c's link's loop: no t.Fatal here
		pe.ownWait(lc) // s yields the link and waits on its signal
		select {
		case <-yielded:
		case <-time.After(testWait): // a hang guard; the test fails below
		}
		pe.ownWaitEnd()
	}
	on := func(e starterEv) {
		if e.s == s && e.ev == starterSleeps {
			select {
			case <-yielded:
			default:
				close(yielded)
			}
		}
	}
	l.on.Store(&on)
	testHookHand.Store(&hand)
	t.Cleanup(func() { testHookHand.Store(nil) })
	// Read by c's link's loop and handed to s, the only idle starter; it
	// runs after the hand-off, which is after the hook.
	spawnFrom(t, c, b, "mark")
	waitRecv(t, mark, "the process handed to the starter to run")
	select {
	case <-yielded:
	default:
		t.Fatal("the starter did not yield its link while the hand-off was held")
	}
}

// A spawn from another peer reaches an idle starter that reads a link: the
// hand-off kicks its read.
func TestASpawnFromAnotherPeerReachesAStarterReadingALink(t *testing.T) {
	a, b := quietPair(t)
	c := startNamed(t, "c", "c", WithTickTimeout(time.Hour))
	connect(t, c, b)
	l := logStarters(t)
	mark := make(chan struct{}, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("mark", func(*Process, []any) error { mark <- struct{}{}; return nil })
	s := readingStarter(t, l, a, b)
	before := starterGoroutines()
	spawnFrom(t, c, b, "mark")
	waitRecv(t, mark, "the process spawned from another peer to run")
	// s ran it, then read c's link, the one its last process came from.
	readingStarterAfter(t, l, c, b, false)
	if k := starterGoroutines(); k != before {
		t.Fatalf("%d starter goroutines after the spawn; want %d (the one that read a's link)", k, before)
	}
	if s.from.p.Load() != peerOf(b, c) {
		t.Fatal("the starter did not take the process from the other peer")
	}
}

// setStarterQuick sets how short n's starters' processes must run for
// the next one a starter reads to run with its link's duty lingering.
func setStarterQuick(n *Node, d time.Duration) {
	n.starters.quickFor.Store(int64(d))
}

// A starter whose last process returned at once leaves the duty of the
// link it read lingering while the next process it read runs (rule 4),
// and takes it again when that process returns, with no grant from the
// loop: no epoll_ctl at either end. Here every process counts as quick
// (a run under the race detector may not), and the linger timer may
// reclaim the duty of a spawn that a loaded machine stretches past its
// period (then the next read takes the duty by a grant): so the test
// looks for one spawn in ten that shows both, and fails if none does
// (each one does when the starter gives the duty home, as before).
func TestAStarterLeavesItsLinkLingeringWhileAQuickProcessRuns(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Hour)
	l := logStarters(t)
	lingering := make(chan int64, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("check", func(*Process, []any) error {
		lingering <- b.engine.Stats().LingeringNow
		return nil
	})
	s := readingStarter(t, l, a, b)
	_, lc := linkOf(t, b, a)
	for i := range 10 {
		grants := lc.InlineGrants()
		spawnTakenBy(t, l, a, b, s, "check")
		n := <-lingering
		if r := readingStarterAfter(t, l, a, b, false); r != s {
			t.Fatalf("spawn %d: another starter reads the link", i)
		}
		if n == 1 && lc.InlineGrants() == grants {
			return
		}
	}
	t.Fatal("in ten spawns the duty never lingered while the process ran, or the starter took it again by a grant")
}

// A second starter from the same peer, which finds the link claimed and
// waits on its signal, counts as parked for as long as it waits, though
// another starter reads its link: that one may stop reading it. Here the
// reader runs hold3 (its last process, hold1, ran long: the duty home),
// which spawns back on a and reads its reply inline; that read's
// hand-back must send the duty home, or the link is read by nobody while
// hold3 blocks, and a's next spawn waits for the linger timer. (With the
// second starter uncounted, "covered" by the reader, the duty lingered
// there, and the next spawn took 10-20 ms.)
func TestASecondStarterOnItsSignalCountsAsParkedThoughItsLinkIsRead(t *testing.T) {
	a, b := quietPair(t)
	l := logStarters(t)
	release1, release2, release3 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	defer close(release3) // on a failure too
	var running sync.WaitGroup
	type obs struct{ parked, lingering int64 }
	seen := make(chan obs, 1)
	mark := make(chan struct{}, 1)
	a.Define("noop", func(*Process, []any) error { return nil })
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("mark", func(*Process, []any) error { mark <- struct{}{}; return nil })
	b.Define("hold1", func(*Process, []any) error { running.Done(); <-release1; return nil })
	b.Define("hold2", func(*Process, []any) error { running.Done(); <-release2; return nil })
	b.Define("hold3", func(p *Process, _ []any) error {
		if _, err := p.Spawn(a.Self(), "noop"); err != nil { // its reply read inline, then handed back
			seen <- obs{-1, -1}
			return err
		}
		st := b.engine.Stats()
		seen <- obs{st.ParkedNow, st.LingeringNow}
		<-release3 // blocks without a park
		return nil
	})
	running.Add(2)
	spawnFrom(t, a, b, "hold1")
	spawnFrom(t, a, b, "hold2")
	running.Wait() // each on a goroutine of its own: none was idle
	close(release1)
	s1 := readingStarterAfter(t, l, a, b, false) // the second still runs its process
	close(release2)
	l.await(t, "the second starter waiting on its signal", func(e starterEv) bool { return e.s != s1 && e.ev == starterSleeps })
	spawnFrom(t, a, b, "hold3")
	o := <-seen
	if o.parked < 0 {
		t.Fatal("hold3's spawn back on a failed")
	}
	if o.parked != 1 || o.lingering != 0 {
		t.Fatalf("while the reader runs hold3 and the second starter waits: %d parked, %d read duties lingering; want 1 and none", o.parked, o.lingering)
	}
	if k := idleStarters(b); k != 1 {
		t.Fatalf("%d idle starters while hold3 runs; want the second one", k)
	}
	spawnFrom(t, a, b, "mark")
	waitRecv(t, mark, "the spawn while hold3 runs")
}

// A waiter for the link (ownWait) that counts itself after a starter took
// the process whose request it read, with its last process quick (own:
// rule 4a), sends the duty home at the hand-back: done looks for waiters
// before it lets own keep the duty lingering. Here the waiter counts
// itself in takeOwn. (With own looked at first, the duty lingered while
// the process ran, and the waiter's input waited for the linger timer.)
func TestAWaiterThatComesAsItsStarterTakesAQuickProcessSendsTheDutyHome(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Hour)
	l := logStarters(t)
	lingering := make(chan int64, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("check", func(*Process, []any) error {
		lingering <- b.engine.Stats().LingeringNow
		return nil
	})
	s := readingStarter(t, l, a, b)
	pe, lc := linkOf(t, b, a)
	waited := l.onceAt(isEvOf(s, starterTakes), func() { pe.ownWait(lc) })
	defer func() {
		if waited() {
			pe.ownWaitEnd()
		}
	}()
	spawnTakenBy(t, l, a, b, s, "check")
	if n := <-lingering; n != 0 {
		t.Fatalf("%d read duties linger while the process runs with a waiter counted; want none", n)
	}
	if !waited() {
		t.Fatal("the waiter did not count itself as the starter took its process")
	}
}

// A starter whose last process ran long (here: with the duty lingering,
// until the linger timer reclaimed it, at least one lingerPeriod) gives
// the link home to its loop before it runs the next one it reads: nothing
// on b reads the link inline while that one runs. The quick bound is an
// hour until hold runs, so that hold runs with the duty lingering, and a
// millisecond after; a hold that finds the duty already home (a timer's
// tick in between on a loaded machine) is let go and tried again. check
// runs quick before (its actor's history, rule 4a's other condition), so
// that only the starter's own condition sends the duty home after hold;
// and noop, which readingStarterAfter spawns when the starter finds the
// link busy after hold, runs past the millisecond bound, so that it does
// not make the starter's last process a quick one.
func TestAStarterWhoseProcessRanLongGivesItsLinkHome(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Hour)
	l := logStarters(t)
	release := make(chan struct{}, 1)
	lingering := make(chan int64, 1)
	b.Define("noop", func(*Process, []any) error {
		time.Sleep(2 * time.Millisecond) // slow under the millisecond bound
		return nil
	})
	b.Define("hold", func(*Process, []any) error {
		n := b.engine.Stats().LingeringNow
		for n != 0 && b.engine.Stats().LingeringNow != 0 {
			time.Sleep(100 * time.Microsecond) // until the linger timer's reclaim
		}
		lingering <- n
		<-release
		return nil
	})
	b.Define("check", func(*Process, []any) error {
		lingering <- b.engine.Stats().LingeringNow
		return nil
	})
	s := readingStarter(t, l, a, b)
	for range actorQuickRuns {
		ownSpawn(t, l, a, b, s, "check", lingering)
	}
	for i := range 10 {
		spawnTakenBy(t, l, a, b, s, "hold")
		first := <-lingering
		if first == 1 {
			setStarterQuick(b, time.Millisecond) // before hold returns: read by its starter's wait
		}
		release <- struct{}{}
		if r := readingStarterAfter(t, l, a, b, false); r != s {
			t.Fatalf("hold %d: another starter reads the link after it", i)
		}
		if first != 1 {
			continue
		}
		spawnTakenBy(t, l, a, b, s, "check")
		if n := <-lingering; n != 0 {
			t.Fatalf("%d read duties linger while the process read after a long one runs; want none", n)
		}
		return
	}
	t.Fatal("in ten holds none ran with the duty lingering")
}

// A process that runs with its starter's link lingering and does not
// park (here it blocks on a channel, which no park counts) does not
// leave the link deaf for good: the linger timer reclaims the duty, and
// the peer's next spawn is read and run while the process still runs.
// (How soon is not checked: only that it comes, within testWait.) (A hold that finds the duty already
// home, a timer's tick in between on a loaded machine, proves nothing:
// it is let go and tried again.)
func TestAProcessThatDoesNotParkDoesNotLeaveItsStartersLinkDeafForGood(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Hour)
	l := logStarters(t)
	release := make(chan struct{}, 1)
	lingering := make(chan int64, 1)
	mark := make(chan struct{}, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("mark", func(*Process, []any) error { mark <- struct{}{}; return nil })
	b.Define("hold", func(*Process, []any) error {
		lingering <- b.engine.Stats().LingeringNow
		<-release
		return nil
	})
	s := readingStarter(t, l, a, b)
	for i := range 10 {
		spawnTakenBy(t, l, a, b, s, "hold")
		if n := <-lingering; n == 1 {
			spawnFrom(t, a, b, "mark")
			waitRecv(t, mark, "the spawn while hold runs")
			release <- struct{}{}
			return
		}
		release <- struct{}{}
		if r := readingStarterAfter(t, l, a, b, false); r != s {
			t.Fatalf("hold %d: another starter reads the link after it", i)
		}
	}
	t.Fatal("in ten holds none ran with the duty lingering")
}

// A process that runs with its starter's link lingering and then parks
// for a message brings the duty home as it parks (loop.Engine.ParkBegin,
// on the parking goroutine, before the park): after its wait it finds no
// duty lingering. Its message is sent on b, not over the link, whose
// frames a lingering duty would hold until the linger timer reclaimed it;
// it is sent once the park is counted, well within a lingerPeriod, so
// that a park that left the duty lingering is seen (unless the machine
// stalls past the timer). A process that finds the duty already home
// before its park (a timer's tick in between on a loaded machine) proves
// nothing: it is let go and tried again.
func TestAProcessThatParksBringsItsStartersLinkHome(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Hour)
	l := logStarters(t)
	lingering := make(chan int64, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("park", func(p *Process, _ []any) error {
		lingering <- b.engine.Stats().LingeringNow
		if _, err := p.Receive(context.Background()); err != nil {
			return err
		}
		lingering <- b.engine.Stats().LingeringNow
		return nil
	})
	s := readingStarter(t, l, a, b)
	for i := range 10 {
		pid := spawnTakenBy(t, l, a, b, s, "park")
		before := <-lingering
		eventually(t, "the process parked", func() bool { return b.engine.Stats().ParkedNow != 0 })
		within(t, b, func(p *Process) error { return p.Send(pid, "go") })
		after := <-lingering
		if before == 1 {
			if after != 0 {
				t.Fatalf("%d read duties linger after the process parked; want none", after)
			}
			return
		}
		if r := readingStarterAfter(t, l, a, b, false); r != s {
			t.Fatalf("park %d: another starter reads the link after it", i)
		}
	}
	t.Fatal("in ten processes none ran with the duty lingering before its park")
}

// A spawned process that panics, on a starter that read its request, ends
// with its crash; the starter reads the link again (taking back the duty
// the panicking process ran with lingering, once its actor has a quick
// history: the starter's last process and the actor's runs count as
// quick), and the peer's next spawn is answered and run.
func TestAPanickingProcessLeavesItsStarterReadingTheLink(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Hour)
	l := logStarters(t)
	mark := make(chan struct{}, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("boom", func(*Process, []any) error { panic("boom") })
	b.Define("mark", func(*Process, []any) error { mark <- struct{}{}; return nil })
	s := readingStarter(t, l, a, b)
	for range actorQuickRuns + 1 {
		spawnTakenBy(t, l, a, b, s, "boom")
		if r := readingStarterAfter(t, l, a, b, false); r != s {
			t.Fatal("another starter reads the link after the panic")
		}
	}
	spawnFrom(t, a, b, "mark")
	waitRecv(t, mark, "the spawn after the panic to run")
	if ev, _ := l.await(t, "the starter taking the next process", isEv(starterTakes)); ev.s != s {
		t.Fatal("another starter took the next process")
	}
}

// A starter that reads its link ends after its idle time, with one read
// (its read's deadline ends it; it does not read again past the
// deadline), and leaves no read duty lingering. (Without the look at the
// deadline between reads, the retry limit still ended the wait, after
// starterRetries reads.) Its idle time is set before the first starter: a
// starter's deadline moves only when less than half of it is left.
func TestAStarterReadingItsLinkEndsAfterItsIdleTime(t *testing.T) {
	a, b := quietPair(t)
	setStarterIdle(b, 100*time.Millisecond)
	l := logStarters(t)
	b.Define("noop", func(*Process, []any) error { return nil })
	s := readingStarter(t, l, a, b) // starters that end before one reads are replaced
	_, passed := l.await(t, "the starter waiting on its signal after its read", isEvOf(s, starterSleeps))
	for _, e := range passed {
		if e.s == s && e.ev == starterReads {
			t.Fatal("the starter read its link again after its read's deadline")
		}
	}
	eventually(t, "the starter that read ended after its idle time", func() bool {
		b.starters.mu.Lock()
		defer b.starters.mu.Unlock()
		return b.starters.expired >= 1 && len(b.starters.idle) == 0
	})
	if n := b.engine.Stats().LingeringNow; n != 0 {
		t.Fatalf("%d read duties linger after the starter ended", n)
	}
}

// A waiter for the link that counts itself while the starter's read
// returns a spawn request (here: as the starter's wait ends, before it
// looks) makes the starter leave the link twice in one read, once as it
// looks (InlineUnpark) and once as it takes the process the request
// started (takeOwn); the second leave does nothing, and no park stays
// counted after b stops. (With a second ParkBegin there, the engine
// counted one park for good, and no duty lingered again.)
func TestAStarterLeavingItsLinkTwiceInOneReadCountsOnePark(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Nanosecond) // takeOwn leaves the link: its second leave
	l := logStarters(t)
	b.Define("noop", func(*Process, []any) error { return nil })
	s := readingStarter(t, l, a, b)
	pe, lc := linkOf(t, b, a)
	// The first wait s ends after it began reading: the spawn below.
	l.onceAt(isEvOf(s, starterUnparks), func() { pe.ownWait(lc) })
	spawnTakenBy(t, l, a, b, s, "noop")
	l.await(t, "the starter waiting on its signal (the waiter is still counted)", isEvOf(s, starterSleeps))
	pe.ownWaitEnd()
	stopNode(t, b) // ends s, whose own park ends with it
	if n := b.engine.Stats().ParkedNow; n != 0 {
		t.Fatalf("%d parks counted after b stopped; want none", n)
	}
}

// A process handed to a starter (from another peer) just as the
// starter's read of its link ends with the duty left lingering (here: at
// the starter's deadline, nothing parked on b) runs with that duty home:
// the starter reclaims it before it runs anything. (Before, the job came
// after the read's last look and the wait on the signal, whose park
// reclaims, was skipped: the process ran with the duty lingering.)
func TestAProcessHandedAsItsStarterLeavesItsLinkRunsWithTheDutyHome(t *testing.T) {
	a := startNamed(t, "a", "c", WithTickTimeout(time.Hour))
	b := startNamed(t, "b", "c", WithTickTimeout(time.Hour))
	c := startNamed(t, "c", "c", WithTickTimeout(time.Hour))
	setStarterIdle(b, 400*time.Millisecond) // the read ends at the deadline
	connect(t, a, b)
	connect(t, c, b)
	l := logStarters(t)
	lingering := make(chan int64, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("check", func(*Process, []any) error {
		lingering <- b.engine.Stats().LingeringNow
		return nil
	})
	s := readingStarter(t, l, a, b)
	var handed atomic.Bool
	spawned := make(chan error, 1)
	leavesLingering := func(e starterEv) bool { return e.s == s && e.ev == starterLeaves && !s.home }
	l.onceAt(leavesLingering, func() {
		go func() {
			spawned <- c.Run(context.Background(), func(p *Process) error {
				_, err := p.Spawn(b.Self(), "check")
				return err
			})
		}()
		guard := time.Now().Add(testWait) // a hang guard; the test fails below
		for s.job.Load() == nil && time.Now().Before(guard) {
			time.Sleep(100 * time.Microsecond)
		}
		handed.Store(s.job.Load() != nil)
	})
	var n int64
	select {
	case n = <-lingering:
	case <-time.After(testWait):
		t.Fatal("the process spawned from c did not run")
	}
	if err := <-spawned; err != nil {
		t.Fatal(err)
	}
	if !handed.Load() {
		t.Fatal("the spawn from c was not handed to the starter as it left its link")
	}
	if n != 0 {
		t.Fatalf("%d read duties linger while the process handed to the starter runs; want none", n)
	}
}
