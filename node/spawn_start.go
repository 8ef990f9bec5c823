package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrt/mesh/loop"
)

// Starting the processes peers spawn without waking a thread.
//
// A `go` statement readies the new goroutine with a wakep: with an idle P
// (a free core), the runtime wakes an idle thread, which spins, steals the
// goroutine from the loop's P and runs it, then goes back to sleep: a
// futex wake, a futex sleep, a nanosleep and two context switches on the
// far node per remote spawn, on a machine whose other core the spawning
// node needs for the reply. So the goroutine of a process a peer spawned
// does not end with its process: it waits, as an idle starter, for the
// next process a peer spawns on this node, reading its peer's link (below)
// or on an eventfd of its own in Go's netpoller (starterSignal). The loop
// hands it the process and wakes it with one eventfd write; the netpoller
// readies it, and the loop's own thread runs it once the loop parks, with
// no other thread woken. The starter reads nothing from the eventfd: what
// it was handed is in the starter, and every write notifies the netpoller
// again. At most maxStarters wait; a starter
// idle for starterIdle ends (for between starterIdle/2 and starterIdle:
// its deadline is moved only when less than half of it is left, so that a
// busy starter does not reset a timer every process), and Stop ends them
// all.
//
// An idle starter waits first as the inline reader of the link its last
// process came from (readLink: loop.Conn.ReadInlineUntil, the starter its
// own loop.InlineParker), since a peer that spawns spawns again: that
// peer's next spawn request is read, answered and handed to the starter
// on the starter's own goroutine (takeOwn), with no eventfd write and no
// second goroutine readied, where the loop's hand-off cost the far node a
// wake-up and, a quarter to a third of the time on 2 vCPUs, delayed the
// requester behind the far node's work after the reply
// (docs/latency.md, "Remote spawn: an idle starter reads its peer's
// link"). Its rules:
//
//  1. One starter reads a link at a time: it claims the link
//     (peer.starterReads) with a compare-and-swap, and only then looks for
//     waiters; a second starter from the same peer waits on its signal.
//  2. A goroutine that waits for the link's input for itself (a process
//     reading it inline, a remote spawn's reply: peer.ownWait) counts
//     itself, then looks for the claim; if it finds one it tells that
//     starter to yield (starter.yield) and kicks the link. The starter
//     clears its yield, claims, looks at the count, and looks at both at
//     every step of its wait (its InlineParker methods). One of the two
//     sees the other, and the starter stops reading: the duty goes home
//     to the loop (rule 4). The count alone is not enough: it lasts only
//     as long as the waiter's own try (below), which fails at once, so a
//     starter descheduled between the kick and its look would find it
//     gone, take the kick for a stray one and read on.
//     It does not go to the waiter: ownWait's caller tries its own
//     inline read at once, while the starter still holds the duty, so
//     that try fails (and marks the link shared for loop's sharedFor)
//     and the waiter parks; the loop reads its input. The first wait on
//     a link after a spawn is served by the loop, as a second waiter on
//     a held link is anyway.
//  3. A wake (a process handed by another link's loop, Stop) stores the
//     job, then swaps the starter's reading link (starter.reading) to nil
//     and kicks the link it got, else writes the signal; the starter
//     swaps it to nil when it leaves the link, before its hand-back when
//     it leaves for a job or a waiter (leave). So a wake kicks only a
//     link the starter has not left, and a starter that left it finds
//     its job on its signal. (A starter that leaves at its deadline, or
//     because the link is busy or closing, swaps after its hand-back: a
//     wake in between kicks the link, and the next holder's wait, ended
//     early, waits again.)
//  4. The starter gives the duty back before it runs its process, and
//     counts as parked (Engine.ParkBegin) for the hand-back, so that the
//     duty goes home to the loop rather than lingering: no user code
//     runs while a starter holds a link, and the peer's next frames do
//     not wait for the linger timer behind that process; the one
//     exception is 4a. An idle starter waiting on its signal counts as
//     parked too, every one, whether or not another starter reads its
//     link: while one waits, no hand-back on any of the node's links
//     leaves its duty lingering, and a spawn request is never left to
//     the linger timer while a starter is idle for it. (A starter that
//     found its link claimed by another one cannot rely on that one to
//     read it: the reader stops reading, for a waiter, at its deadline,
//     or to run a slow process with the duty home, while the second one
//     waits on, for up to starterIdle.)
//     a. When the process is one the starter read for itself (takeOwn),
//     and the starter's last process ran for less than starterQuick
//     (s.quick, measured around every process it runs), and the
//     process's own actor ran for less than that its last
//     actorQuickRuns times on a starter (actorDef.quick, the same
//     measure, kept on the actor's definition), and no waiter or end
//     came (done), the starter does not count as parked: the hand-back
//     may leave the duty lingering (loop's rule 4: nothing parked, so
//     not while a second starter waits on its signal; no other waiter),
//     and the starter takes it again when the process
//     returns with one compare-and-swap, with no epoll_ctl at either
//     end, where the duty's way home and back cost two a spawn.
//     Meanwhile the link is read by nobody: the peer's next frames (all
//     of them, not only spawns) wait for the process to return, or to
//     park (its park brings the duty home: Engine.ParkBegin), or for
//     the linger timer (one to two lingerPeriods, 10-20 ms) if it runs
//     on without parking: it computes, or blocks outside Mesh (a
//     channel, a lock, a database call). So 4a is a prediction that the
//     process returns soon, and it rests on the process's own actor:
//     with the starter's last process alone, any actor spawned right
//     after a quick one was exposed, and one that always blocks made
//     its peer wait for the timer at each of its spawns that followed a
//     quick one. An actor with no history (its first run, or the first
//     after a redefinition, which makes a new def) counts as not quick,
//     and a run that is not quick clears its history. The starter's own
//     condition stays: a stream of spawns of workers that compute for a
//     millisecond is not made to wait, one behind the other, for each
//     worker to end, though a mix of actors shares one starter; and a
//     slow last process is the node's own signal that it is loaded or
//     descheduled, which the actor's history, written by any starter at
//     any earlier time, is not. The cost that remains: an actor that is
//     quick until it is not (its runs quick, then one that blocks) still
//     makes its peer's next frames wait once, at most as long as that
//     run or the timer's bound, and its next actorQuickRuns spawns run
//     with the duty home.
//  5. A spawn from another peer reaches a starter that reads a link by a
//     kick of its read (rule 3); the pool hands it to a starter that
//     reads no link first.
//
// One difference from a goroutine of its own: a process function that
// locks its OS thread (runtime.LockOSThread) and returns without unlocking
// it leaves the next process on that thread, where a goroutine's end would
// have ended the thread. Such an actor unlocks before it returns, or does
// that work on a goroutine of its own.

