package node

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshrt/mesh/internal/memlink"
	"github.com/prometheus/client_golang/prometheus"
)

// A peer's spawned processes are counted in one entry per peer node name,
// held by its links and by the processes (peerlimits.go, spawnCount): a
// spawn charges it and an exit releases it without the node's lock. These
// tests state what that must keep: the limit, across races and
// reconnections; every release; and a map of the names something holds.

// spawnLink is a link of the node named name, for the tests that charge
// and release counts directly: a peer, as a connection makes one.
func spawnLink(n *Node, name string) *peer { return &peer{n: n, name: name} }

// mustCharge charges a spawn of pe's, failing the test past the limit.
func mustCharge(t *testing.T, n *Node, pe *peer) *spawnCount {
	t.Helper()
	c, err := n.chargeSpawn(pe)
	if err != nil {
		t.Fatalf("a spawn within the limit refused: %v", err)
	}
	return c
}

// wantRefused checks that a spawn of pe's is refused as past the limit.
func wantRefused(t *testing.T, n *Node, pe *peer, why string) {
	t.Helper()
	if c, err := n.chargeSpawn(pe); err == nil {
		n.releaseSpawn(c)
		t.Fatalf("%s: a spawn past the limit was counted", why)
	}
}

// Links of one name that come and go, each charging and releasing from
// goroutines of its own, some of their processes outliving them: no
// moment has more processes counted than the limit, and once every
// process has exited and every link ended nothing is left counted (the
// limit's whole room is there again) and no entry is left in the map.
func TestTheSpawnLimitHoldsUnderConcurrentSpawnsExitsAndLinks(t *testing.T) {
	const limit = 4
	n := startNamed(t, "a", "c", onNet(memlink.NewNetwork()), WithPeerProcessLimits(limit, 0))
	const name = "b@127.0.0.1:1"
	var live, over atomic.Int64 // processes counted and not released, as the test sees them
	// Each charge yields between its look at the count and its update:
	// the others' charges and releases come in between.
	yield := runtime.Gosched
	testHookSpawnCharge.Store(&yield)
	defer testHookSpawnCharge.Store(nil)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var outliving []*spawnCount
			for round := range 1000 {
				pe := spawnLink(n, name)
				var held []*spawnCount
				for range limit {
					c, err := n.chargeSpawn(pe)
					if err != nil {
						break
					}
					// Counted before it is seen, released after: live
					// never exceeds what the entry counts.
					if live.Add(1) > limit || c.state.Load()&spawnHeldMask > limit {
						over.Add(1)
					}
					held = append(held, c)
				}
				runtime.Gosched() // the processes live a while
				if len(held) > 0 && (round+g)%3 == 0 {
					// A process that outlives its link.
					outliving = append(outliving, held[0])
					held = held[1:]
				}
				for _, c := range held[len(held)/2:] {
					live.Add(-1)
					n.releaseSpawn(c)
				}
				n.spawnLinkEnded(pe)
				for _, c := range held[:len(held)/2] {
					live.Add(-1)
					n.releaseSpawn(c)
				}
				if len(outliving) > 1 {
					live.Add(-1)
					n.releaseSpawn(outliving[0])
					outliving = outliving[1:]
				}
			}
			for _, c := range outliving {
				live.Add(-1)
				n.releaseSpawn(c)
			}
		}()
	}
	close(start)
	wg.Wait()
	if o := over.Load(); o > 0 {
		t.Fatalf("more than %d processes counted at once, %d times", limit, o)
	}
	if c := spawnEntry(n, name); c != nil {
		t.Fatalf("every process exited and every link ended, and the entry is left (state %#x)", c.state.Load())
	}
	pe := spawnLink(n, name)
	for range limit {
		mustCharge(t, n, pe)
	}
	wantRefused(t, n, pe, "after the races")
}

