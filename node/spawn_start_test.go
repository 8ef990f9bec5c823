package node

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
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

// Idle starters are bounded, and each ends after its idle time.
func TestIdleStartersAreBoundedAndEnd(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	b.starters.idleFor = 200 * time.Millisecond
	connect(t, a, b)
	before := starterGoroutines()
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
	eventually(t, "the idle starters ended after their idle time", func() bool {
		return idleStarters(b) == 0 && starterGoroutines() == before
	})
}
