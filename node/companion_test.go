package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
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
	select {
	case s := <-got:
		if s != "4:xxxxxx" {
			t.Fatalf("got %q; want the fifth message", s)
		}
	case <-time.After(testWait):
		t.Fatal("the fifth message did not arrive")
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
			dialed := pe.compDialed
			pe.compMu.Unlock()
			if pe.features&wire.FeatureCompanion != 0 || dialed || pe.out.Load() != nil {
				t.Fatalf("features %b, companion dialled %v: want no companion", pe.features, dialed)
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

// A companion that this node's side ends (a local error, a slow consumer)
// cuts the link, acknowledged or not: items a sender was told were sent
// may be lost, and the link's end is how watchers hear of it.
func TestCompanionEndedHereCutsTheLink(t *testing.T) {
	a, b, s := pairSendingLarge(t, "a", "b", linkModes[0])
	c := waitCompanion(t, a, b)
	within(t, a, func(p *Process) error { return p.Send(s, bigTagged(1)) })
	waitAcked(t, c)
	pe := peerOf(a, b)
	_ = c.conn.Close(errors.New("test: companion cut"))
	select {
	case <-pe.down:
	case <-time.After(testWait):
		t.Fatal("the link stayed up")
	}
	if pe.why != ConnectionClosed {
		t.Fatalf("down reason %q; want %q", pe.why, ConnectionClosed)
	}
}

// A graceful end of the link by the peer (Disconnect, Stop) closes the
// peer's end of this node's companion; that is the peer's link ending,
// not a lost companion: the link goes down with the peer's reason. The
// peer closes its companions when its link ends, which is after this node
// read the goodbye in its usual order; the racy order, in which this node
// sees the companion closed by the peer while the goodbye is still on its
// way on the link's connection (the link's close on the peer cut short,
// this node's link reads late), is made here every run: the peer's end of
// the companion is closed as its link's end closes it, this node's
// companion has handled that close, and only then does the peer
// disconnect. (A companion closed by the peer cuts the link only if the
// link is still up a handshake timeout later: companion.OnClose.)
func TestPeersDisconnectIsNotALostCompanion(t *testing.T) {
	t.Run("the companion's close first", func(t *testing.T) {
		// The handshake timeout, after which a companion the peer closed
		// cuts a link still up, is kept past the test's own waits.
		a, b, _ := pairSendingLarge(t, "a", "b", linkModes[0], WithHandshakeTimeout(2*testWait))
		c := waitCompanion(t, a, b)
		// Everything on the companion is in, so the peer's close is a
		// clean one (close_notify), not a reset over unread data.
		waitAcked(t, c)
		pe, bpe := peerOf(a, b), peerOf(b, a)
		var in *companion
		eventually(t, "b's side of the companion", func() bool {
			bpe.compMu.Lock()
			defer bpe.compMu.Unlock()
			in = bpe.in
			return in != nil
		})
		_ = in.conn.Close(errLinkEnded) // as b's link's end closes it (closeCompanions)
		waitRecv(t, c.closed, "a's companion to see b's close")
		if err := b.Disconnect(a.Self()); err != nil && !errors.Is(err, ErrNotConnected) {
			t.Fatal(err)
		}
		waitRecv(t, pe.down, "a's link to go down")
		if pe.why != Disconnected {
			t.Fatalf("down reason %q; want %q", pe.why, Disconnected)
		}
	})
	t.Run("the goodbye first", func(t *testing.T) {
		a, b, _ := pairSendingLarge(t, "a", "b", linkModes[0])
		waitCompanion(t, a, b)
		pe := peerOf(a, b)
		if err := b.Disconnect(a.Self()); err != nil {
			t.Fatal(err)
		}
		waitRecv(t, pe.down, "a's link to go down")
		if pe.why != Disconnected {
			t.Fatalf("down reason %q; want %q", pe.why, Disconnected)
		}
	})
}

// waitAcked waits until the peer has acknowledged everything on c.
func waitAcked(t *testing.T, c *companion) {
	t.Helper()
	for deadline := time.Now().Add(testWait); c.acked.Load() < c.last.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the peer acknowledged %d of %d items on the companion", c.acked.Load(), c.last.Load())
		}
	}
}

