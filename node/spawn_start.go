package node

import (
	"sync"
	"sync/atomic"
	"time"
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
// next process a peer spawns on this node, on an eventfd of its own in Go's
// netpoller (starterSignal). The loop hands it the process and wakes it
// with one eventfd write; the netpoller readies it, and the loop's own
// thread runs it once the loop parks, with no other thread woken. The
// starter reads nothing: what it was handed is in the starter, and every
// write notifies the netpoller again. At most maxStarters wait; a starter
// idle for starterIdle ends (for between starterIdle/2 and starterIdle:
// its deadline is moved only when less than half of it is left, so that a
// busy starter does not reset a timer every process), and Stop ends them
// all.
//
// One difference from a goroutine of its own: a process function that
// locks its OS thread (runtime.LockOSThread) and returns without unlocking
// it leaves the next process on that thread, where a goroutine's end would
// have ended the thread. Such an actor unlocks before it returns, or does
// that work on a goroutine of its own.

const maxStarters = 8

// starterIdle is how long a starter waits for a process before it ends.
const starterIdle = 2 * time.Second

// starter is one idle process goroutine's place in the pool.
type starter struct {
	sig  starterSignal
	job  atomic.Pointer[Process] // handed, then woken; taken by the starter
	quit atomic.Bool             // set, then woken: end
	open bool                    // sig was made (at the first wait): its goroutine's
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

// starterPool holds a node's idle starters.
type starterPool struct {
	mu      sync.Mutex
	idle    []*starter    // guarded by mu
	stopped bool          // guarded by mu
	idleFor time.Duration // guarded by mu; 0: starterIdle (tests set it)
	expired int           // guarded by mu: starters ended after their idle time
}

// startSpawned starts p, a process a peer spawned: on an idle starter if
// there is one, else on a new goroutine that becomes a starter after p.
// On the peer's loop.
func (n *Node) startSpawned(p *Process) {
	if !n.starters.hand(p) {
		go n.runStarter(p)
	}
}

// runStarter runs p, then the processes it is handed while it waits as an
// idle starter, until it is not needed.
func (n *Node) runStarter(p *Process) {
	s := new(starter)
	defer s.close()
	for p != nil {
		p.main()
		p = n.starters.wait(n, s)
	}
}

// hand gives p to an idle starter and wakes it; false if none waits.
func (sp *starterPool) hand(p *Process) bool {
	sp.mu.Lock()
	k := len(sp.idle)
	if k == 0 {
		sp.mu.Unlock()
		return false
	}
	s := sp.idle[k-1]
	sp.idle[k-1] = nil
	sp.idle = sp.idle[:k-1]
	sp.mu.Unlock()
	if h := testHookHand.Load(); h != nil {
		(*h)()
	}
	s.job.Store(p)
	s.sig.wake()
	return true
}

// testHookHand, when a test sets it, runs in hand between taking a
// starter from the pool and handing it the process.
var testHookHand atomic.Pointer[func()]

// testHookTakenMeanwhile, when a test sets it, runs when a starter whose
// idle time ended finds that the pool took it meanwhile.
var testHookTakenMeanwhile atomic.Pointer[func()]

// wait makes s an idle starter and returns the process it is handed, or
// nil when it is not needed (the pool is full, it was idle for
// starterIdle, the node stopped). A waiting starter counts in n.bg, so
// Stop waits for it to end.
func (sp *starterPool) wait(n *Node, s *starter) *Process {
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
	sp.mu.Lock()
	if sp.stopped || len(sp.idle) >= maxStarters {
		sp.mu.Unlock()
		return nil
	}
	sp.idle = append(sp.idle, s)
	idleFor := sp.idleFor
	n.bg.Add(1)
	sp.mu.Unlock()
	p := sp.idleWait(n, s, idleFor)
	if p == nil {
		s.close() // before Stop may return (n.bg): no eventfd outlives it
	}
	n.bg.Done()
	return p
}

// idleWait is wait's wait, with s in the pool. Its starter.
func (sp *starterPool) idleWait(n *Node, s *starter, idleFor time.Duration) *Process {
	if idleFor == 0 {
		idleFor = starterIdle
	}
	deadline := s.sig.until
	if now := time.Now(); deadline.Sub(now) < idleFor/2 {
		deadline = now.Add(idleFor)
	}
	// An idle starter waits for a spawn request that a loop (or a
	// process reading a link inline) reads: a park, for the engine's
	// lingering read duties (loop.Engine.ParkBegin).
	n.engine.ParkBegin()
	woken := s.sig.wait(deadline)
	n.engine.ParkEnd()
	if !woken {
		sp.mu.Lock()
		for i, x := range sp.idle {
			if x == s {
				last := len(sp.idle) - 1
				sp.idle[i], sp.idle[last] = sp.idle[last], nil
				sp.idle = sp.idle[:last]
				sp.expired++
				sp.mu.Unlock()
				return nil
			}
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

// stop ends every idle starter and lets no more wait. Stop calls it.
func (sp *starterPool) stop() {
	sp.mu.Lock()
	sp.stopped = true
	idle := sp.idle
	sp.idle = nil
	sp.mu.Unlock()
	for _, s := range idle {
		s.quit.Store(true)
		s.sig.wake()
	}
}
