package node

// Timers: SendAfter.
//
// One goroutine per node (started at the first SendAfter) sleeps until the
// earliest deadline of a binary min-heap of pending timers, then pops every
// timer that is due and sends its message. It sleeps on a timerClock
// (timerclock.go), which on Linux wakes it within tens of microseconds
// of the deadline where Go's own timers can be a millisecond late. A timer to a local process is
// also on that process's list (byTarget), so the process's exit cancels its
// timers at once and frees them, as Erlang cancels the timers of a process
// that exits.
//
// Invariants.
//
//  1. A timer is pending exactly while idx >= 0: it is in the heap at idx
//     and, for a local target, on its target's list. Both change only under
//     timerSet.mu, so Stop, the firing loop and the target's exit agree on
//     who takes it out, and only one of them reports it.
//  2. A timer is put on a target's list only while the target's mailbox is
//     open, checked after the insertion (the target's exit closes the
//     mailbox before it cancels the list): either the check sees it closed
//     and the insertion is undone, or the exit sees the timer and cancels it.
//  3. Messages are sent outside the lock. A local target's message is pushed
//     by the timer goroutine (never blocks); a remote one's is sent from a
//     goroutine of its own, as a send to a slow peer may wait.
//
// Memory: a pending timer is one 96-byte object plus its heap slot and its
// message; 1 M pending timers take about 105 MiB (BenchmarkSendAfter in
// bench/).

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Timer is a message scheduled by [Process.SendAfter].
type Timer struct {
	when   int64 // unix nanos
	idx    int   // in the heap; -1 once fired or cancelled (invariant 1)
	to     PID
	msg    any
	target *Process // the local target; nil for a remote one
	next   *Timer   // the target's list
	prev   *Timer
	set    *timerSet
}

// Stop cancels the timer. It returns true if that kept the message from
// being sent, false if it was sent already or cancelled before (by Stop,
// or by the exit of its local target). Safe from any goroutine.
func (t *Timer) Stop() bool {
	if t == nil || t.set == nil {
		return false
	}
	s := t.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.idx < 0 {
		return false
	}
	s.removeLocked(t)
	return true
}

// timerSet is a node's pending timers.
type timerSet struct {
	mu       sync.Mutex
	heap     []*Timer          // guarded by mu: min-heap on when
	byTarget map[uint64]*Timer // guarded by mu: the list of each local target's timers
	started  bool              // guarded by mu: the goroutine runs
	clock    timerClock        // armed under mu at the heap's earliest deadline; set with started
	fired    []*Timer          // the goroutine's batch; goroutine only
	local    atomic.Bool       // a timer to a local process was ever set
}

// SendAfter sends msg to the process to after d, unless the returned
// timer is stopped first. A timer to a local process is cancelled when that
// process exits. The message is sent as by [Node.Send] (from outside any
// process). Safe from any goroutine.
func (p *Process) SendAfter(d time.Duration, to PID, msg any) *Timer {
	return p.node.SendAfter(d, to, msg)
}

// SendAfter is [Process.SendAfter] from outside any process. On a stopped
// node it returns a timer that never fires. Safe from any goroutine.
func (n *Node) SendAfter(d time.Duration, to PID, msg any) *Timer {
	t := &Timer{when: deadline(d), to: to, msg: msg, idx: -1}
	s := &n.svc.timers
	var target *Process
	if to.Node == n.self {
		if target = n.local(to); target == nil {
			return t // gone already, or never was: nothing to send
		}
	}
	s.mu.Lock()
	if !s.started {
		if !n.startTimers() {
			s.mu.Unlock()
			return t
		}
		s.started = true
	}
	t.set = s
	t.target = target
	s.pushLocked(t)
	if target != nil {
		s.local.Store(true)
		if s.byTarget == nil {
			s.byTarget = make(map[uint64]*Timer)
		}
		if head := s.byTarget[target.pid.ID]; head != nil {
			t.next = head
			head.prev = t
		}
		s.byTarget[target.pid.ID] = t
	}
	if t.idx == 0 {
		s.clock.arm(t.when) // the earliest deadline moved up
	}
	s.mu.Unlock()
	if target != nil && target.mb.Closed() {
		t.Stop() // invariant 2
	}
	return t
}

