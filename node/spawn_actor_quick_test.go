package node

import (
	"sync/atomic"
	"testing"
	"time"
)

// Tests of rule 4a's condition on the process's own actor (spawn_start.go,
// actorDef.quick): the starter that read a spawn request leaves its
// link's duty lingering while the new process runs only when its own
// last process and the new process's actor both ran quick.

// ownSpawn spawns actor on b from a and returns once s, the starter that
// reads a's link on b, took the process and reads the link again after
// it; recv is where the process reports what it saw.
func ownSpawn(t *testing.T, l *starterLog, a, b *Node, s *starter, actor string, recv <-chan int64) int64 {
	t.Helper()
	spawnTakenBy(t, l, a, b, s, actor)
	n := <-recv
	if r := readingStarterAfter(t, l, a, b, false); r != s {
		t.Fatalf("%s: another starter reads the link after it", actor)
	}
	return n
}

// reportsLingering is an actor that reports on seen how many read duties
// linger on b while it runs, then returns.
func reportsLingering(b *Node, seen chan<- int64) ActorFunc {
	return func(*Process, []any) error {
		seen <- b.engine.Stats().LingeringNow
		return nil
	}
}

// lingersWithinTen spawns actor (one that reports on recv, as ownSpawn
// asks) up to ten times and reports whether one of its runs saw its
// link's duty lingering.
func lingersWithinTen(t *testing.T, l *starterLog, a, b *Node, s *starter, actor string, recv <-chan int64) bool {
	t.Helper()
	for range 10 {
		if ownSpawn(t, l, a, b, s, actor, recv) == 1 {
			return true
		}
	}
	return false
}

// The reviewer's case, without its timing: an actor that blocks outside
// Mesh (a channel), spawned right after a quick one on the starter that
// read its request, runs with the link's duty home, so the peer's next
// frames are read by the loop while it blocks rather than wait for the
// linger timer. Its history says it runs long: block sleeps past the
// quick bound (1 ms here, well above a noop's run) after its release, so
// that each of its runs counts as slow whatever the scheduler does. Its
// first spawn has no history at all; the later ones have a slow one.
// (With the starter's condition alone, every block after a quick noop
// ran with the duty lingering.)
func TestAnActorThatBlocksRunsWithTheDutyHomeAfterAQuickOne(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Millisecond)
	l := logStarters(t)
	seen := make(chan int64, 1)
	release := make(chan struct{})
	b.Define("noop", func(*Process, []any) error { return nil })
	report := reportsLingering(b, seen)
	b.Define("quick", report)
	b.Define("block", func(p *Process, args []any) error {
		_ = report(p, args)
		<-release
		time.Sleep(2 * time.Millisecond) // past the quick bound: a slow run
		return nil
	})
	s := readingStarter(t, l, a, b)
	lingered := false
	for i := range 4 {
		// Twice, so that the starter's last process (the first, after
		// a block) and the actor it runs (after its first actorQuickRuns)
		// are quick: rule 4a holds for the second (when the runs were
		// under the bound), and block is spawned right after it.
		for range 2 {
			if ownSpawn(t, l, a, b, s, "quick", seen) == 1 {
				lingered = true
			}
		}
		spawnTakenBy(t, l, a, b, s, "block")
		n := <-seen
		release <- struct{}{}
		if n != 0 {
			t.Fatalf("block %d: %d read duties linger while it blocks; want none", i, n)
		}
		if r := readingStarterAfter(t, l, a, b, false); r != s {
			t.Fatalf("block %d: another starter reads the link after it", i)
		}
	}
	if !lingered {
		t.Fatal("the quick actor never ran with the duty lingering: the case is not the one tested")
	}
}