// Every item on a companion is one frame, so the peer's count of frames
// handled reaches the sender's count of items: small items behind a large
// one included (a drain that merged them into one batch frame would leave
// the sender waiting for ever for acknowledgements).
//
// The small items follow the large one onto the companion only until the
// peer acknowledges it; on a busy machine the sender can be descheduled
// that long, and the rest go on the link's own connection. So the burst
// is sent again until every small item of one burst went on the companion.
func TestEveryCompanionItemIsAcknowledged(t *testing.T) {
	a, b, s := pairSendingLarge(t, "a", "b", linkModes[0])
	c := waitCompanion(t, a, b)
	for attempt := 1; ; attempt++ {
		waitAcked(t, c)
		before := c.last.Load()
		within(t, a, func(p *Process) error {
			if err := p.Send(s, bigTagged(attempt)); err != nil {
				return err
			}
			for i := range 50 { // behind it, on the companion
				if err := p.Send(s, fmt.Sprintf("%d:small", i)); err != nil {
					return err
				}
			}
			return nil
		})
		waitAcked(t, c)
		if c.last.Load()-before >= 3+50 { // the fragments of one message and the 50 behind it
			return
		}
		if attempt == 20 {
			t.Fatalf("in %d bursts, never the fragments and the 50 small ones on the companion (last: %d items)", attempt, c.last.Load()-before)
		}
	}
}

// The peer acknowledges at the end of a read that finished an item, not
// after a read of a large message's inner fragments alone: a message of
// 64 fragments, read in many reads, brings one Ack.
func TestOneAckForALargeMessage(t *testing.T) {
	a, b, s := pairSendingLarge(t, "a", "b", linkModes[0])
	c := waitCompanion(t, a, b)
	waitAcked(t, c)
	before, last := c.acksIn.Load(), c.last.Load()
	within(t, a, func(p *Process) error {
		return p.Send(s, strings.Repeat("x", 64*wireFragment-100))
	})
	waitAcked(t, c)
	if c.last.Load() < last+64 {
		t.Fatalf("the message took %d items on the companion; want its 64 fragments", c.last.Load()-last)
	}
	if n := c.acksIn.Load() - before; n != 1 {
		t.Fatalf("%d Acks for one large message; want 1", n)
	}
}

// A message of one fragment (its first fragment is its last) is
// acknowledged too: the sender counts it as a whole item, and a spawn
// after it waits for its Ack. Today's sender cuts no such message, but the
// wire takes it.
func TestAOneFragmentMessageIsAcknowledged(t *testing.T) {
	a, b, s := pairSendingLarge(t, "a", "b", linkModes[0])
	c := waitCompanion(t, a, b)
	waitAcked(t, c)
	pe := peerOf(a, b)
	term, err := codec.AppendTerm(nil, strings.Repeat("z", 1000))
	if err != nil {
		t.Fatal(err)
	}
	last := c.last.Load()
	within(t, a, func(p *Process) error {
		var f wire.Fragmenter
		f.ResetTerm(pe.fragID.Add(1), s.ID, p.pid.ID, nil, term, wireFragment)
		return pe.sendFragments(p.pid.ID, &f, wireFragment+wire.MaxFragmentOverhead)
	})
	if c.last.Load() != last+1 {
		t.Fatalf("%d items noted; want the one fragment", c.last.Load()-last)
	}
	waitAcked(t, c)
}

// A remote spawn right after a large message goes on the link's own
// connection once the message is in (the companion does not carry spawn
// requests): the spawn succeeds and the link stays up, in both modes.
func TestSpawnRightAfterALargeMessage(t *testing.T) {
	forEachLinkMode(t, func(t *testing.T, m linkMode) {
		a, b, s := pairSendingLarge(t, "a", "b", m)
		b.Define("idle", func(p *Process, _ []any) error { _, err := p.Receive(context.Background()); return err })
		within(t, a, func(p *Process) error {
			for i := range 3 {
				if err := p.Send(s, bigTagged(i+1)); err != nil {
					return err
				}
				if _, err := p.Spawn(b.Self(), "idle"); err != nil {
					return fmt.Errorf("spawn %d after a large message: %w", i, err)
				}
			}
			return nil
		})
		if !peerOf(a, b).isUp() {
			t.Fatal("the link went down")
		}
	})
}

