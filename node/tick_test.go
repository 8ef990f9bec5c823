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

// Input is dated by the first sweep that finds it (an input reads no
// clock): a peer that keeps talking is never cut, and one that falls
// silent is cut by the first sweep past the timeout, at most 14/12 of the
// timeout after its last input.
func TestSweepDatesInputAndCutsTheSilent(t *testing.T) {
	const timeout = 12 * time.Second
	const every = timeout / sweepsPerTimeout
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		var pe peer // attached at 0: lastSeen 0
		// Input at random moments, never more than half the timeout
		// apart (a healthy link: tick.go's idle rule), until quiet.
		quiet := time.Duration(r.Int64N(int64(6 * timeout)))
		var inputs []time.Duration
		for at := time.Duration(r.Int64N(int64(timeout / 2))); at < quiet; at += time.Duration(1 + r.Int64N(int64(timeout/2))) {
			inputs = append(inputs, at)
		}
		last := time.Duration(0)
		for sweep := every; ; sweep += every {
			for len(inputs) > 0 && inputs[0] <= sweep {
				last = inputs[0]
				inputs = inputs[1:]
				pe.heard.Store(true) // OnData
			}
			if _, cut := pe.sweepSilence(int64(sweep), timeout); cut {
				if len(inputs) > 0 || sweep-last <= timeout {
					t.Fatalf("trial %d: cut at %v, last input at %v, %d inputs to come", trial, sweep, last, len(inputs))
				}
				if sweep-last > timeout+2*every {
					t.Fatalf("trial %d: cut at %v, %v after the last input; want at most %v", trial, sweep, sweep-last, timeout+2*every)
				}
				break
			}
			if sweep > last+2*timeout {
				t.Fatalf("trial %d: not cut at %v, last input at %v", trial, sweep, last)
			}
		}
	}
}