const maxStarters = 8

// starterIdle is how long a starter waits for a process before it ends.
const starterIdle = 2 * time.Second

// starterRetries bounds the inline waits in a row of one idle wait that
// end with nothing for the starter (its link's loop recalled the duty, a
// stray kick): then it waits on its signal.
const starterRetries = 8

// starterQuick: a starter whose last process ran for less than this lets
// the next process it reads for itself run with its link's read duty
// lingering, if that process's actor ran for less than this its last
// runs too (rule 4a). About a round trip between two nodes on one
// machine: a peer's frame that comes while such a process runs waits
// about as long as the process, as one behind a busy loop would.
const starterQuick = 50 * time.Microsecond

// starter is one idle process goroutine's place in the pool. As a reader
// of its link (readLink) it is the link's loop.InlineParker.
type starter struct {
	n    *Node
	sig  starterSignal
	job  atomic.Pointer[Process] // handed, then woken; taken by the starter
	quit atomic.Bool             // set, then woken: end
	open bool                    // sig was made (at the first wait): its goroutine's
	// until is the end of its idle time on the starters' clock (time
	// since starterEpoch), moved only when less than half is left; its
	// goroutine's. idleWait compares it with the clock read that ended
	// the last process, with no read of its own (time.Now reads the wall
	// clock too: about 80 instructions a spawn).
	until time.Duration

	// from is the link the starter's last process came from: the one it
	// reads while idle. Set by the hand-off before job (whose store
	// publishes it), or by takeOwn; read by the starter after it took its
	// job and before it is in the pool again (wait).
	from *peerHandle
	// reading is the link the starter reads inline now, for its wakers:
	// a wake stores the job (or quit), then swaps reading to nil and kicks
	// the link it got, else writes the signal; the starter swaps it to nil
	// when it stops reading. Whichever swaps first learns which way the
	// wake goes, so a wake never kicks a link the starter had left before
	// that swap, and never writes the signal of a starter that still
	// waits on its link.
	reading atomic.Pointer[loop.Conn]

	// yield is set by a waiter for the link s claimed (ownWait), before
	// its kick: s stops reading. Unlike the link's count it stays set
	// after the waiter's wait is over; cleared by s before its claim,
	// so a waiter of an earlier read can only make s yield once too many.
	yield atomic.Bool

	// The starter's goroutine only.
	quick bool // its last process ran for less than the pool's quick bound (rule 4a): the next one it reads may run with the duty lingering, if its actor is quick too

	// The starter's goroutine only, while it reads a link.
	pe   *peer // the link's peer (its ownWaits)
	home bool  // counted as parked (Engine.ParkBegin): the duty goes home at the hand-back
	own  bool  // took the process whose request it read, its last process and the taken one's actor quick (takeOwn): the hand-back may leave the duty lingering
}

