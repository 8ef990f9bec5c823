package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
)

// Regression tests for the review of the distribution layer: what a peer
// sends may only touch what that peer owns, and nothing a node sends may
// exceed what its peer accepts.

func TestForgedDownForAnotherNodesMonitorIsIgnored(t *testing.T) {
	a := startNamed(t, "a", "c")
	liar := &peer{n: a, name: "liar@127.0.0.1:1", incarnation: 7}
	within(t, a, func(p *Process) error {
		elsewhere := PID{Node: "honest@127.0.0.1:2", Incarnation: 9, ID: 3}
		ref := a.makeRef()
		if !p.addWatching(ref, elsewhere) {
			return errors.New("watching refused")
		}
		a.handleDown(liar, &wire.Down{Ref: ref, Watcher: p.Self(),
			PID: PID{Node: liar.name, Incarnation: liar.incarnation, ID: 1}, Reason: NoProc})
		if m, ok := p.mb.TryReceive(); ok {
			return fmt.Errorf("a forged Down was delivered: %#v", m)
		}
		if _, ok := p.rel.watchingRef(ref); !ok {
			return errors.New("a forged Down removed the real monitor")
		}
		return nil
	})
}

func TestDemonitorWithAnotherNodesRefIsIgnored(t *testing.T) {
	a := startNamed(t, "a", "c")
	liar := &peer{n: a, name: "liar@127.0.0.1:1", incarnation: 7}
	target := a.SpawnFunc(func(p *Process) error { _, err := recv(p); return err })
	honestRef := Ref{Node: "honest@127.0.0.1:2", Incarnation: 9, ID: 1}
	watcher := PID{Node: "honest@127.0.0.1:2", Incarnation: 9, ID: 4}
	if !a.local(target).addMonitor(honestRef, watcher) {
		t.Fatal("monitor refused")
	}
	a.handleDemonitor(liar, &wire.Demonitor{From: PID{Node: liar.name, Incarnation: 7, ID: 1}, To: target, Ref: honestRef})
	tp := a.local(target)
	tp.mu.Lock()
	_, still := tp.rel.monitors[honestRef]
	tp.mu.Unlock()
	if !still {
		t.Fatal("a peer removed a monitor another node holds")
	}
}

func TestSpawnReplyFromAnotherPeerLeavesTheRequestPending(t *testing.T) {
	a := startNamed(t, "a", "c")
	asked := &peer{n: a, name: "asked@127.0.0.1:1", incarnation: 1}
	liar := &peer{n: a, name: "liar@127.0.0.1:2", incarnation: 2}
	ps := &pendingSpawn{req: 42}
	ps.w.Arm()
	defer ps.w.Disarm()
	asked.spawns.add(ps)
	a.handleSpawnReply(liar, &wire.SpawnReply{Req: 42, Code: wire.SpawnUnknownActor})
	if asked.spawns.len() != 1 || ps.w.Wait(time.Now().Add(time.Millisecond)) {
		t.Fatal("another peer's reply answered the request")
	}
	a.handleSpawnReply(asked, &wire.SpawnReply{Req: 42, Code: wire.SpawnUnknownActor})
	if !ps.w.Wait(time.Time{}) || !errors.Is(ps.res.err, ErrUnknownActor) {
		t.Fatalf("the asked peer's reply gave %v", ps.res.err)
	}
}

func TestOversizedSpawnArgumentsFailAtSpawnAndKeepTheLink(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	b.Define("w", func(*Process, []any) error { return nil })
	connect(t, a, b)
	if _, err := a.Spawn(b.Self(), "w", make([]byte, 5<<20)); !errors.Is(err, codec.ErrLimit) {
		t.Fatalf("Spawn with 5 MiB of arguments: %v, want ErrLimit", err)
	}
	if got := a.List(); len(got) != 1 {
		t.Fatalf("the link went down: List = %v", got)
	}
}

func TestOversizedExitReasonTravelsTruncated(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	long := strings.Repeat("x", 2*maxReason)
	victim := b.SpawnFunc(func(p *Process) error { _, err := recv(p); return err })
	within(t, a, func(p *Process) error {
		ref := p.Monitor(victim)
		syncWith(t, p, b)
		if err := p.Exit(victim, long); err != nil {
			return err
		}
		m, err := recv(p)
		d, ok := m.(Down)
		if err != nil || !ok || d.Ref != ref || d.Reason != long[:maxReason] {
			return fmt.Errorf("got %T, %v; want a Down with the reason's first %d bytes", m, err, maxReason)
		}
		if len(a.List()) != 1 {
			return errors.New("the link went down")
		}
		return nil
	})
}

func TestRegistrySnapshotLargerThanAFrameSyncs(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	// The holder lives until the node stops: its names must outlast a
	// slow sync.
	holder := a.SpawnFunc(func(p *Process) error { _, err := p.Receive(context.Background()); return err })
	const names = 20000
	pad := strings.Repeat("n", 200)
	for i := range names {
		if err := a.Global().Register(fmt.Sprintf("%s%06d", pad, i), holder); err != nil {
			t.Fatal(err)
		}
	}
	connect(t, b, a)
	eventually(t, "b holds a's 20 000 names (a snapshot over 4 MiB)", func() bool { return b.Global().Len() == names })
	if len(b.List()) != 1 {
		t.Fatal("the link went down during the sync")
	}
}
