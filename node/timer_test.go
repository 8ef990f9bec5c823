package node

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestSendAfterDeliversEveryMessageNeverEarly(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		const count = 2000
		for i := range count {
			d := time.Duration(rand.IntN(50)) * time.Millisecond
			due := time.Now().Add(d)
			p.SendAfter(d, p.Self(), due)
			if i%500 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		for range count {
			m, err := recv(p)
			if err != nil {
				return err
			}
			due := m.(time.Time)
			if now := time.Now(); now.Before(due) {
				return fmt.Errorf("a timer fired %v early", due.Sub(now))
			}
		}
		return nil
	})
}

// Stop's answer is the truth: true, and the message never comes (the next
// two timers' messages are the next two in the mailbox); false, and it
// came. The first timer is due in 5 ms, so it is almost always pending at
// the Stop; on a machine that stalls the test longer than that between
// the two calls, Stop finds it fired, and its message must be there.
func TestStoppedTimerNeverFires(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		tm := p.SendAfter(5*time.Millisecond, p.Self(), "cancelled")
		stopped := tm.Stop()
		if tm.Stop() {
			return fmt.Errorf("second Stop returned true")
		}
		if !stopped {
			if m, err := recv(p); m != "cancelled" || err != nil {
				return fmt.Errorf("Stop returned false, then got %v, %v; want the message it did not stop", m, err)
			}
		}
		fired := p.SendAfter(time.Millisecond, p.Self(), "fired")
		if m, err := recv(p); m != "fired" || err != nil {
			return fmt.Errorf("got %v, %v; want fired (and never cancelled)", m, err)
		}
		if fired.Stop() {
			return fmt.Errorf("Stop of a fired timer returned true")
		}
		p.SendAfter(20*time.Millisecond, p.Self(), "after")
		if m, err := recv(p); m != "after" || err != nil {
			return fmt.Errorf("got %v, %v", m, err)
		}
		return nil
	})
}

func TestTimersOfAnExitedProcessAreCancelled(t *testing.T) {
	n := startNode(t)
	stop := make(chan struct{})
	target := n.SpawnFunc(func(*Process) error { <-stop; return nil })
	var timers []*Timer
	for i := range 100 {
		timers = append(timers, n.SendAfter(time.Hour+time.Duration(i), target, i))
	}
	other := n.SpawnFunc(func(q *Process) error { _, err := q.Receive(context.Background()); return err })
	keep := n.SendAfter(time.Hour, other, "kept")
	close(stop)
	eventually(t, "the target's timers to be cancelled", func() bool {
		s := &n.svc.timers
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.heap) == 1 && len(s.byTarget) == 1
	})
	for _, tm := range timers {
		if tm.Stop() {
			t.Fatal("a timer outlived its target")
		}
	}
	if late := n.SendAfter(time.Hour, target, "late"); late.Stop() {
		t.Fatal("a timer to an exited process was set")
	}
	if !keep.Stop() {
		t.Fatal("another process's timer was cancelled")
	}
	n.local(other).die(Kill)
}

func TestSendAfterToARemoteProcess(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	got := make(chan any, 1)
	r := b.SpawnFunc(func(q *Process) error {
		m, err := q.Receive(context.Background())
		got <- m
		return err
	})
	a.SendAfter(time.Millisecond, r, "hello")
	if m := <-got; m != "hello" {
		t.Fatalf("got %v", m)
	}
}

func TestTimerHeapKeepsOrderUnderRandomRemovals(t *testing.T) {
	var s timerSet
	var all []*Timer
	for range 2000 {
		tm := &Timer{when: rand.Int64N(1000), set: &s}
		s.pushLocked(tm)
		all = append(all, tm)
	}
	for _, tm := range all {
		if rand.IntN(3) == 0 {
			s.mu.Lock()
			s.removeLocked(tm)
			s.mu.Unlock()
		}
	}
	var whens []int64
	for len(s.heap) > 0 {
		for i, tm := range s.heap {
			if tm.idx != i {
				t.Fatalf("timer at %d says %d", i, tm.idx)
			}
		}
		top := s.heap[0]
		s.removeLocked(top)
		whens = append(whens, top.when)
	}
	if !slices.IsSorted(whens) {
		t.Fatal("timers popped out of order")
	}
}

func TestSendAfterOnAStoppedNodeNeverFires(t *testing.T) {
	n, err := Start("t@127.0.0.1:0", "c")
	if err != nil {
		t.Fatal(err)
	}
	stopNode(t, n)
	if tm := n.SendAfter(time.Millisecond, PID{Node: "x@127.0.0.1:1", Incarnation: 1, ID: 1}, 1); tm.Stop() {
		t.Fatal("a stopped node set a timer")
	}
}

// A timer set for "never" (a duration past the year 2262) stays pending:
// its deadline saturates instead of wrapping into the past.
func TestSendAfterForeverDoesNotFire(t *testing.T) {
	n := startNode(t)
	got := make(chan any, 1)
	target := n.SpawnFunc(func(p *Process) error {
		for { // alive until the node stops: its exit would cancel the timer
			m, err := p.Receive(context.Background())
			if err != nil {
				return err
			}
			got <- m
		}
	})
	tm := n.SendAfter(math.MaxInt64, target, "never")
	n.SendAfter(0, target, "now")
	if m := <-got; m != "now" {
		t.Fatalf("first message %v, want the timer due now", m)
	}
	if !tm.Stop() {
		t.Fatal("the timer set for never had fired or gone")
	}
}