// close gives back s's signal, if it was made. Its goroutine only, at its
// end.
func (s *starter) close() {
	if s.open {
		s.sig.close()
	}
}

// handed reports whether s's wait is over: a process or the end came.
func (s *starter) handed() bool { return s.job.Load() != nil || s.quit.Load() }

// wake ends s's wait, after a job or quit was stored: a kick of the link it
// reads, else its signal.
func (s *starter) wake() {
	if lc := s.reading.Swap(nil); lc != nil {
		lc.KickInline()
		return
	}
	s.sig.wake()
}

// starterPool holds a node's idle starters.
type starterPool struct {
	mu      sync.Mutex
	idle    []*starter    // guarded by mu
	stopped bool          // guarded by mu
	idleFor time.Duration // guarded by mu; 0: starterIdle (tests set it)
	expired int           // guarded by mu: starters ended after their idle time
	// quickFor is the quick bound in nanoseconds, 0 for starterQuick
	// (tests set it); read by every starter after each process.
	quickFor atomic.Int64
}

// quick reports whether a process that ran for ran counts as quick (rule
// 4a). Any goroutine.
func (sp *starterPool) quick(ran time.Duration) bool {
	bound := time.Duration(sp.quickFor.Load())
	if bound == 0 {
		bound = starterQuick
	}
	return ran < bound
}

// startSpawned starts p, a process pe spawned: on an idle starter if there
// is one, else on a new goroutine that becomes a starter after p. On pe's
// loop, or on a goroutine reading pe's link inline.
func (n *Node) startSpawned(pe *peer, p *Process) {
	if !n.starters.hand(pe, p) {
		go n.runStarter(pe.handle, p)
	}
}

// runStarter runs p, which the peer of from spawned, then the processes it
// is handed while it waits as an idle starter, until it is not needed.
func (n *Node) runStarter(from *peerHandle, p *Process) {
	s := &starter{n: n, from: from}
	defer s.close()
	for p != nil {
		def := p.def // p's own, before it runs
		began := time.Since(starterEpoch)
		p.main()
		ended := time.Since(starterEpoch)
		quick := n.starters.quick(ended - began)
		if def != nil {
			def.ran(quick) // rule 4a: the actor's own history
		}
		p = n.starters.wait(n, s, quick, ended)
	}
}

// starterEpoch is the origin of the starters' clock: time.Since it reads
// the monotonic clock only (time.Now reads the wall clock too).
var starterEpoch = time.Now()

// hand gives p, which pe spawned, to an idle starter and wakes it; false
// if none waits. A starter that reads no link is preferred: waking one
// that reads a link takes that link's next spawn off it.
func (sp *starterPool) hand(pe *peer, p *Process) bool {
	sp.mu.Lock()
	k := len(sp.idle)
	if k == 0 {
		sp.mu.Unlock()
		return false
	}
	i := k - 1
	for j := k - 1; j >= 0; j-- {
		if sp.idle[j].reading.Load() == nil {
			i = j
			break
		}
	}
	s := sp.idle[i]
	sp.removeAtLocked(i)
	sp.mu.Unlock()
	if h := testHookHand.Load(); h != nil {
		(*h)()
	}
	s.from = pe.handle
	s.job.Store(p)
	s.wake()
	return true
}

// removeLocked takes s out of the idle pool; false when a waker took it
// first (its wake is coming). sp.mu held.
func (sp *starterPool) removeLocked(s *starter) bool {
	for i, x := range sp.idle {
		if x == s {
			sp.removeAtLocked(i)
			return true
		}
	}
	return false
}