// A peer that reconnects finds its processes still counted: its new link
// charges the same entry, so the limit holds across the reconnection. Once
// its processes have exited and its link has spawned nothing, its entry
// is gone.
func TestTheSpawnLimitHoldsAcrossAReconnectionWithProcessesAlive(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	nw := memlink.NewNetwork()
	a := startNamed(t, "a", "c", onNet(nw))
	b := startNamed(t, "b", "c", onNet(nw), WithMetrics(reg), WithPeerProcessLimits(3, 0))
	b.Define("idle", func(p *Process, _ []any) error {
		_, err := p.ReceiveMatch(context.Background(), func(m any) bool { return m == "stop" })
		return err
	})
	var pids []PID
	within(t, a, func(p *Process) error {
		for range 3 {
			pid, err := p.Spawn(b.Self(), "idle")
			if err != nil {
				return fmt.Errorf("a spawn within the limit: %w", err)
			}
			pids = append(pids, pid)
		}
		return nil
	})
	if err := a.Disconnect(b.Self()); err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	within(t, a, func(p *Process) error {
		if _, err := p.Spawn(b.Self(), "idle"); err == nil {
			return errors.New("a spawn past the limit on a new link succeeded")
		}
		return nil
	})
	eventually(t, "the cut counted", func() bool {
		return counterBy(t, reg, "mesh_peers_cut_total", "limit")["spawned"] == 1
	})
	if got := spawnedBy(b, a.Self()); got != 3 {
		t.Fatalf("b counts %d processes spawned by a across the reconnection, want 3", got)
	}
	connect(t, a, b)
	within(t, a, func(p *Process) error {
		for _, pid := range pids {
			if err := p.Send(pid, "stop"); err != nil {
				return err
			}
		}
		return nil
	})
	eventually(t, "a's entry gone with its processes", func() bool { return spawnEntry(b, a.Self()) == nil })
	within(t, a, func(p *Process) error {
		for range 3 {
			if _, err := p.Spawn(b.Self(), "idle"); err != nil {
				return fmt.Errorf("a spawn once the processes exited: %w", err)
			}
		}
		return nil
	})
}

// An entry stays while a link that has spawned holds it, so a process
// that exits before the next spawn costs no map work, and while processes
// hold it, after their link ended; it goes when the last holder goes,
// whichever that is. A link that spawns after its end takes no hold.
func TestASpawnCountGoesOnceNothingHoldsIt(t *testing.T) {
	n := startNamed(t, "a", "c", onNet(memlink.NewNetwork()))
	const name = "b@127.0.0.1:1"

	// The last holder a process.
	pe := spawnLink(n, name)
	c1 := mustCharge(t, n, pe)
	n.releaseSpawn(c1)
	if c := spawnEntry(n, name); c != c1 {
		t.Fatal("the entry of a live link that has spawned went with its last process")
	}
	c2 := mustCharge(t, n, pe)
	n.spawnLinkEnded(pe)
	if c := spawnEntry(n, name); c != c2 || spawnedBy(n, name) != 1 {
		t.Fatal("the entry of a live process went with its link")
	}
	n.releaseSpawn(c2)
	if spawnEntry(n, name) != nil {
		t.Fatal("an entry no link and no process holds is left")
	}

	// The last holder the link.
	pe = spawnLink(n, name)
	n.releaseSpawn(mustCharge(t, n, pe))
	n.spawnLinkEnded(pe)
	if spawnEntry(n, name) != nil {
		t.Fatal("an entry left by its link's end, with no process")
	}

	// A spawn on a link that has ended (its requests handled after its
	// close) is counted, and takes no hold the link would not give up.
	c3 := mustCharge(t, n, pe)
	if spawnedBy(n, name) != 1 {
		t.Fatal("a spawn on an ended link not counted")
	}
	n.releaseSpawn(c3)
	if c := spawnEntry(n, name); c != nil {
		t.Fatalf("a spawn on an ended link left its entry held (state %#x)", c.state.Load())
	}
}

