package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/memlink"
)

func TestBackoffDelay(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		attempt     int
		base, limit time.Duration
		r           float64
		want        time.Duration
	}{
		{0, 100 * ms, 5000 * ms, 0, 50 * ms},         // half of base at least
		{0, 100 * ms, 5000 * ms, 0.5, 75 * ms},       // jitter fills the other half
		{0, 100 * ms, 5000 * ms, 0.999999, 100 * ms}, // never more than the step
		{1, 100 * ms, 5000 * ms, 0, 100 * ms},        // doubles
		{3, 100 * ms, 5000 * ms, 0, 400 * ms},        // 800 ms step
		{5, 100 * ms, 5000 * ms, 1, 3200 * ms},       // 3.2 s step
		{6, 100 * ms, 5000 * ms, 0, 2500 * ms},       // capped at 5 s
		{6, 100 * ms, 5000 * ms, 1, 5000 * ms},       // capped at 5 s
		{1000, 100 * ms, 5000 * ms, 1, 5000 * ms},    // no overflow far out
		{-1, 100 * ms, 5000 * ms, 0, 50 * ms},        // a negative attempt is the first
		{2, 100 * ms, 50 * ms, 0, 50 * ms},           // a limit below base is base
		{0, 0, 5000 * ms, 0.5, 0},                    // no base, no wait
		{0, 100 * ms, 5000 * ms, -3, 50 * ms},        // r out of range is clamped
		{0, 100 * ms, 5000 * ms, 7, 100 * ms},
	} {
		got := backoffDelay(tc.attempt, tc.base, tc.limit, tc.r)
		if d := got - tc.want; d < -ms || d > ms {
			t.Errorf("backoffDelay(%d, %v, %v, %v) = %v, want %v", tc.attempt, tc.base, tc.limit, tc.r, got, tc.want)
		}
	}
}

// fastRedial makes redials quick for tests.
var fastRedial = WithRedialBackoff(10*time.Millisecond, 200*time.Millisecond)

func connected(n *Node, names ...string) bool {
	l := n.List()
	for _, name := range names {
		if !slices.Contains(l, name) {
			return false
		}
	}
	return true
}

func TestSeedsFormAClusterThatHealsAfterAPartition(t *testing.T) {
	nw := memlink.NewNetwork()
	a := startNamed(t, "a", "c", fastRedial, onNet(nw))
	b := startNamed(t, "b", "c", fastRedial, onNet(nw), WithSeeds(a.Self()))
	c := startNamed(t, "c", "c", fastRedial, onNet(nw), WithSeeds(a.Self(), "c@127.0.0.1:1")) // its own name is skipped
	eventually(t, "a full mesh from seeds", func() bool {
		return connected(a, b.Self(), c.Self()) && connected(b, a.Self(), c.Self()) && connected(c, a.Self(), b.Self())
	})
	// b and c met through gossip, not as seeds: they redial each other
	// all the same, with no Connect anywhere.
	b.partition(c.Self())
	c.partition(b.Self())
	if connected(b, c.Self()) {
		t.Fatal("b still lists c after the partition")
	}
	b.heal(c.Self())
	c.heal(b.Self())
	eventually(t, "b and c reconnect by themselves", func() bool {
		return connected(b, c.Self()) && connected(c, b.Self())
	})
}

func TestRestartedSeedIsRejoined(t *testing.T) {
	b1 := startNamed(t, "b", "c")
	name := b1.Self()
	a := startNamed(t, "a", "c", fastRedial, WithSeeds(name))
	eventually(t, "a joins its seed", func() bool { return connected(a, name) })
	stopNode(t, b1)
	eventually(t, "a sees b go", func() bool { return !connected(a, name) })
	nn, _ := parseName(name)
	b2, err := Start(name, "c", WithListen(fmt.Sprintf("127.0.0.1:%d", nn.port)))
	if err != nil {
		t.Fatal(err)
	}
	defer stopNode(t, b2)
	eventually(t, "a rejoins the restarted seed", func() bool { return connected(a, name) && connected(b2, a.Self()) })
	a.peersMu.Lock()
	inc := a.peers[name].incarnation
	a.peersMu.Unlock()
	if inc != b2.incarnation {
		t.Fatalf("a's connection to %s is of incarnation %x, want the new run's %x", name, inc, b2.incarnation)
	}
}

type discoveryFunc func(context.Context) ([]string, error)

func (f discoveryFunc) Discover(ctx context.Context) ([]string, error) { return f(ctx) }

