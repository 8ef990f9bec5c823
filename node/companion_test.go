package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/wire"
)

// A linkMode is one way a link carries large messages: on a companion
// connection (the default) or on its own connection's bulk lane.
type linkMode struct {
	name      string
	opts      []Option
	companion bool
}

var linkModes = []linkMode{
	{name: "companion", companion: true},
	{name: "one connection", opts: []Option{WithBulkConnections(false)}},
}

// forEachLinkMode runs test once per link mode.
func forEachLinkMode(t *testing.T, test func(*testing.T, linkMode)) {
	for _, m := range linkModes {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

// ready waits, in the companion mode, until a's companion connection to b
// is up (a large message sent from a starts it), so that what the test
// sends next goes there.
func (m linkMode) ready(t *testing.T, a, b *Node) {
	t.Helper()
	if m.companion {
		waitCompanion(t, a, b)
	}
}

// peerOf returns a's peer b, or nil.
func peerOf(a, b *Node) *peer {
	a.peersMu.Lock()
	defer a.peersMu.Unlock()
	return a.peers[b.Self()]
}

// waitCompanion waits until a's companion connection to b is up.
func waitCompanion(t *testing.T, a, b *Node) *companion {
	t.Helper()
	for deadline := time.Now().Add(testWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if pe := peerOf(a, b); pe != nil {
			if c := pe.out.Load(); c != nil {
				return c
			}
		}
	}
	t.Fatalf("%s's companion connection to %s did not come up", a.Self(), b.Self())
	return nil
}

// sinkOn spawns a process on n that receives and drops everything.
func sinkOn(n *Node) PID {
	return n.SpawnFunc(func(q *Process) error {
		for {
			if _, err := q.Receive(context.Background()); err != nil {
				return err
			}
		}
	})
}

// A node sends its large messages on a companion connection it dials to
// the peer; the peer handles them there and acknowledges them, and small
// messages keep going on the link's own connection.
func TestLargeMessagesGoOnTheCompanionConnection(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	connect(t, a, b)
	if pe := peerOf(a, b); pe.features&wire.FeatureCompanion == 0 {
		t.Fatal("the link did not negotiate companions")
	}
	got := make(chan string, 8)
	r := b.SpawnFunc(func(q *Process) error {
		for {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			s, _ := m.(string)
			got <- s[:min(len(s), 8)]
		}
	})
	within(t, a, func(p *Process) error {
		for _, m := range []string{bigTagged(0), "1:small", bigTagged(2), "3:small"} {
			if err := p.Send(r, m); err != nil {
				return err
			}
		}
		return nil
	})
	for _, want := range []string{"0:xxxxxx", "1:small", "2:xxxxxx", "3:small"} {
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("got %q; want %q", s, want)
			}
		case <-time.After(testWait):
			t.Fatalf("%q did not arrive", want)
		}
	}
	// The first large messages may have gone before the companion was
	// up; once it is, they go there, and the peer acknowledges them.
	c := waitCompanion(t, a, b)
	within(t, a, func(p *Process) error { return p.Send(r, bigTagged(4)) })
	if s := <-got; s != "4:xxxxxx" {
		t.Fatalf("got %q; want the fifth message", s)
	}
	for deadline := time.Now().Add(testWait); c.acked.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the peer acknowledged nothing on the companion")
		}
	}
	bpe := peerOf(b, a)
	bpe.compMu.Lock()
	in := bpe.in
	bpe.compMu.Unlock()
	if in == nil {
		t.Fatal("the peer holds no companion connection from a")
	}
	if bc := peerOf(b, a).out.Load(); bc != nil {
		t.Fatal("b dialled a companion without sending a large message")
	}
}

