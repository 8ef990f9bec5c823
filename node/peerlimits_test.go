package node

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/meshrt/mesh/internal/memlink"
	"github.com/prometheus/client_golang/prometheus"
)

// What a peer makes this node hold through its processes is bounded
// (peerlimits.go): the processes it spawned that are alive, counted
// exactly, and the links and monitors its processes hold, counted in steps.

// spawnedBy returns how many processes the node named peer spawned on n
// and are alive, as n counts them.
func spawnedBy(n *Node, peer string) int {
	n.spawnedMu.Lock()
	defer n.spawnedMu.Unlock()
	if c := n.spawned[peer]; c != nil {
		return int(c.state.Load() & spawnHeldMask)
	}
	return 0
}

// spawnEntry returns n's spawn count entry for the node named peer, nil
// for none.
func spawnEntry(n *Node, peer string) *spawnCount {
	n.spawnedMu.Lock()
	defer n.spawnedMu.Unlock()
	return n.spawned[peer]
}

func TestAPeerPastItsSpawnLimitIsCutAndCountedAndExitsGiveRoomBack(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	nw := memlink.NewNetwork()
	a := startNamed(t, "a", "c", onNet(nw))
	b := startNamed(t, "b", "c", onNet(nw), WithMetrics(reg), WithPeerProcessLimits(3, 0))
	b.Define("idle", func(p *Process, _ []any) error {
		_, err := p.ReceiveMatch(context.Background(), func(m any) bool { return m == "stop" })
		return err
	})
	within(t, a, func(p *Process) error {
		var pids []PID
		for range 3 {
			pid, err := p.Spawn(b.Self(), "idle")
			if err != nil {
				return fmt.Errorf("a spawn within the limit: %w", err)
			}
			pids = append(pids, pid)
		}
		if got := spawnedBy(b, a.Self()); got != 3 {
			return fmt.Errorf("b counts %d processes spawned by a, want 3", got)
		}
		// One exits: its place is a's again.
		if err := p.Send(pids[0], "stop"); err != nil {
			return err
		}
		eventually(t, "the stopped process uncounted", func() bool { return spawnedBy(b, a.Self()) == 2 })
		if _, err := p.Spawn(b.Self(), "idle"); err != nil {
			return fmt.Errorf("a spawn after an exit gave room back: %w", err)
		}
		// The next one is past the limit: b cuts a.
		if _, err := p.Spawn(b.Self(), "idle"); err == nil {
			return errors.New("a spawn past the limit succeeded")
		}
		return nil
	})
	eventually(t, "the cut counted", func() bool {
		return counterBy(t, reg, "mesh_peers_cut_total", "limit")["spawned"] == 1
	})
	if got := spawnedBy(b, a.Self()); got != 3 {
		t.Fatalf("b counts %d processes spawned by a after the refused one, want 3 (they outlive the link)", got)
	}
}

func TestAPeerHoldingLinksAndMonitorsPastItsLimitIsCutAndOneWithinIsNot(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	nw := memlink.NewNetwork()
	a := startNamed(t, "a", "c", onNet(nw))
	const limit = 4
	b := startNamed(t, "b", "c", onNet(nw), WithMetrics(reg), WithPeerProcessLimits(0, limit))
	target := b.SpawnFunc(func(p *Process) error {
		_, err := p.ReceiveMatch(context.Background(), func(m any) bool { return m == "stop" })
		return err
	})
	// Links b's own processes make to a's count against nobody: a
	// supervisor here may link to many workers there.
	for range 3 * limit {
		worker := a.SpawnFunc(func(p *Process) error {
			_, err := p.ReceiveMatch(context.Background(), func(m any) bool { return m == "stop" })
			return err
		})
		if err := b.local(target).Link(worker); err != nil {
			t.Fatal(err)
		}
	}
	within(t, a, func(p *Process) error {
		// Within the limit however many come and go: the count is taken
		// again every 2 x limit additions and finds one.
		for range 10 * limit {
			ref := p.Monitor(target)
			p.Demonitor(ref)
		}
		p.Link(target)
		syncWith(t, p, b)
		if cut := counterBy(t, reg, "mesh_peers_cut_total", "limit")["relations"]; cut != 0 {
			return fmt.Errorf("a peer within its limit was cut (%v)", cut)
		}
		if err := p.Unlink(target); err != nil {
			return err
		}
		// Held, not released: past the limit at the next count.
		for range 2 * limit {
			p.Monitor(target)
		}
		return nil
	})
	eventually(t, "the cut counted", func() bool {
		return counterBy(t, reg, "mesh_peers_cut_total", "limit")["relations"] == 1
	})
	eventually(t, "the peer's monitors gone with the link", func() bool {
		tp := b.local(target)
		if tp == nil {
			return true // gone: its links to a's workers broke with the cut
		}
		tp.mu.Lock()
		defer tp.mu.Unlock()
		return tp.rel == nil || len(tp.rel.monitors) == 0
	})
}

// A peer's monitors on a process here go with the peer, and so does the
// memory of the map that held them: a map keeps its largest size after
// deletes, so an emptied one is dropped.
func TestAPeersMonitorsLeaveNoMapBehindWhenItGoes(t *testing.T) {
	a := startNamed(t, "a", "c")
	b := startNamed(t, "b", "c")
	connect(t, a, b)
	target := a.SpawnFunc(func(p *Process) error { _, err := p.Receive(context.Background()); return err })
	b.SpawnFunc(func(p *Process) error { // alive: a watcher's exit would take its monitors
		for range 100 {
			p.Monitor(target)
		}
		_, err := p.ReceiveMatch(context.Background(), func(m any) bool { return m == "stop" })
		return err
	})
	tp := a.local(target)
	held := func() int {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		if tp.rel == nil || tp.rel.monitors == nil {
			return -1
		}
		return len(tp.rel.monitors)
	}
	eventually(t, "the peer's 100 monitors held", func() bool { return held() == 100 })
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the emptied monitors map dropped", func() bool { return held() == -1 })
}