func TestDiscoveryConnectsToWhatItReturns(t *testing.T) {
	b := startNamed(t, "b", "c")
	c := startNamed(t, "c", "c")
	names := make(chan []string, 1)
	names <- []string{b.Self()}
	var last []string
	disc := discoveryFunc(func(context.Context) ([]string, error) {
		select {
		case last = <-names:
		default:
		}
		return last, nil
	})
	a := startNamed(t, "a", "c", fastRedial, WithDiscovery(disc), WithDiscoveryInterval(MinDiscoveryInterval))
	eventually(t, "a connects to the discovered b", func() bool { return connected(a, b.Self()) })
	names <- []string{b.Self(), c.Self(), "not a name", a.Self()}
	eventually(t, "a connects to the discovered c", func() bool { return connected(a, b.Self(), c.Self()) })
}

func TestGossipDialsAreBoundedAndDeduplicated(t *testing.T) {
	a := startNamed(t, "a", "c", fastRedial)
	// 300 node lists naming 64 nodes nobody serves (port 1 refuses at once
	// on loopback), as a hostile or confused peer could send.
	var names []string
	for i := range 64 {
		names = append(names, fmt.Sprintf("ghost%d@127.0.0.1:1", i))
	}
	for range 300 {
		a.learnNodes(nil, names)
	}
	d := a.dials
	d.mu.Lock()
	targets, peak := len(d.targets), d.peak
	d.mu.Unlock()
	if targets > len(names) || peak > maxConcurrentDials {
		t.Fatalf("%d targets, %d dials at once; want at most %d and %d", targets, peak, len(names), maxConcurrentDials)
	}
	// A gossiped name that cannot be reached is given up after a few tries.
	eventually(t, "the ghosts are given up", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.targets) == 0
	})
}

// A peer lost while the dial that connected it has not reported yet stays
// a target: the dial's success must not drop it (a restarted seed was
// never redialled when its Stop beat the dial's report).
func TestPeerLostBeforeItsDialReportsIsRedialled(t *testing.T) {
	a := startNamed(t, "a", "c", WithRedialBackoff(time.Hour, time.Hour))
	d := a.dials
	const name = "b@127.0.0.1:1"
	d.mu.Lock()
	d.targets[name] = &dialTarget{addr: "127.0.0.1:1", why: whyGossip, dialing: true}
	d.dialing++
	d.mu.Unlock()
	d.lost(name, false) // the connection ended, the dial has not reported
	d.dialed(name, nil) // the dial reports its success
	d.mu.Lock()
	tg := d.targets[name]
	d.mu.Unlock()
	if tg == nil || tg.dialing || tg.relost || tg.why != whyLost {
		t.Fatalf("target after the late success: %+v; want a lost peer due for a redial", tg)
	}
	// And a peer that stopped gracefully is not: its dial's success drops it.
	const other = "c@127.0.0.1:1"
	d.mu.Lock()
	d.targets[other] = &dialTarget{addr: "127.0.0.1:1", why: whyGossip, dialing: true}
	d.dialing++
	d.mu.Unlock()
	d.lost(other, true)
	d.dialed(other, nil)
	d.mu.Lock()
	tg = d.targets[other]
	d.mu.Unlock()
	if tg != nil {
		t.Fatalf("a gracefully stopped gossiped peer is still a target: %+v", tg)
	}
}

// Of each pair exactly one end dials first, and the duty is spread: every
// node of a 50-node cluster dials first between a quarter and three
// quarters of its peers.
func TestDialsFirstIsOneEndOfEachPairAndBalanced(t *testing.T) {
	var names []string
	for i := range 50 {
		names = append(names, fmt.Sprintf("s%d@127.0.0.1:%d", i, 40000+i))
	}
	for _, a := range names {
		first := 0
		for _, b := range names {
			if a == b {
				continue
			}
			if dialsFirst(a, b) == dialsFirst(b, a) {
				t.Fatalf("dialsFirst(%s, %s) = dialsFirst(%s, %s)", a, b, b, a)
			}
			if dialsFirst(a, b) {
				first++
			}
		}
		if first < 12 || first > 37 {
			t.Errorf("%s dials first %d of its 49 peers", a, first)
		}
	}
}