// removeAtLocked takes the idle starter at i out of the pool (order is
// not kept). sp.mu held.
func (sp *starterPool) removeAtLocked(i int) {
	last := len(sp.idle) - 1
	sp.idle[i], sp.idle[last] = sp.idle[last], nil
	sp.idle = sp.idle[:last]
}

// takeOwn gives p, which pe spawned, to s, the idle starter that read its
// request on pe's link: s runs it once it has given the link back, with no
// wake-up, the duty left lingering if s's last process was quick and p's
// actor ran quick its last runs (rule 4a); false when a waker took s from
// the pool meanwhile (its own process comes). On s's goroutine, in the
// link's OnData.
func (sp *starterPool) takeOwn(s *starter, pe *peer, p *Process) bool {
	sp.mu.Lock()
	mine := sp.removeLocked(s)
	sp.mu.Unlock()
	if !mine {
		return false
	}
	s.from = pe.handle
	s.job.Store(p)
	if s.quick && p.def != nil && p.def.quick() {
		// Rule 4a: the hand-back may leave the duty lingering while p
		// runs, and s takes it again when p returns, with no epoll_ctl.
		s.own = true
		s.reading.Swap(nil)
	} else {
		s.leave() // before the hand-back: the duty goes home, not lingering while p runs
	}
	starterEvent(s, starterTakes)
	return true
}

// testHookHand, when a test sets it, runs in hand between taking a
// starter from the pool and handing it the process.
var testHookHand atomic.Pointer[func()]

// testHookTakenMeanwhile, when a test sets it, runs when a starter whose
// idle time ended finds that the pool took it meanwhile.
var testHookTakenMeanwhile atomic.Pointer[func()]

// Starter events for testHookStarter.
const (
	starterClaims  = iota // about to claim its link (readLink)
	starterReads          // holds its link's duty and is about to wait on it
	starterSleeps         // counted as parked, about to wait on its signal
	starterTakes          // took the process whose request it read (takeOwn)
	starterUnparks        // its wait on its link ended (InlineUnpark), before it looks whether it is done
	starterLeaves         // its read of its link is over, before it gives the link up (readLink)
)

// testHookStarter, when a test sets it, runs on a starter's goroutine at
// the events above.
var testHookStarter atomic.Pointer[func(*starter, int)]

func starterEvent(s *starter, ev int) {
	if h := testHookStarter.Load(); h != nil {
		(*h)(s, ev)
	}
}

// wait makes s an idle starter and returns the process it is handed, or
// nil when it is not needed (the pool is full, it was idle for
// starterIdle, the node stopped); quick is whether s's last process ran
// for less than the quick bound, and now the starters' clock when it ended
// (time since starterEpoch). A waiting starter counts in n.bg, so Stop
// waits for it to end.
func (sp *starterPool) wait(n *Node, s *starter, quick bool, now time.Duration) *Process {
	if !s.open {
		// Made outside the lock, for a starter that has room in the
		// pool: one past the bound ends without an eventfd.
		sp.mu.Lock()
		full := sp.stopped || len(sp.idle) >= maxStarters
		sp.mu.Unlock()
		if full || s.sig.open(s.handed) != nil {
			return nil // without an eventfd the next process gets a goroutine of its own
		}
		s.open = true
	}
	from := s.from // before it is in the pool, where a hand-off sets it
	sp.mu.Lock()
	if sp.stopped || len(sp.idle) >= maxStarters {
		sp.mu.Unlock()
		return nil
	}
	sp.idle = append(sp.idle, s)
	idleFor := sp.idleFor
	s.quick = quick // read by takeOwn, on s's goroutine
	n.bg.Add(1)
	sp.mu.Unlock()
	p := sp.idleWait(n, s, from, idleFor, now)
	if p == nil {
		s.close() // before Stop may return (n.bg): no eventfd outlives it
	}
	n.bg.Done()
	return p
}