// A Sync goes on the link's own connection whatever its sender's route:
// even while the sender ID has an item in flight on the companion (from 0
// is shared by every goroutine sending from outside a process), the peer
// answers it and the link stays up.
func TestSyncGoesOnTheLinksConnection(t *testing.T) {
	a, b, _ := pairSendingLarge(t, "a", "b", linkModes[0])
	c := waitCompanion(t, a, b)
	pe := peerOf(a, b)
	c.order.note(c, 0, loop.BulkTicket(1<<40)) // as if another goroutine's item were on its way
	if err := pe.syncMain(0); err != nil {
		t.Fatalf("syncMain: %v", err)
	}
	if !pe.isUp() {
		t.Fatal("the link went down")
	}
}

// Stop delivers what went on the companion before it: large messages whose
// Send returned, sent by processes of the stopping node, all arrive (the
// link's end closes its companion, so Stop waits for the peer's
// acknowledgement of the companion's data before its goodbye).
func TestStopDeliversTheCompanionsLargeMessages(t *testing.T) {
	quiet := WithTickTimeout(10 * time.Minute) // see TestStopDeliversLargeMessagesTheirSendAccepted
	a, b, _ := pairSendingLarge(t, "a", "b", linkModes[0], quiet)
	const senders, size = 4, 8 << 20
	within(t, b, func(p *Process) error {
		sent := make(chan error, senders)
		for i := range senders {
			a.SpawnFunc(func(q *Process) error {
				sent <- q.Send(p.Self(), bytes.Repeat([]byte{byte(i + 1)}, size))
				_, err := q.Receive(context.Background()) // until Stop kills it
				return err
			})
		}
		for range senders {
			if err := <-sent; err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			return err
		}
		seen := map[byte]bool{}
		for range senders {
			m, err := recv(p)
			if err != nil {
				return fmt.Errorf("a message never arrived (got %d): %w", len(seen), err)
			}
			got, ok := m.([]byte)
			if !ok || len(got) != size || !bytes.Equal(got, bytes.Repeat(got[:1], size)) || seen[got[0]] {
				return fmt.Errorf("got %T of %d bytes, want one of the %d MiB messages sent, once", m, len(got), size>>20)
			}
			seen[got[0]] = true
		}
		return nil
	})
}

// The link's cleanup runs after the last handler of the peer's companion:
// links a peer's process made through its companion before the link went
// down are all undone by the cleanup (none is made after it, none left).
// A sender alternates large messages and links to a set of local
// processes, and the link is cut while it does.
func TestLinkCleanupComesAfterTheCompanionsLastFrame(t *testing.T) {
	forEachLinkMode(t, func(t *testing.T, m linkMode) {
		for round := range 12 {
			a, b, s := pairSendingLarge(t, fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round), m)
			const n = 300
			targets := make([]PID, n)
			for i := range targets {
				targets[i] = b.SpawnFunc(func(q *Process) error {
					q.TrapExit(true)
					for {
						if _, err := q.Receive(context.Background()); err != nil {
							return err
						}
					}
				})
			}
			bpe, ape := peerOf(b, a), peerOf(a, b)
			var in *companion // b's end of a's companion (nil: one connection)
			for deadline := time.Now().Add(testWait); m.companion && in == nil; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("b holds no companion from a")
				}
				bpe.compMu.Lock()
				in = bpe.in
				bpe.compMu.Unlock()
			}
			var stop atomic.Bool
			var sender PID
			started, paused := make(chan struct{}), make(chan struct{})
			a.SpawnFunc(func(p *Process) error {
				sender = p.Self()
				close(started)
				defer func() { close(paused); _, _ = p.Receive(context.Background()) }()
				large := strings.Repeat("y", 70<<10) // fragments: on the companion
				for _, tg := range targets {
					if stop.Load() {
						return nil
					}
					if err := p.Send(s, large); err != nil {
						return nil
					}
					if err := p.Link(tg); err != nil {
						return nil
					}
				}
				return nil
			})
			waitRecv(t, started, "the sender to start")
			time.Sleep(time.Duration(round%6+1) * time.Millisecond) // cut at various points
			stop.Store(true)
			waitRecv(t, paused, "the sender to stop")
			_ = ape.conn.Close(errors.New("test: cut"))
			select {
			case <-bpe.down: // closed once the cleanup is done
			case <-time.After(testWait):
				t.Fatal("b's link did not go down")
			}
			if in != nil {
				// Closed before the cleanup; waited for here so that a
				// handler that ran after it would be seen below.
				select {
				case <-in.closed:
				case <-time.After(testWait):
					t.Fatal("b's end of the companion did not close")
				}
			}
			leaked := 0
			for _, tg := range targets {
				if q := b.local(tg); q != nil {
					q.mu.Lock()
					if q.rel != nil {
						if _, ok := q.rel.links[sender]; ok {
							leaked++
						}
					}
					q.mu.Unlock()
				}
			}
			if leaked > 0 {
				t.Fatalf("round %d: %d local processes still linked to %v after its link's cleanup", round, leaked, sender)
			}
		}
	})
}