// The wait before dialling a gossiped name: a newcomer dials at once; a
// node introduced to it waits introDefer and introPerPeer per peer (plus
// jitter, and once more when the other end dialsFirst), so the newcomer's
// dial comes first; plain
// gossip dials at the end dialsFirst names and defers at the other.
func TestGossipDelay(t *testing.T) {
	tests := []struct {
		name     string
		how      gossipHow
		first    bool
		peers    int
		r        float64
		min, max time.Duration
	}{
		{"newcomer", gossipJoin, false, 50, 0.5, 0, 0},
		{"newcomer, first end", gossipJoin, true, 50, 0.5, 0, 0},
		{"introduced, first end, no jitter", gossipIntro, true, 0, 0, introDefer, introDefer},
		{"introduced, first end, most jitter", gossipIntro, true, 0, 0.999, introDefer, 2 * introDefer},
		{"introduced, other end", gossipIntro, false, 0, 0, 2 * introDefer, 2 * introDefer},
		{"introduced, other end, most jitter", gossipIntro, false, 0, 0.999, 2 * introDefer, 3 * introDefer},
		{"introduced, 50 peers", gossipIntro, true, 50, 0, introDefer + 50*introPerPeer, introDefer + 50*introPerPeer},
		{"gossip, first end", gossipPair, true, 50, 0.7, 0, 0},
		{"gossip, other end", gossipPair, false, 50, 0, gossipDefer, gossipDefer},
		{"gossip, other end, most jitter", gossipPair, false, 50, 0.999, gossipDefer, 2 * gossipDefer},
	}
	for _, tt := range tests {
		got := gossipDelay(tt.how, tt.first, tt.peers, tt.r)
		if got < tt.min || got > tt.max {
			t.Errorf("%s: gossipDelay = %v, want within [%v, %v]", tt.name, got, tt.min, tt.max)
		}
	}
}

// An introduction never reaches a peer before the node list its link came
// up with. The hub takes two newcomers' first lists (and introduces them)
// just as a third node's link counts as up there and before its list is
// queued, the window where a mesh formed with ticks off once missed a pair
// for a minute: the third node took the first introduction for its list,
// the second made it wait introDefer for that name, and its real list,
// taken for gossip, did not shorten the wait.
func TestIntroductionDoesNotOvertakeTheLinkUpList(t *testing.T) {
	nw := memlink.NewNetwork()
	quiet := WithTickTimeout(time.Hour) // nothing but the lists meshes the nodes
	hub := startNamed(t, "hub", "c", quiet, onNet(nw))
	x1 := startNamed(t, "x1", "c", quiet, onNet(nw), WithSeeds(hub.Self()))
	x2 := startNamed(t, "x2", "c", quiet, onNet(nw), WithSeeds(hub.Self()))
	eventually(t, "x1, x2 and the hub meshed", func() bool {
		return connected(hub, x1.Self(), x2.Self()) && connected(x1, x2.Self()) && connected(x2, x1.Self())
	})
	var once sync.Once
	var ran atomic.Bool
	hook := func(pe *peer) {
		if pe.n != hub || !strings.HasPrefix(pe.name, "a@") {
			return
		}
		// x1's and x2's first lists arrive now (a late read of their
		// links): each names only the hub, so the hub introduces them.
		once.Do(func() {
			ran.Store(true)
			for _, x := range []*Node{x1, x2} {
				hub.learnNodes(&peer{n: hub, name: x.Self()}, []string{hub.Self()})
			}
		})
	}
	testHookLinkUp.Store(&hook)
	t.Cleanup(func() { testHookLinkUp.Store(nil) })
	a := startNamed(t, "a", "c", quiet, onNet(nw), WithSeeds(hub.Self()))
	// a's list from the hub names x1 and x2 (both were up there before
	// it): a dials both at once, or, had an introduction been taken for
	// that list, waits introDefer for one of them.
	waitsOnIntro := func(name string) bool {
		d := a.dials
		d.mu.Lock()
		defer d.mu.Unlock()
		tg := d.targets[name]
		return tg != nil && !tg.dialing && time.Until(tg.due) > 2*gossipDefer
	}
	eventually(t, "a meshed with x1 and x2, or waiting on an introduction", func() bool {
		return connected(a, x1.Self(), x2.Self()) || waitsOnIntro(x1.Self()) || waitsOnIntro(x2.Self())
	})
	if !connected(a, x1.Self(), x2.Self()) {
		t.Fatalf("a is connected to %v and waits an introduction's delay to dial the rest of its link-up list", a.List())
	}
	if !ran.Load() {
		t.Fatal("a's link came up at the hub without the hook: the case was not tested")
	}
}
