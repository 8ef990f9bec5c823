package node

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/meshrt/mesh/loop"
)

// The registry's lock is held across Broadcast, which can reach write(2)
// (doc.go, Locks). That is allowed only because nothing under it waits for
// a peer: with a peer that has stopped reading, registrations go on until
// the link's queue is past its high mark (the socket and the loop's output
// are full, so every later frame only queues) or the link is cut as a slow
// consumer, and every Register returns.
func TestRegistryWritesDoNotWaitOnAPeerThatStopsReading(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	relay := connectViaFreezer(t, b, a)
	var toB *peer
	eventually(t, "a connected to b", func() bool { toB = a.peerIfUp(b.Self()); return toB != nil })
	holder := a.SpawnFunc(func(p *Process) error { _, err := p.Receive(context.Background()); return err })
	relay.stall()

	pad := strings.Repeat("r", 240)
	done := make(chan error, 1)
	go func() {
		for i := 0; toB.isUp() && toB.conn.Queued() < loop.DefaultHighWater; i++ {
			if i == 1_000_000 {
				done <- fmt.Errorf("a million registrations and b's queue holds %d bytes", toB.conn.Queued())
				return
			}
			if err := a.Global().Register(fmt.Sprintf("%s%07d", pad, i), holder); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	eventually(t, "registrations past a full link to b", func() bool {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return true
		default:
			return false
		}
	})
	// And the registry is still the node's: a write and a read go through.
	if err := a.Global().Register("after", holder); err != nil {
		t.Fatal(err)
	}
	if pid, ok := a.Global().Whereis("after"); !ok || pid != holder {
		t.Fatalf("Whereis(after) = %v, %v", pid, ok)
	}
}
