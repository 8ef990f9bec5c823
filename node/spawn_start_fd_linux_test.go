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