// waitRecv waits until ch closes or yields a value, failing the test
// after testWait.
func waitRecv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testWait):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A companion that the peer's side ends for a reason of its own (here a
// local error at the peer) cuts the link at both ends: neither side keeps
// a link whose companion lost items, nor a dead companion.
func TestCompanionEndedByThePeerCutsTheLink(t *testing.T) {
	a, b, _ := pairSendingLarge(t, "a", "b", linkModes[0])
	ape, bpe := peerOf(a, b), peerOf(b, a)
	var in *companion
	for deadline := time.Now().Add(testWait); in == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b holds no companion from a")
		}
		bpe.compMu.Lock()
		in = bpe.in
		bpe.compMu.Unlock()
	}
	_ = in.conn.Close(errors.New("test: the peer's end fails"))
	waitRecv(t, bpe.down, "b's link to go down")
	waitRecv(t, ape.down, "a's link to go down")
}

// pairSendingLarge starts nodes an and bn with opts, connects them, and
// sends one large message from a process of a to a sink process on b,
// which it returns; in mode m's companion mode it waits until a's
// companion to b is up.
func pairSendingLarge(t *testing.T, an, bn string, m linkMode, opts ...Option) (a, b *Node, sink PID) {
	t.Helper()
	opts = append(m.opts[:len(m.opts):len(m.opts)], opts...)
	a, b = startNamed(t, an, "c", opts...), startNamed(t, bn, "c", opts...)
	connect(t, a, b)
	sink = sinkOn(b)
	within(t, a, func(p *Process) error { return p.Send(sink, bigTagged(0)) })
	m.ready(t, a, b)
	return a, b, sink
}

// failingCompanions is a linker whose first companion dials fail: before
// any contact with the peer, or (late) after the peer admitted the
// companion, as when this side's handshake gave up just after the peer's
// admission.
type failingCompanions struct {
	linker
	fail  int32 // dials to fail
	late  bool
	dials atomic.Int32
	mu    sync.Mutex
	at    []time.Time // when each dial began
}

var errTestDial = errors.New("test: companion dial refused")

func (l *failingCompanions) dialCompanion(ctx context.Context, addr, name string) (link, *peerInfo, error) {
	l.mu.Lock()
	l.at = append(l.at, time.Now())
	l.mu.Unlock()
	fail := l.dials.Add(1) <= l.fail
	if fail && !l.late {
		return nil, nil, errTestDial
	}
	c, info, err := l.linker.dialCompanion(ctx, addr, name)
	if fail && err == nil {
		closeUnstarted(c, errTestDial)
		return nil, nil, errTestDial
	}
	return c, info, err
}

// A companion whose dial failed is dialled again at a later large message
// (after a backoff): the link does not stay on one connection for its
// life. Meanwhile large messages go on the link's own connection.
func TestAFailedCompanionDialIsRetried(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	fl := &failingCompanions{linker: a.links, fail: 2}
	a.links = fl
	connect(t, a, b)
	s := sinkOn(b)
	within(t, a, func(p *Process) error {
		for i, deadline := 0, time.Now().Add(testWait/2); time.Now().Before(deadline); i++ {
			if err := p.Send(s, bigTagged(i)); err != nil {
				return err
			}
			if pe := peerOf(a, b); pe != nil && pe.out.Load() != nil {
				return nil
			}
			time.Sleep(5 * time.Millisecond) // the backoff passes
		}
		return fmt.Errorf("no companion after %d failed dials", fl.dials.Load())
	})
	if n := fl.dials.Load(); n != 3 {
		t.Fatalf("%d companion dials; want 3 (two failed)", n)
	}
	// The backoff's lower bounds (companionRetryAfter): each dial waited
	// at least its time after the failure before it.
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for i, want := range []time.Duration{companionRetryAfter(1), companionRetryAfter(2)} {
		if gap := fl.at[i+1].Sub(fl.at[i]); gap < want {
			t.Errorf("dial %d came %v after dial %d; want at least %v", i+2, gap, i+1, want)
		}
	}
	if !peerOf(a, b).isUp() {
		t.Fatal("the link went down")
	}
}

