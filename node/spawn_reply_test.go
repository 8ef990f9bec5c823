package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshrt/mesh/node"
)

// Regression tests for bugs of package node found while writing meshbench
// and the examples.

// A remote spawn whose reply has arrived must return the PID, even if the
// connection goes down right after. spawnRemote used to select on the reply
// and on the connection's end at once, and Go picks at random when both are
// ready, so some spawns of an actor that stops its node returned
// ErrNotConnected.
func TestSpawnReplyWinsOverTheDownThatFollowsIt(t *testing.T) {
	const rounds = 20
	failed := 0
	for range rounds {
		a, err := node.Start("a@127.0.0.1:0", "c")
		if err != nil {
			t.Fatal(err)
		}
		b, err := node.Start("b@127.0.0.1:0", "c")
		if err != nil {
			t.Fatal(err)
		}
		b.Define("halt", func(p *node.Process, _ []any) error {
			go b.Stop(context.Background())
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := a.Connect(ctx, b.Self()); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Spawn(b.Self(), "halt"); errors.Is(err, node.ErrNotConnected) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
		_ = b.Stop(ctx)
		_ = a.Stop(ctx)
		cancel()
	}
	if failed > 0 {
		t.Fatalf("%d of %d spawns whose reply was sent before the node stopped returned ErrNotConnected", failed, rounds)
	}
}