// idleWait is wait's wait, with s in the pool: on the link its last
// process came from (from: readLink), then on its signal; now is as for
// wait. Its starter.
func (sp *starterPool) idleWait(n *Node, s *starter, from *peerHandle, idleFor time.Duration, now time.Duration) *Process {
	if idleFor == 0 {
		idleFor = starterIdle
	}
	deadline := s.idleDeadline(now, idleFor)
	if from != nil {
		s.readLink(from, deadline)
	}
	woken := s.handed()
	if !woken {
		// An idle starter waits for a spawn request that a loop (or a
		// process reading a link inline) reads: a park, for the engine's
		// lingering read duties (loop.Engine.ParkBegin), even when
		// another starter reads the link s's last process came from: that
		// one may stop reading it at any time while s waits (rule 4).
		n.engine.ParkBegin()
		starterEvent(s, starterSleeps) // after its count, which a test that sees the event may rely on
		woken = s.sig.wait(deadline)
		n.engine.ParkEnd()
	}
	if !woken {
		sp.mu.Lock()
		if sp.removeLocked(s) {
			sp.expired++
			sp.mu.Unlock()
			return nil
		}
		sp.mu.Unlock()
		if h := testHookTakenMeanwhile.Load(); h != nil {
			(*h)()
		}
		for !s.handed() {
			s.sig.wait(time.Time{}) // taken meanwhile: its wake is coming
		}
	}
	if s.quit.Load() {
		return nil
	}
	return s.job.Swap(nil)
}

// idleDeadline returns the end of s's idle wait that begins at now (the
// starters' clock): s.until, moved to idleFor from a fresh reading of the
// clock only when less than half of idleFor is left of it, so that a busy
// starter does not reset its waits' timers at every process. Its starter.
func (s *starter) idleDeadline(now, idleFor time.Duration) time.Time {
	if s.until-now < idleFor/2 {
		s.until = time.Since(starterEpoch) + idleFor
	}
	return starterEpoch.Add(s.until)
}

// readLink waits, until deadline, as the inline reader of the link s's
// last process came from, from's (loop.Conn.ReadInlineUntil, s its
// InlineParker): that peer's next spawn request is read, answered and
// handed to s on s's own goroutine (takeOwn), with no eventfd write and
// no other goroutine readied. It returns when s was handed a process or
// the end, when a goroutine waits for the link's input for itself
// (ownWaits: s stops reading, and the duty goes home to the loop, which
// reads that waiter's input: the waiter's own inline read, tried while s
// still held the duty, has failed), at the deadline, or when it cannot
// read the link (another starter reads it, its loop is busy, it closed);
// the caller then waits on s's signal. When s read the link, the duty is
// home before readLink returns, not lingering, unless s took the process
// whose request it read, with s's last process and the new one's actor
// quick (own: rule 4a); then s's next read takes it again. On the early
// returns (no peer, a link claimed by another starter) s did not hold the
// duty this time, and one that s's previous own process left lingering
// may still linger: harmless, since the claimer reads it, a waiter takes
// it, and s counts as parked while it waits on its signal (rule 4), which
// reclaims it. s's goroutine.
func (s *starter) readLink(from *peerHandle, deadline time.Time) {
	pe := from.p.Load()
	if pe == nil {
		return
	}
	lc, ok := pe.conn.(*loop.Conn)
	if !ok {
		return
	}
	// Claimed before the look for waiters: a waiter counts itself, then
	// looks for the claim (ownWait); each sees the other's store, so
	// either this look finds the waiter or the waiter finds the claim and
	// kicks. A second starter from the same peer finds the claim taken
	// and waits on its signal: it never clears the first one's.
	starterEvent(s, starterClaims)
	s.yield.Store(false) // before the claim, after which waiters set it
	if !pe.starterReads.CompareAndSwap(nil, s) {
		return
	}
	s.pe = pe
	if pe.ownWaits.Load() == 0 {
		s.reading.Store(lc)
		for i := 0; i < starterRetries && !s.done(); i++ {
			if i > 0 && !time.Now().Before(deadline) {
				break
			}
			if !lc.ReadInlineUntil(deadline, s) {
				break
			}
		}
		starterEvent(s, starterLeaves)
		// Left for another reason (the deadline, the link busy or
		// closing): a wake that swapped first kicks the link, harmlessly
		// (a holder's wait that a kick ends early waits again), and its
		// job is stored, which the signal's wait finds.
		s.reading.Swap(nil)
		if s.home {
			s.home = false
			s.n.engine.ParkEnd()
		} else if !s.own {
			// The read ended without a process of its own (the
			// deadline, a stray kick, the retry limit) and its hand-back
			// may have left the duty lingering (nothing was parked): s
			// stops reading the link, and a job may have come after the
			// loop's last look (done), so reclaim it here, before s can
			// run a process or wait on its signal (rule 4). One load
			// when it does not linger.
			lc.ReclaimLingering()
		}
	}
	s.pe, s.own = nil, false
	pe.starterReads.CompareAndSwap(s, nil)
}