// A companion dial that fails here after the peer admitted the companion
// (this side closes it unused) costs the link nothing: the peer does not
// count the closed companion as one that lost data, and the retry's
// companion is admitted.
func TestALateFailedCompanionDialKeepsTheLink(t *testing.T) {
	const hs = 500 * time.Millisecond // the peer's wait before it cuts for a lost companion
	a, b := startNamed(t, "a", "c", WithHandshakeTimeout(hs)), startNamed(t, "b", "c", WithHandshakeTimeout(hs))
	fl := &failingCompanions{linker: a.links, fail: 1, late: true}
	a.links = fl
	connect(t, a, b)
	pa, pb := peerOf(a, b), peerOf(b, a)
	s := sinkOn(b)
	within(t, a, func(p *Process) error {
		for i, end := 0, time.Now().Add(4*hs); time.Now().Before(end) || pa.out.Load() == nil; i++ {
			if err := p.Send(s, bigTagged(i)); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
			if time.Since(end) > testWait/2 {
				return fmt.Errorf("no companion after %d dials", fl.dials.Load())
			}
		}
		return nil
	})
	if !pa.isUp() || peerOf(a, b) != pa || !pb.isUp() || peerOf(b, a) != pb {
		t.Fatalf("the link was cut (a's side up %v, b's %v)", pa.isUp(), pb.isUp())
	}
}

// The companion's reassembler draws on the link's quota: the two
// connections of a link share one set of reassembly limits.
func TestTheCompanionSharesTheLinksReassemblyLimits(t *testing.T) {
	a, b, _ := pairSendingLarge(t, "a", "b", linkModes[0])
	waitCompanion(t, a, b)
	pe := peerOf(b, a)
	var in *companion
	eventually(t, "b's side of the companion", func() bool {
		pe.compMu.Lock()
		defer pe.compMu.Unlock()
		in = pe.in
		return in != nil
	})
	if in.rx.reasm.Quota() != pe.quota || pe.rx.reasm.Quota() != pe.quota {
		t.Fatal("the link's connections draw on reassembly quotas of their own")
	}
}

func TestCompanionRetryAfter(t *testing.T) {
	for _, c := range []struct {
		fails int
		want  time.Duration
	}{
		{0, 0}, {1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {5, 1600 * time.Millisecond},
		{9, 25600 * time.Millisecond}, {10, 30 * time.Second}, {11, 30 * time.Second}, {1 << 30, 30 * time.Second},
	} {
		if got := companionRetryAfter(c.fails); got != c.want {
			t.Errorf("companionRetryAfter(%d) = %v; want %v", c.fails, got, c.want)
		}
	}
}

// A spawn request that waits for its parent's companion items to be
// acknowledged waits no longer than the spawn timeout: an Ack that never
// comes fails the spawn (context.DeadlineExceeded), as a reply that never
// comes does, and the link stays up.
func TestASpawnWaitingForAnAckEndsAtTheSpawnTimeout(t *testing.T) {
	a, b, _ := pairSendingLarge(t, "a", "b", linkModes[0], WithSpawnTimeout(200*time.Millisecond))
	c := waitCompanion(t, a, b)
	b.Define("idle", func(p *Process, _ []any) error { _, err := p.Receive(context.Background()); return err })
	within(t, a, func(p *Process) error {
		c.note(p.pid.ID, loop.BulkTicket(1<<40), false) // an item the peer will never acknowledge (not a whole one: Stop does not wait for it)
		_, err := p.Spawn(b.Self(), "idle")
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("spawn behind an item never acknowledged: %v; want a deadline error", err)
		}
		return nil
	})
	if !peerOf(a, b).isUp() {
		t.Fatal("the link went down")
	}
}
