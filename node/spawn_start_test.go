package node

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// idleStarters is the count of b's idle starters (spawn_start.go).
func idleStarters(n *Node) int {
	n.starters.mu.Lock()
	defer n.starters.mu.Unlock()
	return len(n.starters.idle)
}

// starterGoroutines counts the goroutines that run processes peers
// spawned, idle or not.
func starterGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		k := runtime.Stack(buf, true)
		if k < len(buf) {
			return strings.Count(string(buf[:k]), "node.(*Node).runStarter(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// The goroutine of a process a peer spawned waits for the next such
// process once its own has ended, and runs it as any new process: its own
// PID, links and exit signal, and exit reasons of its own.
func TestSpawnedProcessGoroutinesAreReused(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	setStarterIdle(b, time.Hour) // none ends on its own during the test
	connect(t, a, b)
	b.Define("self", func(p *Process, args []any) error {
		return p.Send(args[0].(PID), p.Self())
	})
	b.Define("fail", func(*Process, []any) error { return errors.New("failed on purpose") })
	within(t, a, func(p *Process) error {
		for i := range 5 {
			pid, err := p.Spawn(b.Self(), "self", p.Self())
			if err != nil {
				return err
			}
			m, err := recv(p)
			if err != nil {
				return err
			}
			if m != pid {
				return fmt.Errorf("spawn %d returned %v, but the process that ran is %v", i, pid, m)
			}
			eventually(t, "the spawned process's goroutine waits for the next", func() bool { return idleStarters(b) == 1 })
		}
		// A linked spawn on a reused goroutine: its failure reaches the
		// parent as its own exit signal.
		p.TrapExit(true)
		pid, err := p.SpawnLink(b.Self(), "fail")
		if err != nil {
			return err
		}
		m, err := recv(p)
		if err != nil {
			return err
		}
		ex, ok := m.(Exit)
		if !ok || ex.From != pid || !strings.Contains(fmt.Sprint(ex.Reason), "failed on purpose") {
			return fmt.Errorf("got %#v; want the exit signal of %v with its reason", m, pid)
		}
		return nil
	})
	stopNode(t, b)
	if k := idleStarters(b); k != 0 {
		t.Fatalf("%d idle starters after Stop; want none", k)
	}
}

// setStarterIdle sets how long n's starters wait before they end.
func setStarterIdle(n *Node, d time.Duration) {
	n.starters.mu.Lock()
	n.starters.idleFor = d
	n.starters.mu.Unlock()
}

// Idle starters are bounded: the goroutines past the bound end with their
// processes; Stop ends the others.
func TestIdleStartersAreBounded(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	setStarterIdle(b, time.Hour) // none ends on its own during the test
	connect(t, a, b)
	before := starterGoroutines() // may count ending ones of earlier tests
	release := make(chan struct{})
	b.Define("hold", func(*Process, []any) error { <-release; return nil })
	const held = 2 * maxStarters
	within(t, a, func(p *Process) error {
		for range held {
			if _, err := p.Spawn(b.Self(), "hold"); err != nil {
				return err
			}
		}
		return nil
	})
	close(release)
	eventually(t, "the pool filled up", func() bool { return idleStarters(b) == maxStarters })
	eventually(t, "the goroutines past the bound ended", func() bool { return starterGoroutines()-before <= maxStarters })
	if k := idleStarters(b); k != maxStarters {
		t.Fatalf("%d idle starters; want %d", k, maxStarters)
	}
	stopNode(t, b)
	if k := idleStarters(b); k != 0 {
		t.Fatalf("%d idle starters after Stop; want none", k)
	}
}

// A starter ends after its idle time.
func TestIdleStarterEndsAfterItsIdleTime(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	setStarterIdle(b, time.Millisecond)
	connect(t, a, b)
	b.Define("noop", func(*Process, []any) error { return nil })
	within(t, a, func(p *Process) error {
		_, err := p.Spawn(b.Self(), "noop")
		return err
	})
	eventually(t, "the starter ended after its idle time", func() bool {
		b.starters.mu.Lock()
		defer b.starters.mu.Unlock()
		return b.starters.expired == 1 && len(b.starters.idle) == 0
	})
}

// An idle starter waits for a spawn request that the link's loop, or a
// process reading the link inline, reads: its node's engine counts it as
// parked, so no read duty lingers with such a request unread.
func TestAnIdleStarterIsCountedAsParked(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	setStarterIdle(b, time.Hour)
	connect(t, a, b)
	b.Define("nop", func(*Process, []any) error { return nil })
	if n := b.engine.Stats().ParkedNow; n != 0 {
		t.Fatalf("%d parks counted before any spawn", n)
	}
	within(t, a, func(p *Process) error {
		_, err := p.Spawn(b.Self(), "nop")
		return err
	})
	eventually(t, "the idle starter is counted as parked", func() bool {
		return idleStarters(b) == 1 && b.engine.Stats().ParkedNow == 1
	})
	stopNode(t, b)
	if n := b.engine.Stats().ParkedNow; n != 0 {
		t.Fatalf("%d parks counted after Stop", n)
	}
}

// An idle starter's signal ends a wait once the starter's condition
// holds, whether its wake came before the wait or during it, and a wake
// whose condition no longer holds does not end a later wait: the wait asks
// the condition, never the eventfd (which nothing reads). The deadlines
// are failure detectors, and the one wait expected to reach its deadline.
func TestAStarterSignalWaitsForItsConditionNotForAWake(t *testing.T) {
	var ready atomic.Bool
	var s starterSignal
	if err := s.open(ready.Load); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ready.Store(true)
	s.wake()
	if !s.wait(time.Now().Add(10 * time.Second)) {
		t.Fatal("a wake that came before the wait did not end it")
	}
	ready.Store(false)
	s.wake() // its notification is still due when the next wait begins
	if s.wait(time.Now().Add(20 * time.Millisecond)) {
		t.Fatal("a wait ended on a wake whose condition did not hold")
	}
	go func() {
		time.Sleep(time.Millisecond)
		ready.Store(true)
		s.wake()
	}()
	if !s.wait(time.Now().Add(10 * time.Second)) {
		t.Fatal("a wake during the wait did not end it")
	}
}

// A starter whose idle time ends just as the pool hands it a process
// (the pool took it, the process is not yet stored) waits for the process
// and runs it: none is lost. The hooks hold the hand-off until the
// starter has found itself taken. The process to hand comes from another
// peer than the starter's last one: a spawn from that one would be read by
// the starter itself (spawn_start.go, readLink), with no hand-off.
func TestAStarterTakenAsItsIdleTimeEndsRunsItsProcess(t *testing.T) {
	a, b, c := startNamed(t, "a", "c"), startNamed(t, "b", "c"), startNamed(t, "c", "c")
	setStarterIdle(b, 200*time.Millisecond)
	connect(t, a, b)
	connect(t, c, b)
	ran := make(chan struct{}, 4)
	b.Define("mark", func(*Process, []any) error { ran <- struct{}{}; return nil })
	spawnAndRun := func(from *Node, what string) {
		t.Helper()
		within(t, from, func(p *Process) error {
			_, err := p.Spawn(b.Self(), "mark")
			return err
		})
		select {
		case <-ran:
		case <-time.After(testWait):
			t.Fatalf("%s did not run", what)
		}
	}
	var handed atomic.Bool
	meanwhile := make(chan struct{})
	var once sync.Once
	tm := func() { once.Do(func() { close(meanwhile) }) }
	hand := func() {
		handed.Store(true)
		select {
		case <-meanwhile:
		case <-time.After(testWait): // a failure detector
		}
	}
	testHookTakenMeanwhile.Store(&tm)
	testHookHand.Store(&hand)
	t.Cleanup(func() { testHookHand.Store(nil); testHookTakenMeanwhile.Store(nil) })
	for i := 0; !handed.Load(); i++ {
		if i == 20 {
			t.Fatal("no spawn found an idle starter to hand its process to")
		}
		spawnAndRun(a, "a process on a new starter")
		eventually(t, "an idle starter", func() bool { return idleStarters(b) == 1 })
		spawnAndRun(c, "the process handed to a starter whose idle time ended")
	}
	select {
	case <-meanwhile:
	default:
		t.Fatal("the starter's idle time did not end while the hand-off was held")
	}
}

// A starter's idle deadline is moved only when less than half of its idle
// time is left (idleDeadline), judged on the starters' clock read when its
// last process ended, and set from a fresh reading when it moves.
func TestAStartersIdleDeadlineMovesOnlyWhenLessThanHalfIsLeft(t *testing.T) {
	const idle = time.Hour
	var s starter
	now := time.Since(starterEpoch)
	first := s.idleDeadline(now, idle)
	if left := time.Until(first); left <= idle/2 || left > idle {
		t.Fatalf("the first idle deadline is %v away; want about %v", left, idle)
	}
	if d := s.idleDeadline(now+idle/4, idle); !d.Equal(first) {
		t.Fatalf("with three quarters of the idle time left, the deadline moved by %v", d.Sub(first))
	}
	if d := s.idleDeadline(now+idle/2-time.Second, idle); !d.Equal(first) {
		t.Fatalf("with just over half of the idle time left, the deadline moved by %v", d.Sub(first))
	}
	moved := s.idleDeadline(now+idle/2+time.Second, idle)
	if moved.Equal(first) {
		t.Fatal("with less than half of the idle time left, the deadline did not move")
	}
	if left := time.Until(moved); left <= idle/2 || left > idle {
		t.Fatalf("the moved idle deadline is %v away; want about %v", left, idle)
	}
	if d := s.idleDeadline(time.Since(starterEpoch), idle); !d.Equal(moved) { // set from a fresh reading: a whole idle time left
		t.Fatalf("just after it moved, the deadline moved again by %v", d.Sub(moved))
	}
}
