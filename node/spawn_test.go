package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Pending remote spawns are pooled (their channel and timer too). Spawns
// that time out go back to the pool; later spawns, of any node in the
// process, must still each get the reply to their own request.
func TestSpawnsAfterTimedOutSpawnsGetTheirOwnReplies(t *testing.T) {
	b := startNamed(t, "b", "c")
	hasty := startNamed(t, "hasty", "c", WithSpawnTimeout(time.Nanosecond))
	patient := startNamed(t, "patient", "c")
	connect(t, hasty, b)
	connect(t, patient, b)
	b.Define("self", func(p *Process, args []any) error {
		return p.Send(args[0].(PID), p.Self())
	})
	b.Define("idle", func(p *Process, _ []any) error { _, err := recv(p); return err })
	const rounds = 50
	timedOut := 0
	within(t, hasty, func(p *Process) error {
		for range rounds {
			_, err := p.Spawn(b.Self(), "idle")
			if errors.Is(err, context.DeadlineExceeded) {
				timedOut++
			}
		}
		return nil
	})
	if timedOut == 0 {
		t.Log("no spawn timed out (the machine answered within 1 ns?): the test proves less")
	}
	within(t, patient, func(p *Process) error {
		seen := make(map[PID]bool)
		for i := range rounds {
			pid, err := p.Spawn(b.Self(), "self", p.Self())
			if err != nil {
				return fmt.Errorf("spawn %d: %w", i, err)
			}
			if seen[pid] {
				return fmt.Errorf("spawn %d returned %v twice", i, pid)
			}
			seen[pid] = true
			m, err := recv(p)
			if err != nil {
				return err
			}
			if m != pid {
				return fmt.Errorf("spawn %d returned %v, but the process it started is %v", i, pid, m)
			}
		}
		return nil
	})
}
