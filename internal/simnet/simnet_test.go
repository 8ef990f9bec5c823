package simnet_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/meshrt/mesh/internal/simnet"
)

// node is a simnet.Node whose replica records what the network did to it,
// one event a line: "n0: a1" (an ops frame from n0), "n0: snapshot 3" (n0's
// snapshot, taken after n0 had sent 3 frames), "down n0".
type node struct {
	simnet.Port
	name     string
	sent     int
	events   []string
	restarts int
}

func (n *node) Self() string                 { return n.name }
func (n *node) Replica() simnet.Replica      { return n }
func (n *node) Restart()                     { n.restarts++; n.events = append(n.events, "restart") }
func (n *node) NodeDown(node string)         { n.events = append(n.events, "down "+node) }
func (n *node) SnapshotTo(send func([]byte)) { send([]byte(strconv.Itoa(n.sent))) }
func (n *node) Handle(from string, frame []byte) error {
	n.events = append(n.events, from+": "+string(frame))
	return nil
}
func (n *node) Merge(from string, snapshot []byte) error {
	n.events = append(n.events, from+": snapshot "+string(snapshot))
	return nil
}

// send broadcasts the node's next frame, "n0#1", "n0#2", ...
func (n *node) send() {
	n.sent++
	n.Broadcast(fmt.Appendf(nil, "%s#%d", n.name, n.sent))
}

func newNet(t testing.TB, seed uint64, size int) (*simnet.Net, []*node) {
	var nodes []*node
	net := simnet.New(t, rand.New(rand.NewPCG(seed, seed)), size, func(i int, p simnet.Port) simnet.Node {
		nodes = append(nodes, &node{Port: p, name: fmt.Sprintf("n%d", i)})
		return nodes[i]
	})
	return net, nodes
}

// take returns the events recorded since the last take.
func (n *node) take() []string {
	e := n.events
	n.events = nil
	return e
}

func wantEvents(t *testing.T, n *node, want ...string) {
	t.Helper()
	if got := n.take(); !slices.Equal(got, want) {
		t.Errorf("%s: events %q, want %q", n.name, got, want)
	}
}

func TestNewConnectsEveryPairWithSnapshotsDue(t *testing.T) {
	net, nodes := newNet(t, 1, 3)
	for _, n := range nodes {
		wantEvents(t, n) // nothing sent before a sync step
	}
	for a := range nodes {
		for b := range nodes {
			if got := net.Connected(a, b); got != (a != b) {
				t.Errorf("Connected(%d, %d) = %v", a, b, got)
			}
		}
	}
	net.Flush()
	wantEvents(t, nodes[0], "n1: snapshot 0", "n2: snapshot 0")
	wantEvents(t, nodes[2], "n0: snapshot 0", "n1: snapshot 0")
}

func TestFramesArriveInOrderPerOrderedPair(t *testing.T) {
	net, n := newNet(t, 1, 3)
	net.Flush()
	n[0].take()
	n[2].take()
	n[0].send()
	n[0].send()
	n[1].send()
	n[0].send()
	n[1].send()
	// Pairs interleave as the deliveries pick them; each pair keeps its order.
	for _, p := range [][2]int{{1, 2}, {0, 2}, {0, 2}, {1, 2}, {0, 2}, {1, 0}, {1, 0}} {
		if !net.Deliver(p[0], p[1]) {
			t.Fatalf("Deliver(%d, %d): nothing in flight", p[0], p[1])
		}
	}
	wantEvents(t, n[2], "n1: n1#1", "n0: n0#1", "n0: n0#2", "n1: n1#2", "n0: n0#3")
	wantEvents(t, n[0], "n1: n1#1", "n1: n1#2")
	if net.Deliver(0, 2) || net.Deliver(1, 2) || net.Deliver(2, 0) {
		t.Fatal("a delivery from an empty link")
	}
}

