//go:build linux

package node

import (
	"sync"
	"testing"
	"time"
)

// Stop closes the eventfd of every idle starter before it returns: a node
// that stops leaves no descriptor of its starters behind, however many of
// them waited.
func TestStopClosesEveryIdleStartersEventfd(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	setStarterIdle(b, time.Hour) // none ends on its own during the test
	connect(t, a, b)
	release := make(chan struct{})
	var running sync.WaitGroup
	b.Define("hold", func(*Process, []any) error { running.Done(); <-release; return nil })
	const held = 3
	running.Add(held)
	within(t, a, func(p *Process) error {
		for range held {
			if _, err := p.Spawn(b.Self(), "hold"); err != nil {
				return err
			}
		}
		return nil
	})
	running.Wait() // each on a goroutine of its own: none was idle when it started
	close(release)
	eventually(t, "every starter waits", func() bool { return idleStarters(b) == held })
	b.starters.mu.Lock()
	idle := append([]*starter(nil), b.starters.idle...)
	for _, s := range idle {
		if !s.open || s.sig.f == nil {
			b.starters.mu.Unlock()
			t.Fatal("an idle starter waits without an eventfd")
		}
	}
	b.starters.mu.Unlock()

	stopNode(t, b)
	// Stop waited for the starters (n.bg), each of which closed its
	// eventfd before it was done: these reads follow those writes.
	for i, s := range idle {
		if s.sig.f != nil {
			t.Errorf("idle starter %d still holds its eventfd after Stop", i)
		}
	}
}

// Stop ends every idle starter, those that read a link (kicked, and their
// reads recalled by the links' close) and those waiting on their signals,
// and closes their eventfds; no park stays counted.
func TestStopEndsStartersThatReadLinks(t *testing.T) {
	a, b := quietPair(t)
	c := startNamed(t, "c", "c", WithTickTimeout(time.Hour))
	connect(t, c, b)
	logStarters(t)
	before := starterGoroutines()
	b.Define("noop", func(*Process, []any) error { return nil })
	release := make(chan struct{})
	var running sync.WaitGroup
	b.Define("hold", func(*Process, []any) error { running.Done(); <-release; return nil })
	running.Add(3)
	for _, from := range []*Node{a, a, c} {
		spawnFrom(t, from, b, "hold")
	}
	running.Wait() // each on a goroutine of its own
	close(release)
	eventually(t, "three idle starters", func() bool { return idleStarters(b) == 3 })
	for _, from := range []*Node{a, c} {
		pe := peerOf(b, from)
		for i := 0; pe.starterReads.Load() == nil; i++ {
			if i == 100 {
				t.Fatalf("no starter reads %s's link", from.Self())
			}
			spawnFrom(t, from, b, "noop")
			eventually(t, "three idle starters", func() bool { return idleStarters(b) == 3 })
		}
	}
	b.starters.mu.Lock()
	idle := append([]*starter(nil), b.starters.idle...)
	b.starters.mu.Unlock()
	stopNode(t, b)
	for i, s := range idle {
		if s.sig.f != nil {
			t.Errorf("idle starter %d still holds its eventfd after Stop", i)
		}
	}
	if k := idleStarters(b); k != 0 {
		t.Fatalf("%d idle starters after Stop", k)
	}
	if st := b.engine.Stats(); st.ParkedNow != 0 || st.LingeringNow != 0 {
		t.Fatalf("after Stop: %d parks counted, %d duties lingering", st.ParkedNow, st.LingeringNow)
	}
	eventually(t, "the starters' goroutines ended", func() bool { return starterGoroutines() <= before })
}
