package node

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// The read deadline of a spawn's inline wait for its reply is kept per
// link and moved only when less than half of the spawn timeout is left of
// it, and it is never later than the spawn's own deadline.
func TestReplyDeadlineMovesOnlyWhenLessThanHalfIsLeft(t *testing.T) {
	const span = 10 * time.Second
	pe := &peer{}
	base := monoNanos()
	at := func(d time.Duration) monoDeadline { return monoDeadline(base + int64(d)) }
	first := at(span)
	steps := []struct {
		name           string
		deadline, want monoDeadline
	}{
		{"none kept: the spawn's own", first, first},
		{"a quarter later: kept", at(span + span/4), first},
		{"half later: kept", at(span + span/2), first},
		{"over half later: moved", at(span + span/2 + 1), at(span + span/2 + 1)},
		{"a deadline before the kept one: its own", at(span), at(span)},
	}
	for _, s := range steps {
		got := pe.replyDeadline(s.deadline, span)
		kept := pe.replyDL.Load()
		if kept == nil || kept.mono != s.want {
			t.Fatalf("%s: the link keeps %v; want %v", s.name, kept, s.want)
		}
		if !got.Equal(kept.at) {
			t.Fatalf("%s: replyDeadline = %v; the link keeps %v", s.name, got, kept.at)
		}
		// As a time.Time, the deadline kept is no later than its
		// monotonic value, and not much earlier (the monotonic clock
		// read first: time.Until's later read can only shrink the
		// difference).
		left := time.Duration(int64(s.want) - monoNanos())
		if d := time.Until(got) - left; d > 0 || d < -time.Second {
			t.Fatalf("%s: the kept time.Time is %v off its monotonic value", s.name, d)
		}
	}
}

// A spawn whose inline wait ends at the link's kept reply deadline, set
// long ago and earlier than the spawn's own, waits on, parked, until its
// own: the spawn timeout fires when the far node never answers, and not
// before. Whether the spawn reads its link inline depends on the link's
// loop being idle at that moment: the test tries a few fresh pairs until
// one does (testHookReplyRead).
func TestSpawnTimeoutOutlastsAnEarlierKeptReplyDeadline(t *testing.T) {
	const timeout = 400 * time.Millisecond
	var held atomic.Bool
	hook := func(h bool) { held.Store(held.Load() || h) }
	testHookReplyRead.Store(&hook)
	defer testHookReplyRead.Store(nil)
	for try := 0; try < 5 && !held.Load(); try++ {
		a, b, relay := spawnOverARelay(t, timeout)
		pe := peerOf(b, a)
		if pe == nil {
			t.Fatal("b has no peer for a")
		}
		if _, err := b.Spawn(a.Self(), "idle"); err != nil { // the link's loop goes idle after it
			t.Fatal(err)
		}
		// As if set by a spawn 0.1 timeouts ago: over half is left, so
		// the next spawn keeps it and reads inline until then, 0.9
		// timeouts after it began. The spawn keeps it as long as it
		// computes its own deadline within 0.4 timeouts (160 ms) of
		// this line, a margin a loaded machine under -race keeps.
		kept := pe.keepReplyDeadline(monoDeadline(monoNanos() + int64(timeout*9/10)))
		relay.freeze()
		held.Store(false)
		start := time.Now()
		_, err := b.Spawn(a.Self(), "idle")
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Spawn over a frozen link: %v; want the spawn timeout", err)
		}
		if took < timeout {
			t.Fatalf("the spawn timed out after %v, before its timeout of %v (read inline: %v)", took, timeout, held.Load())
		}
		if got := pe.replyDL.Load(); got == nil || !got.at.Equal(kept) {
			t.Fatalf("the spawn moved the kept reply deadline (over half was left)")
		}
	}
	if !held.Load() {
		t.Log("no spawn read its link inline: the test proves less")
	}
}

// Spawns pending together on one link (one in the table's field, the
// others in its map) all fail with ErrNotConnected when the link is lost.
func TestSpawnsPendingTogetherAllFailWhenTheLinkIsLost(t *testing.T) {
	a, b, relay := spawnOverARelay(t, 10*time.Minute)
	pe := peerOf(b, a)
	if pe == nil {
		t.Fatal("b has no peer for a")
	}
	relay.freeze()
	const spawners = 4
	got := make(chan error, spawners)
	for range spawners {
		go func() {
			_, err := b.Spawn(a.Self(), "idle")
			got <- err
		}()
	}
	eventually(t, "the spawn requests pending", func() bool { return pe.spawns.len() == spawners })
	relay.close()
	wantSpawnsFailed(t, got, spawners, "after the link was lost")
	wantNoSpawnsPending(t, pe)
}

// A spawn pending when its own node stops fails with ErrNotConnected, long
// before the spawn timeout.
func TestSpawnPendingWhenItsNodeStopsFails(t *testing.T) {
	a, b, relay := spawnOverARelay(t, 10*time.Minute)
	pe := peerOf(b, a)
	if pe == nil {
		t.Fatal("b has no peer for a")
	}
	relay.freeze()
	got := make(chan error, 1)
	go func() {
		_, err := b.Spawn(a.Self(), "idle")
		got <- err
	}()
	eventually(t, "the spawn request pending", func() bool { return pe.spawns.len() == 1 })
	// The frozen peer never reads the goodbye: the graceful close is cut
	// short (a tick timeout by default) rather than waited out.
	sctx, scancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer scancel()
	_ = b.Stop(sctx)
	wantSpawnsFailed(t, got, 1, "after its node stopped")
}

// Once a link's pending spawns have failed (failSpawns, when the link is
// down), a spawn that found the link's peer before it went fails at once:
// nothing would ever fail it, or answer it, later.
func TestASpawnAfterTheLinksSpawnsFailedFailsAtOnce(t *testing.T) {
	a, b, relay := spawnOverARelay(t, 10*time.Minute)
	pe := peerOf(b, a)
	if pe == nil {
		t.Fatal("b has no peer for a")
	}
	relay.freeze()
	b.failSpawns(pe) // as the link's end does, before the peer leaves the table
	got := make(chan error, 1)
	go func() {
		_, err := b.requestSpawn(nil, pe, a.Self(), "idle", nil, false)
		got <- err
	}()
	wantSpawnsFailed(t, got, 1, "after the link's spawns failed")
	wantNoSpawnsPending(t, pe)
	relay.close() // the link's end: the pending spawn, if any, fails
}

// Spawners sharing one link each get the reply to their own request,
// whether theirs was the table's one field or in its map.
func TestConcurrentSpawnsOnOneLinkGetTheirOwnReplies(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	connect(t, b, a)
	a.Define("self", func(p *Process, args []any) error {
		return p.Send(args[0].(PID), p.Self())
	})
	const spawners, rounds = 6, 30
	errs := make(chan error, spawners)
	for range spawners {
		go func() {
			errs <- b.Run(context.Background(), func(p *Process) error {
				for i := range rounds {
					if _, err := spawnSelf(p, a.Self(), i); err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	for range spawners {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
