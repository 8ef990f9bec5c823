package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/meshrt/mesh/internal/memlink"
)

// nodeEvents starts a process on n that monitors nodes and forwards every
// NodeUp and NodeDown to the returned channel.
func nodeEvents(t *testing.T, n *Node) <-chan any {
	t.Helper()
	out := make(chan any, 64)
	ready := make(chan error, 1)
	n.SpawnFunc(func(p *Process) error {
		ready <- p.MonitorNodes()
		for {
			m, err := p.Receive(context.Background())
			if err != nil {
				return nil
			}
			out <- m
		}
	})
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	return out
}

// nextEvent returns the next event about node, skipping others.
func nextEvent(t *testing.T, ch <-chan any, node string) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for {
		select {
		case m := <-ch:
			switch e := m.(type) {
			case NodeUp:
				if e.Node == node {
					return e
				}
			case NodeDown:
				if e.Node == node {
					return e
				}
			}
		case <-ctx.Done():
			t.Fatalf("no event about %s", node)
			return nil
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNodeEventsSayWhyANodeLeft(t *testing.T) {
	nw := memlink.NewNetwork()
	var logs syncBuffer
	a := startNamed(t, "a", "c", onNet(nw), WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	ev := nodeEvents(t, a)

	// A graceful stop: shutdown, and no redial of a peer that said so.
	b, err := Start("b@127.0.0.1:0", "c", onNet(nw))
	if err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	if e := nextEvent(t, ev, b.Self()); e != (NodeUp{Node: b.Self()}) {
		t.Fatalf("got %#v, want NodeUp", e)
	}
	stopNode(t, b)
	if e := nextEvent(t, ev, b.Self()); e != (NodeDown{Node: b.Self(), Reason: Shutdown}) {
		t.Fatalf("got %#v, want NodeDown shutdown", e)
	}
	a.dials.mu.Lock()
	_, redial := a.dials.targets[b.Self()]
	a.dials.mu.Unlock()
	if redial {
		t.Fatal("a redials a node that stopped gracefully")
	}
	// The line is logged as the peer goes, which may come just after the
	// event reached the watcher.
	eventually(t, "an Info log line with the reason shutdown", func() bool {
		return strings.Contains(logs.String(), "reason=shutdown")
	})

	// Disconnect: both ends say disconnect.
	c := startNamed(t, "c", "c", onNet(nw))
	cev := nodeEvents(t, c)
	connect(t, a, c)
	nextEvent(t, ev, c.Self())
	nextEvent(t, cev, a.Self())
	if err := a.Disconnect(c.Self()); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, ev, c.Self()); e != (NodeDown{Node: c.Self(), Reason: Disconnected}) {
		t.Fatalf("a got %#v, want NodeDown disconnect", e)
	}
	if e := nextEvent(t, cev, a.Self()); e != (NodeDown{Node: a.Self(), Reason: Disconnected}) {
		t.Fatalf("c got %#v, want NodeDown disconnect", e)
	}
	if err := a.Disconnect(c.Self()); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Disconnect of an unconnected node = %v, want ErrNotConnected", err)
	}
	if err := a.Disconnect("nonsense"); !errors.Is(err, ErrBadName) {
		t.Fatalf("Disconnect(nonsense) = %v, want ErrBadName", err)
	}

	// A connection lost without a goodbye: connection_closed, and redialled.
	d := startNamed(t, "d", "c", fastRedial, onNet(nw))
	connect(t, a, d)
	nextEvent(t, ev, d.Self())
	d.partition(a.Self())
	if e := nextEvent(t, ev, d.Self()); e != (NodeDown{Node: d.Self(), Reason: ConnectionClosed}) {
		t.Fatalf("got %#v, want NodeDown connection_closed", e)
	}
	d.heal(a.Self())
	if e := nextEvent(t, ev, d.Self()); e != (NodeUp{Node: d.Self()}) {
		t.Fatalf("got %#v, want NodeUp after the redial", e)
	}
}

func TestDemonitorNodesStopsEvents(t *testing.T) {
	a, b := memPair(t)
	within(t, a, func(p *Process) error {
		if err := p.MonitorNodes(); err != nil {
			return err
		}
		p.DemonitorNodes()
		connect(t, a, b)
		p.Node().SpawnFunc(func(q *Process) error { return q.Node().Send(p.Self(), "marker") })
		m, err := recv(p)
		if err != nil || m != "marker" {
			t.Errorf("got %#v, %v; want only the marker", m, err)
		}
		return nil
	})
}

// A Disconnect of a peer that counts as up but whose connection has not
// started yet (attach runs between the two) waits for the start, then
// says goodbye: the other node, which may count the link up and send on
// it already, hears disconnect. Once, the close came first: a Shutdown of
// a connection not started is a Close, so the queued goodbye never went
// out, and the socket, closed with the other node's bytes unread, sent
// it a reset (a large message in flight made that likely): its link went
// down as connection_closed.
func TestDisconnectBeforeTheLinkStartsSaysGoodbye(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	ev := nodeEvents(t, a)
	var once sync.Once
	returned := make(chan error, 1)
	waits := make(chan struct{})
	linkUp := func(pe *peer) {
		if pe.n != b {
			return
		}
		once.Do(func() {
			go func() { returned <- b.Disconnect(a.Self()) }()
			// The connection starts once Disconnect waits for it, or
			// (without the wait) once Disconnect has closed it unstarted.
			select {
			case <-waits:
			case err := <-returned:
				returned <- err
			}
		})
	}
	disconnectWaits := func(*peer) { close(waits) }
	testHookLinkUp.Store(&linkUp)
	testHookDisconnectWaits.Store(&disconnectWaits)
	t.Cleanup(func() {
		testHookLinkUp.Store(nil)
		testHookDisconnectWaits.Store(nil)
	})
	connect(t, a, b)
	if e := nextEvent(t, ev, b.Self()); e != (NodeUp{Node: b.Self()}) {
		t.Fatalf("got %#v, want NodeUp", e)
	}
	if e := nextEvent(t, ev, b.Self()); e != (NodeDown{Node: b.Self(), Reason: Disconnected}) {
		t.Fatalf("got %#v, want NodeDown disconnect", e)
	}
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
}