// setSpawnReleasedHook runs h, once, at the next release that brings an
// entry to zero, between the release and its look under the lock.
func setSpawnReleasedHook(t *testing.T, h func(*spawnCount)) {
	var ran atomic.Bool // not a sync.Once: h may release, and so call itself
	f := func(c *spawnCount) {
		if !ran.Swap(true) {
			h(c)
		}
	}
	testHookSpawnReleased.Store(&f)
	t.Cleanup(func() { testHookSpawnReleased.Store(nil) })
}

// A release brings a linkless entry to zero; before it takes the lock, a
// new link of the name picks the entry up and spawns. The release must
// leave the entry (it is held again): removed, that link's process would
// count nowhere the limit looks, and the next link would start from zero.
func TestAnEntryPickedUpBeforeItsReleaseTakesTheLockStays(t *testing.T) {
	n := startNamed(t, "a", "c", onNet(memlink.NewNetwork()), WithPeerProcessLimits(1, 0))
	const name = "b@127.0.0.1:1"
	old := spawnLink(n, name)
	c := mustCharge(t, n, old)
	n.spawnLinkEnded(old) // the process outlives its link
	renewed := spawnLink(n, name)
	setSpawnReleasedHook(t, func(*spawnCount) { mustCharge(t, n, renewed) })
	n.releaseSpawn(c)
	if spawnEntry(n, name) != c || spawnedBy(n, name) != 1 {
		t.Fatalf("the entry a new link picked up and charged is not the map's with 1 (state %#x)", c.state.Load())
	}
	wantRefused(t, n, spawnLink(n, name), "a third link")
}

// A release brings a linkless entry to zero; before it takes the lock,
// the entry is picked up, released and removed by others, and a new entry
// made for the name and charged. The late release must leave the new
// entry alone: removed, its count would be lost.
func TestAReleaseLateToTheLockLeavesANewEntryAlone(t *testing.T) {
	n := startNamed(t, "a", "c", onNet(memlink.NewNetwork()), WithPeerProcessLimits(1, 0))
	const name = "b@127.0.0.1:1"
	old := spawnLink(n, name)
	c := mustCharge(t, n, old)
	n.spawnLinkEnded(old)
	var fresh *spawnCount
	setSpawnReleasedHook(t, func(*spawnCount) {
		pe := spawnLink(n, name)
		c2 := mustCharge(t, n, pe) // picks c up
		n.spawnLinkEnded(pe)
		n.releaseSpawn(c2) // and c goes: nothing holds it
		if spawnEntry(n, name) != nil {
			t.Error("the entry picked up and released by others is left")
		}
		fresh = mustCharge(t, n, spawnLink(n, name))
	})
	n.releaseSpawn(c)
	if fresh == c || spawnEntry(n, name) != fresh || spawnedBy(n, name) != 1 {
		t.Fatalf("the new entry's count lost to a late release")
	}
	wantRefused(t, n, spawnLink(n, name), "another link")
}

// A spawn request loads its link's entry; before it charges, the link
// ends and its last process exits, which removes the entry. The charge
// must not count in the removed entry (no link holds it: invariant 3) but
// in the map's, where the limit looks.
func TestAChargeThroughAHoldGivenUpMeanwhileCountsInTheMap(t *testing.T) {
	n := startNamed(t, "a", "c", onNet(memlink.NewNetwork()), WithPeerProcessLimits(1, 0))
	const name = "b@127.0.0.1:1"
	pe := spawnLink(n, name)
	c := mustCharge(t, n, pe)
	loaded := pe.spawned.Load()
	n.spawnLinkEnded(pe)
	n.releaseSpawn(c)
	if spawnEntry(n, name) != nil {
		t.Fatal("the entry nothing holds is left")
	}
	got, err := n.chargeSpawnVia(pe, loaded)
	if err != nil {
		t.Fatal(err)
	}
	if got == loaded || spawnEntry(n, name) != got || spawnedBy(n, name) != 1 {
		t.Fatalf("a charge through a hold given up counted in the removed entry (state %#x)", loaded.state.Load())
	}
	wantRefused(t, n, spawnLink(n, name), "a new link")
}