// Over random runs without cuts, every frame reaches every peer once, in
// the order its sender sent them.
func TestNothingIsLostInsideALiveLink(t *testing.T) {
	for seed := range uint64(20) {
		net, nodes := newNet(t, seed, 4)
		mix := simnet.Mix{Deliver: 5, Ops: []simnet.Op{{Weight: 3, Do: func(i int) { nodes[i].send() }}}, Sync: 1}
		for range 300 {
			net.Step(mix)
		}
		net.Settle()
		for _, n := range nodes {
			next := make(map[string]int) // per sender, the number of the frame due next
			for _, e := range n.take() {
				from, frame, _ := strings.Cut(e, ": ")
				if strings.HasPrefix(frame, "snapshot") {
					continue
				}
				next[from]++
				if want := fmt.Sprintf("%s#%d", from, next[from]); frame != want {
					t.Fatalf("seed %d: %s got %s, want %s", seed, n.name, frame, want)
				}
			}
			for _, m := range nodes {
				if m != n && next[m.name] != m.sent {
					t.Fatalf("seed %d: %s got %d frames of %s's %d", seed, n.name, next[m.name], m.name, m.sent)
				}
			}
		}
	}
}

func TestACutDropsWhatIsInFlightAndEachEndNoticesLater(t *testing.T) {
	net, n := newNet(t, 1, 2)
	net.Flush()
	n[0].take()
	n[1].take()
	n[0].send() // in flight when the cut comes
	net.Cut(0, 1)
	if net.Deliver(0, 1) {
		t.Fatal("a frame crossed a cut link")
	}
	if !net.Connected(0, 1) || !net.Connected(1, 0) {
		t.Fatal("an end believes the connection gone before it noticed")
	}
	net.Heal(0, 1) // no: neither end has noticed
	n[0].send()    // into the void
	if net.Deliver(0, 1) {
		t.Fatal("a connection healed before its ends noticed the cut")
	}
	net.NoticeAllDown()
	wantEvents(t, n[0], "down n1")
	wantEvents(t, n[1], "down n0")
	if net.Connected(0, 1) || net.Connected(1, 0) {
		t.Fatal("an end still believes itself connected after noticing")
	}
	net.Heal(0, 1)
	n[0].send() // on the new connection, before its snapshot was taken
	net.Flush()
	wantEvents(t, n[1], "n0: n0#3", "n0: snapshot 3")
	wantEvents(t, n[0], "n1: snapshot 0")
}

func TestHealWaitsForBothEndsToNotice(t *testing.T) {
	for seed := range uint64(10) {
		net, n := newNet(t, seed, 2)
		net.Flush()
		net.Cut(1, 0)
		net.Step(simnet.Mix{NoticeDown: 1})
		net.Heal(0, 1)
		if net.Connected(0, 1) && net.Connected(1, 0) {
			t.Fatalf("seed %d: healed with one end still believing the old connection up", seed)
		}
		net.Step(simnet.Mix{NoticeDown: 1})
		net.Heal(0, 1)
		if !net.Connected(0, 1) || !net.Connected(1, 0) {
			t.Fatalf("seed %d: not healed after both ends noticed", seed)
		}
		if got := len(n[0].take()) + len(n[1].take()); got != 4 { // two snapshots, two downs
			t.Fatalf("seed %d: %d events, want 4", seed, got)
		}
	}
}

func TestRestartCutsEveryConnectionAndOnlyPeersNotice(t *testing.T) {
	net, n := newNet(t, 1, 3)
	net.Flush()
	for _, x := range n {
		x.take()
	}
	n[0].send()
	n[1].send()
	net.Restart(1)
	wantEvents(t, n[1], "restart")
	for b := range n {
		if net.Connected(1, b) {
			t.Errorf("the restarted node believes itself connected to %d", b)
		}
	}
	if !net.Connected(0, 1) || !net.Connected(2, 1) {
		t.Error("a peer noticed the restart before its notice step")
	}
	net.Flush() // only 0's frame to 2 is left
	wantEvents(t, n[2], "n0: n0#1")
	net.NoticeAllDown()
	wantEvents(t, n[0], "down n1")
	wantEvents(t, n[1])
	wantEvents(t, n[2], "down n1")
}