// A quick actor spawned again and again runs with the duty lingering once
// it has a history (actorQuickRuns quick runs), and the starter takes the
// duty again after it with no grant from the loop: no epoll_ctl at either
// end. Before its history, its spawns run with the duty home. The quick
// bound is an hour (a run under the race detector counts as quick), and
// the linger timer may reclaim the duty of a spawn that a loaded machine
// stretches past its period (then the next read takes it by a grant): so
// one spawn in ten after the history must show both.
func TestAQuickActorRunsWithTheDutyLingeringOnceItHasAHistory(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Hour)
	l := logStarters(t)
	seen := make(chan int64, 1)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("check", reportsLingering(b, seen))
	s := readingStarter(t, l, a, b)
	_, lc := linkOf(t, b, a)
	for i := range actorQuickRuns {
		if n := ownSpawn(t, l, a, b, s, "check", seen); n != 0 {
			t.Fatalf("spawn %d of check, before its history: %d read duties linger; want none", i, n)
		}
	}
	for range 10 {
		grants := lc.InlineGrants()
		if ownSpawn(t, l, a, b, s, "check", seen) == 1 && lc.InlineGrants() == grants {
			return
		}
	}
	t.Fatal("in ten spawns of check with a history the duty never lingered while it ran, or the starter took it again by a grant")
}

// An actor with no history runs with the duty home, though the starter's
// last process was quick: its first spawn, and its first after a
// redefinition (a new actorDef, whose history starts empty), once the old
// definition's processes ran with the duty lingering. So is a new actor
// spawned right after that quick one.
func TestAnActorsFirstSpawnAndFirstAfterARedefinitionRunWithTheDutyHome(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Hour)
	l := logStarters(t)
	seen := make(chan int64, 1)
	check := reportsLingering(b, seen)
	b.Define("noop", func(*Process, []any) error { return nil })
	b.Define("check", check)
	b.Define("fresh", check)
	s := readingStarter(t, l, a, b) // its last process a noop: quick
	if n := ownSpawn(t, l, a, b, s, "check", seen); n != 0 {
		t.Fatalf("check's first spawn: %d read duties linger; want none", n)
	}
	if !lingersWithinTen(t, l, a, b, s, "check", seen) {
		t.Fatal("in ten more spawns check never ran with the duty lingering")
	}
	// The starter's last process is check, quick: only the new
	// actor's missing history sends the duty home.
	if n := ownSpawn(t, l, a, b, s, "fresh", seen); n != 0 {
		t.Fatalf("fresh's first spawn, after a quick check: %d read duties linger; want none", n)
	}
	for range actorQuickRuns {
		ownSpawn(t, l, a, b, s, "check", seen) // the starter's last process quick again
	}
	b.Define("check", check)
	if n := ownSpawn(t, l, a, b, s, "check", seen); n != 0 {
		t.Fatalf("check's first spawn after its redefinition: %d read duties linger; want none", n)
	}
}

// A slow run clears an actor's history: a quick actor whose spawns ran
// with the duty lingering runs once past the quick bound, and its next
// spawn, though the starter's last process (another actor's) was quick, runs with
// the duty home. (Without the reset its old streak would still stand.)
func TestASlowRunClearsAQuickActorsHistory(t *testing.T) {
	a, b := quietPair(t)
	setStarterQuick(b, time.Millisecond)
	l := logStarters(t)
	seen := make(chan int64, 1)
	var slow atomic.Bool
	b.Define("noop", func(*Process, []any) error { return nil })
	report := reportsLingering(b, seen)
	b.Define("other", report)
	b.Define("work", func(p *Process, args []any) error {
		_ = report(p, args)
		if slow.Load() {
			time.Sleep(2 * time.Millisecond) // past the quick bound: a slow run
		}
		return nil
	})
	s := readingStarter(t, l, a, b)
	if !lingersWithinTen(t, l, a, b, s, "work", seen) {
		t.Fatal("in ten spawns work never ran with the duty lingering: the case is not the one tested")
	}
	slow.Store(true)
	ownSpawn(t, l, a, b, s, "work", seen)
	slow.Store(false)
	ownSpawn(t, l, a, b, s, "other", seen) // the starter's last process quick again
	if n := ownSpawn(t, l, a, b, s, "work", seen); n != 0 {
		t.Fatalf("work's first spawn after a slow run: %d read duties linger; want none", n)
	}
}