// done reports whether s is to stop reading its link: it was handed a
// process or the end, or a goroutine waits for the link's input for
// itself. When it is, s leaves the link (leave), if it has not yet (takeOwn
// may have), except after takeOwn let the duty linger (own), which a
// waiter or the end still sends home; it stays done for the rest of the
// read. While s reads a link, on its goroutine.
func (s *starter) done() bool {
	if s.home {
		return true
	}
	if s.quit.Load() || s.yield.Load() || s.pe.ownWaits.Load() != 0 {
		s.leave() // the duty goes home, even if s took its own process (own)
		return true
	}
	if s.own {
		return true
	}
	if s.job.Load() != nil {
		s.leave()
		return true
	}
	return false
}

// leave ends s's read of its link before the hand-back: s counts as
// parked until readLink ends (loop.Engine.ParkBegin), so that the
// hand-back sends the duty home rather than leave it lingering while s
// runs a process or waits on its signal, and a wake that comes from now
// on writes s's signal rather than kick the link s leaves. While s reads
// a link, before the hand-back; a second call does nothing: done and
// takeOwn both leave, and both can in one read (done in InlineUnpark,
// seeing a waiter that came while the read returned a spawn request,
// then takeOwn in that request's OnData), where a second ParkBegin
// would be left without its ParkEnd and count s parked for good.
func (s *starter) leave() {
	if s.home {
		return
	}
	s.home = true
	s.n.engine.ParkBegin()
	s.reading.Swap(nil)
}

var _ loop.InlineParker = (*starter)(nil)

// InlinePark implements loop.InlineParker: false when s is done reading.
// Its wakers kick the link (wake, ownWait) after they made done true, so
// a kick that comes before this look is seen here, and one that comes
// after it ends the wait. s's goroutine.
func (s *starter) InlinePark() bool {
	if s.done() {
		return false
	}
	starterEvent(s, starterReads)
	return true
}

// InlineUnpark implements loop.InlineParker: the wait on the socket ended
// (input, a kick, the deadline); false when a waker (a job, the end, a
// waiter for the link) ended s's park first, as done reports. s's
// goroutine.
func (s *starter) InlineUnpark() bool {
	starterEvent(s, starterUnparks)
	return !s.done()
}

// InlineWoken implements loop.InlineParker. s's goroutine.
func (s *starter) InlineWoken() bool { return s.done() }

// InlineReady implements loop.InlineParker: after input was handled, true
// when s is done reading (a spawn request in it was handed to s). s's
// goroutine.
func (s *starter) InlineReady() bool { return s.done() }

// startOwn starts p, a process pe spawned, on the idle starter that reads
// pe's link when the caller is that starter (it read p's request): true
// when it took it. In pe's OnData.
func (pe *peer) startOwn(p *Process) bool {
	lc, ok := pe.conn.(*loop.Conn)
	if !ok {
		return false
	}
	s, ok := lc.Holder().(*starter)
	return ok && pe.n.starters.takeOwn(s, pe, p)
}

// ownWait tells pe's idle starter, if one reads pe's link, that the
// caller is about to wait for the link's input for itself (reading it
// inline if it can): the starter stops reading, and its duty goes home to
// the loop. The caller's own inline read, tried at once, finds the duty
// still held and fails, and the loop reads the caller's input (rule 2).
// Each ownWait is followed by one ownWaitEnd. On the waiting goroutine.
func (pe *peer) ownWait(lc *loop.Conn) {
	pe.ownWaits.Add(1)
	if s := pe.starterReads.Load(); s != nil {
		// The yield, not the count, is what the kick's end of the
		// starter's wait must find: the count is gone once this caller's
		// try has failed, which may be before the starter looks.
		s.yield.Store(true)
		lc.KickInline() // after the yield, which the starter sees when the kick ends its wait
	}
}

// ownWaitEnd ends what ownWait began.
func (pe *peer) ownWaitEnd() { pe.ownWaits.Add(-1) }

// stop ends every idle starter and lets no more wait. Stop calls it.
func (sp *starterPool) stop() {
	sp.mu.Lock()
	sp.stopped = true
	idle := sp.idle
	sp.idle = nil
	sp.mu.Unlock()
	for _, s := range idle {
		s.quit.Store(true)
		s.wake()
	}
}