// deadline is now plus d in unix nanoseconds, at most the largest (past
// the year 2262 UnixNano wraps, and a timer set for "never" would fire at
// once) and at least 1 (0 disarms a timerClock).
func deadline(d time.Duration) int64 {
	now := time.Now().UnixNano()
	if d > 0 && now > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return max(now+int64(d), 1)
}

// startTimers starts the timer goroutine; false if the node has stopped.
// s.mu is held.
func (n *Node) startTimers() bool {
	n.peersMu.Lock() // Stop sets stopped under it: bg.Add cannot race its Wait
	defer n.peersMu.Unlock()
	if n.stopped.Load() {
		return false
	}
	s := &n.svc.timers
	s.clock = newTimerClock()
	context.AfterFunc(n.life, func() {
		n.bg.Add(1) // the timer goroutine's count is held until this close: Stop's Wait cannot have passed
		defer n.bg.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.clock.close()
	})
	n.bg.Add(1)
	go n.runTimers()
	return true
}

// runTimers is the timer goroutine.
func (n *Node) runTimers() {
	defer n.bg.Done()
	s := &n.svc.timers
	for {
		now := time.Now().UnixNano()
		s.mu.Lock()
		for len(s.heap) > 0 && s.heap[0].when <= now {
			t := s.heap[0]
			s.removeLocked(t)
			s.fired = append(s.fired, t)
		}
		var next int64 // none
		if len(s.heap) > 0 {
			next = s.heap[0].when
		}
		s.clock.arm(next)
		s.mu.Unlock()
		for i, t := range s.fired {
			n.fire(t)
			s.fired[i] = nil
		}
		s.fired = s.fired[:0]
		if !s.clock.wait() {
			return // the node stopped
		}
	}
}

// fire sends a due timer's message (invariant 3).
func (n *Node) fire(t *Timer) {
	msg := t.msg
	t.msg = nil
	if t.target != nil {
		t.target.mb.Push(msg)
		t.target = nil
		return
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := n.send(0, t.to, msg); err != nil {
			n.log.Debug("timer message not sent", "to", t.to, "err", err)
		}
	}()
}

// cancelTarget cancels the timers of the local process id, which exited.
func (s *timerSet) cancelTarget(id uint64) {
	if !s.local.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := s.byTarget[id]; t != nil; {
		next := t.next
		s.removeLocked(t)
		t = next
	}
}

// removeLocked takes the pending timer t out of the heap and off its
// target's list. s.mu is held.
func (s *timerSet) removeLocked(t *Timer) {
	i := t.idx
	last := len(s.heap) - 1
	if i != last {
		s.heap[i] = s.heap[last]
		s.heap[i].idx = i
	}
	s.heap[last] = nil
	s.heap = s.heap[:last]
	if i != last {
		s.down(i)
		s.up(i)
	}
	t.idx = -1
	if t.target == nil {
		return
	}
	id := t.target.pid.ID
	if t.prev != nil {
		t.prev.next = t.next
	} else if t.next != nil {
		s.byTarget[id] = t.next
	} else {
		delete(s.byTarget, id)
	}
	if t.next != nil {
		t.next.prev = t.prev
	}
	t.next, t.prev = nil, nil
}

func (s *timerSet) pushLocked(t *Timer) {
	t.idx = len(s.heap)
	s.heap = append(s.heap, t)
	s.up(t.idx)
}

func (s *timerSet) up(i int) {
	h := s.heap
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].when <= h[i].when {
			return
		}
		h[parent], h[i] = h[i], h[parent]
		h[parent].idx, h[i].idx = parent, i
		i = parent
	}
}

func (s *timerSet) down(i int) {
	h := s.heap
	for {
		least := i
		if l := 2*i + 1; l < len(h) && h[l].when < h[least].when {
			least = l
		}
		if r := 2*i + 2; r < len(h) && h[r].when < h[least].when {
			least = r
		}
		if least == i {
			return
		}
		h[least], h[i] = h[i], h[least]
		h[least].idx, h[i].idx = least, i
		i = least
	}
}
