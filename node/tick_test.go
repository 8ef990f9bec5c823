package node

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Sweeps fall on the multiples of the period, whenever a node asks.
func TestUntilNextSweepAlignsNodes(t *testing.T) {
	const every = 1250 * time.Millisecond
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Truncate(every)
	for _, tc := range []struct {
		at   time.Duration // after a multiple of every
		want time.Duration
	}{
		{0, every},
		{time.Nanosecond, every - time.Nanosecond},
		{every / 2, every / 2},
		{every - time.Microsecond, time.Millisecond}, // never a busy loop
	} {
		if got := untilNextSweep(base.Add(tc.at), every); got != tc.want {
			t.Errorf("untilNextSweep(+%v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	// Two nodes asking at different moments of one period meet at its end.
	a, b := base.Add(10*time.Millisecond), base.Add(900*time.Millisecond)
	if ea, eb := a.Add(untilNextSweep(a, every)), b.Add(untilNextSweep(b, every)); !ea.Equal(eb) {
		t.Errorf("sweeps at %v and %v, want one instant", ea, eb)
	}
}

// The idle rule: whatever the traffic, the far end never waits more than
// idleSweeps+1 sweeps (half the tick timeout) between two frames, and an
// idle link gets one tick every idleSweeps sweeps.
func TestIdleTickRuleBoundsSilence(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		var pe peer
		var out uint64
		lastFrame, ticks := 0, 0 // sweep index of the last frame sent (a message or a tick)
		busy := r.Float64()
		if trial == 0 {
			busy = 0 // an idle link
		}
		for sweep := 1; sweep <= 500; sweep++ {
			// Between sweep-1 and sweep: maybe messages, sent just
			// after sweep-1 (the worst case for the bound).
			if r.Float64() < busy {
				out++
				lastFrame = sweep - 1
			}
			if pe.tickDue(out) {
				ticks++
				lastFrame = sweep
			}
			if gap := sweep - lastFrame; gap > idleSweeps+1 {
				t.Fatalf("trial %d: %d sweeps without a frame at sweep %d", trial, gap, sweep)
			}
		}
		if busy == 0 && ticks != 500/idleSweeps {
			t.Fatalf("an idle link got %d ticks in 500 sweeps, want %d", ticks, 500/idleSweeps)
		}
	}
	if 2*(idleSweeps+1) > sweepsPerTimeout {
		t.Fatalf("a healthy idle link may stay silent %d/%d of the tick timeout, over half", idleSweeps+1, sweepsPerTimeout)
	}
}