// known replays n's events as the replicas do and returns, per peer, how
// many of its frames n knows: a snapshot says how many the peer had sent, an
// ops frame adds one if the peer's snapshot was merged (and must be the next
// one), a notice or a restart forgets.
func known(t *testing.T, n *node) map[string]int {
	t.Helper()
	k := make(map[string]int)
	for _, e := range n.take() {
		if e == "restart" {
			clear(k)
			continue
		}
		if peer, ok := strings.CutPrefix(e, "down "); ok {
			delete(k, peer)
			continue
		}
		from, frame, _ := strings.Cut(e, ": ")
		if count, ok := strings.CutPrefix(frame, "snapshot "); ok {
			k[from], _ = strconv.Atoi(count)
			continue
		}
		if have, ok := k[from]; ok {
			if want := fmt.Sprintf("%s#%d", from, have+1); frame != want {
				t.Fatalf("%s got %s after %s's snapshot, want %s", n.name, frame, from, want)
			}
			k[from]++
		}
	}
	return k
}

// Settle leaves every connection up and nothing in flight, whatever the run
// before it did, and each node knows all that every peer sent.
func TestSettleHealsEveryConnectionAndDeliversEverything(t *testing.T) {
	for seed := range uint64(20) {
		net, nodes := newNet(t, seed, 4)
		mix := simnet.Mix{Deliver: 40, Ops: []simnet.Op{{Weight: 20, Do: func(i int) { nodes[i].send() }}},
			Cut: 10, NoticeDown: 10, Heal: 10, Sync: 8, Restart: 2}
		for range 300 {
			net.Step(mix)
		}
		net.Settle()
		for a, n := range nodes {
			k := known(t, n)
			for b, m := range nodes {
				if a == b {
					continue
				}
				if !net.Connected(a, b) {
					t.Fatalf("seed %d: %d not connected to %d after Settle", seed, a, b)
				}
				if net.Deliver(a, b) {
					t.Fatalf("seed %d: %d→%d still had a frame in flight", seed, a, b)
				}
				if got, ok := k[m.name]; !ok || got != m.sent {
					t.Fatalf("seed %d: %s knows %d of %s's %d frames (merged: %v)", seed, n.name, got, m.name, m.sent, ok)
				}
			}
		}
	}
}

func TestTheSameSeedIsTheSameRun(t *testing.T) {
	run := func() [][]string {
		net, nodes := newNet(t, 7, 4)
		mix := simnet.Mix{Deliver: 40, Ops: []simnet.Op{{Weight: 20, Do: func(i int) { nodes[i].send() }}},
			Cut: 10, NoticeDown: 10, Heal: 10, Sync: 8, Restart: 2}
		for range 200 {
			net.Step(mix)
		}
		net.Settle()
		var events [][]string
		for _, n := range nodes {
			events = append(events, n.take())
		}
		return events
	}
	if a, b := run(), run(); !slices.EqualFunc(a, b, slices.Equal) {
		t.Fatalf("two runs of one seed differ:\n%q\n%q", a, b)
	}
}

// errorsTB records what a test would report.
type errorsTB struct {
	testing.TB
	errs []string
}

func (e *errorsTB) Helper() {}
func (e *errorsTB) Errorf(format string, args ...any) {
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
}

func TestTheFirstFailurePrintsTheLogTail(t *testing.T) {
	tb := &errorsTB{TB: t}
	net, n := newNet(tb, 1, 2)
	net.Step(simnet.Mix{Ops: []simnet.Op{{Weight: 1, Do: func(i int) { net.Logf("op on %d", i) }}}})
	n[0].send()
	net.Flush()
	net.Failf("first %d", 1)
	net.Failf("second")
	if !net.Failed() || len(tb.errs) != 3 {
		t.Fatalf("Failed() = %v after %q", net.Failed(), tb.errs)
	}
	log := tb.errs[0]
	for _, line := range []string{"(1 steps taken)", "   0 heal 0-1", "   1 op on ", "   1 0→1: frame (4 bytes) = <nil>", "   1 1→0: snapshot (1 bytes) = <nil>"} {
		if !strings.Contains(log, line) {
			t.Errorf("the log lacks %q:\n%s", line, log)
		}
	}
	if tb.errs[1] != "first 1" || tb.errs[2] != "second" {
		t.Errorf("failures reported as %q", tb.errs[1:])
	}
}