// Nodes that do not offer companions (WithBulkConnections(false) at either
// end) keep large messages on the link's own connection.
func TestNoCompanionWhenEitherNodeDoesNotOfferIt(t *testing.T) {
	for _, off := range []string{"sender", "receiver"} {
		t.Run(off, func(t *testing.T) {
			var ao, bo []Option
			if off == "sender" {
				ao = []Option{WithBulkConnections(false)}
			} else {
				bo = []Option{WithBulkConnections(false)}
			}
			a, b := startNamed(t, "a", "c", ao...), startNamed(t, "b", "c", bo...)
			connect(t, a, b)
			s := sinkOn(b)
			within(t, a, func(p *Process) error {
				for i := range 3 {
					if err := p.Send(s, bigTagged(i)); err != nil {
						return err
					}
				}
				return nil
			})
			pe := peerOf(a, b)
			pe.compMu.Lock()
			state := pe.compState
			pe.compMu.Unlock()
			if pe.features&wire.FeatureCompanion != 0 || state != compNone || pe.out.Load() != nil {
				t.Fatalf("features %b, companion state %d: want no companion", pe.features, state)
			}
		})
	}
}

// The acceptor takes a companion only for a link it has with the dialler,
// and one per link: dialled with no link, or a second time, it is refused.
// (The cookie proof comes first, as for every connection: the handshake's
// own tests cover strangers.)
func TestCompanionAdmission(t *testing.T) {
	a, b, c := startNamed(t, "a", "c"), startNamed(t, "b", "c"), startNamed(t, "x", "c")
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	addr := func(n *Node) string { nn, _ := parseName(n.Self()); return nn.addr() }

	if l, _, err := c.links.dialCompanion(ctx, addr(b), b.Self()); err == nil {
		closeUnstarted(l, errLinkEnded)
		t.Fatal("a companion of no link was admitted")
	}
	connect(t, a, b)
	s := sinkOn(b)
	within(t, a, func(p *Process) error { return p.Send(s, bigTagged(0)) })
	waitCompanion(t, a, b)
	if l, _, err := a.links.dialCompanion(ctx, addr(b), b.Self()); err == nil {
		closeUnstarted(l, errLinkEnded)
		t.Fatal("a second companion of one link was admitted")
	}
	// The link still works, its companion too.
	within(t, a, func(p *Process) error { return p.Send(s, bigTagged(1)) })
	if !peerOf(a, b).isUp() {
		t.Fatal("the link went down")
	}
}

// A companion that ends with items its peer has not acknowledged cuts the
// link (they are lost, and the link's end is how watchers hear of it); one
// that ends with everything acknowledged leaves the link up, and large
// messages go on the link's own connection from then on.
func TestCompanionEnd(t *testing.T) {
	for _, unacked := range []bool{true, false} {
		name := "everything acknowledged"
		if unacked {
			name = "items not acknowledged"
		}
		t.Run(name, func(t *testing.T) {
			a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
			connect(t, a, b)
			s := sinkOn(b)
			within(t, a, func(p *Process) error { return p.Send(s, bigTagged(0)) })
			c := waitCompanion(t, a, b)
			within(t, a, func(p *Process) error { return p.Send(s, bigTagged(1)) })
			for deadline := time.Now().Add(testWait); c.acked.Load() < c.last.Load(); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the peer did not acknowledge what was sent")
				}
			}
			pe := peerOf(a, b)
			if unacked {
				c.last.Add(1) // as if an item were on its way
			}
			_ = c.conn.Close(errors.New("test: companion cut"))
			if unacked {
				select {
				case <-pe.down:
				case <-time.After(testWait):
					t.Fatal("the link stayed up")
				}
				if pe.why != ConnectionClosed {
					t.Fatalf("down reason %q; want %q", pe.why, ConnectionClosed)
				}
				return
			}
			for deadline := time.Now().Add(testWait); pe.out.Load() != nil; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the ended companion is still the link's")
				}
			}
			within(t, a, func(p *Process) error { return p.Send(s, bigTagged(2)) })
			if !pe.isUp() || pe.out.Load() != nil {
				t.Fatalf("link up %v, companion %v: want the link up without one", pe.isUp(), pe.out.Load())
			}
		})
	}
}
