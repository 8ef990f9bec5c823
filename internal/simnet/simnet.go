// Package simnet is the simulated network of the cluster's convergence
// tests: an in-memory full mesh of n nodes, each holding a replica of some
// replicated state (the global name registry, the process groups), driven
// step by step by one seeded math/rand/v2 source, so that a seed names one
// run and a failing run can be replayed.
//
// # What it models
//
// Every ordered pair of nodes (a, b) has a link a→b: a FIFO queue of frames.
// A frame a node broadcasts goes onto each of its links that is up, in call
// order; a delivery takes the head of one queue and hands it to the
// receiver's replica. So, per ordered pair, frames arrive in the order they
// were sent, and none is lost, duplicated or reordered while the link stays
// up (what one TLS connection gives); across pairs, deliveries interleave in
// whatever order the rand picks.
//
// The two links of a pair form a connection, which comes and goes whole:
//
//   - A cut takes both directions down and drops every frame in flight on
//     them. Each end notices later, on its own, at a step the rand picks
//     (its replica's NodeDown), as a real node notices a broken connection
//     only when a read fails or a tick times out. Until then the node
//     believes it is still connected (Connected) while what it broadcasts
//     to that peer goes nowhere.
//   - A heal brings the connection back once both ends have noticed the old
//     one down (a node does not dial a peer it believes connected). Both
//     links carry broadcast frames at once; each end's snapshot is taken and
//     queued at a later sync step, behind any ops frames broadcast in
//     between. The replicas ignore ops of a peer whose snapshot they have
//     not merged, and the snapshot, taken later, holds those ops' effect.
//   - A restart stops a node and starts it again with empty state: its
//     connections are cut, it forgets every peer at once (it notices
//     nothing: its pending notices are dropped), and the peers notice later.
//   - Settling ends a run: every pending notice happens, every connection
//     heals, and every snapshot and frame is delivered, in an order the rand
//     picks, until nothing is in flight and every node is connected to every
//     other.
//
// # What it does not model
//
// No loss, duplication or reordering inside a live link; no link that is up
// one way only; no time (only the order of events); no backpressure (queues
// are unbounded, bounded in practice by the number of steps); no
// concurrency: everything, replicas included, runs on the test's goroutine,
// so the replicas' locking is left to the race tests; no handshake or
// transport. A step is one event, not one round of the cluster.
//
// # Failure output
//
// The net keeps a log of every event, each line headed by the number of
// steps taken so far; the test adds its own lines (Logf). The first Failf of
// a run prints the log's tail before the failure, and the test names the
// seed. Lines are formatted only then: a passing run pays for a few words
// per event, not for formatting them.
package simnet

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Replica is what the network does to one node's replicated state. It is
// the method set the global registry's and the process groups' replicas
// share; the net calls it only from the test's goroutine.
type Replica interface {
	// Handle applies an ops frame that node from broadcast.
	Handle(from string, frame []byte) error
	// Merge installs from's snapshot, which from sends at a sync step after
	// each heal.
	Merge(from string, snapshot []byte) error
	// NodeDown tells the replica that its node noticed node is down.
	NodeDown(node string)
	// SnapshotTo passes the replica's snapshot for a peer to send.
	SnapshotTo(send func(frame []byte))
}

// Node is one simulated node, implemented by the test.
type Node interface {
	// Self is the node's name, as the other replicas know it.
	Self() string
	// Replica is the node's replica of its current incarnation.
	Replica() Replica
	// Restart starts the node again with a new incarnation and empty state
	// (a new replica, no live processes). The net has cut its connections.
	Restart()
}

// Describer is implemented by a Node that can say what a frame it receives
// holds, for the log; without it the log says how many bytes. Describe is
// called only when the log is printed, so it must depend on its arguments
// alone (frames are never changed once sent).
type Describer interface {
	Describe(from string, f Frame) string
}

// Frame is one message in flight.
type Frame struct {
	Snapshot bool // a snapshot (for Merge) rather than an ops frame (for Handle)
	Data     []byte
}

// Op is one of the test's own kinds of step (a registration, a join), run
// on node i, drawn uniformly.
type Op struct {
	Weight int
	Do     func(i int)
}

// Mix is the weight of each kind of step; at least one must be positive.
// Step draws one with probability weight/total, in the order the fields are
// listed, so that a test's seeds keep their meaning only while its Mix
// stays the same.
type Mix struct {
	// Deliver tries up to four random ordered pairs and delivers the head
	// of the first link with something in flight.
	Deliver int
	// Ops are the test's own steps, each run on the first node drawn.
	Ops []Op
	// Cut cuts the connection of a random pair (see Net.Cut).
	Cut int
	// NoticeDown lets one random end of a cut connection notice it.
	NoticeDown int
	// Heal heals the connection of a random pair (see Net.Heal).
	Heal int
	// Sync sends one random due snapshot.
	Sync int
	// Restart restarts a random node (see Net.Restart).
	Restart int
}

type pair struct{ a, b int }

type link struct {
	up bool
	q  []Frame
}

// Net is the simulated network of one run. Its methods are for the test's
// goroutine only.
type Net struct {
	tb     testing.TB
	rng    *rand.Rand
	nodes  []Node
	links  [][]link // links[a][b] carries a→b
	conn   [][]bool // conn[a][b]: a believes it is connected to b
	detect []pair   // a has yet to notice that its connection to b is gone
	syncs  []pair   // a has yet to send its snapshot to b
	steps  int
	log    []line
	failed bool
}

// New returns a network of size nodes, newNode(i, port) making node i,
// fully connected through the heal path: every snapshot is due, none sent
// yet. rng drives every choice the net makes; the test may draw from it too.
func New(tb testing.TB, rng *rand.Rand, size int, newNode func(i int, p Port) Node) *Net {
	n := &Net{tb: tb, rng: rng}
	n.links = make([][]link, size)
	n.conn = make([][]bool, size)
	for a := range size {
		n.links[a] = make([]link, size)
		n.conn[a] = make([]bool, size)
	}
	for i := range size {
		n.nodes = append(n.nodes, newNode(i, n.Port(i)))
	}
	for a := range size {
		for b := a + 1; b < size; b++ {
			n.Heal(a, b)
		}
	}
	return n
}

// line is a log line, formatted only if the log is printed.
type line struct {
	step   int
	format string
	args   []any
}

func (l line) String() string { return fmt.Sprintf("%4d ", l.step) + fmt.Sprintf(l.format, l.args...) }

// Logf adds a line to the run's log. The arguments are formatted only if
// the log is printed, after the run: pass values, not maps or slices the
// test changes later.
func (n *Net) Logf(format string, args ...any) {
	n.log = append(n.log, line{n.steps, format, args})
}

// Failf reports a failure of the run (tb.Errorf); the first one prints the
// log's last 60 lines before it.
func (n *Net) Failf(format string, args ...any) {
	n.tb.Helper()
	if !n.failed {
		n.failed = true
		from := max(0, len(n.log)-60)
		var b strings.Builder
		for _, l := range n.log[from:] {
			b.WriteString("\n" + l.String())
		}
		n.tb.Errorf("last %d log lines of %d (%d steps taken):%s", len(n.log)-from, len(n.log), n.steps, b.String())
	}
	n.tb.Errorf(format, args...)
}

// Failed reports whether Failf was called.
func (n *Net) Failed() bool { return n.failed }

// Connected reports whether node a believes it is connected to node b: from
// a heal until a notices a cut or restarts.
func (n *Net) Connected(a, b int) bool { return n.conn[a][b] }

// Port is node i's attachment to the net, with the two methods of the
// replicas' Host interfaces that the net answers: embed it in the test's
// node. The zero Port belongs to a node outside any net, which broadcasts
// to nobody and is connected to nobody.
type Port struct {
	net *Net
	i   int
}

// Port returns node i's Port (New passes it to newNode).
func (n *Net) Port(i int) Port { return Port{net: n, i: i} }

// Broadcast queues frame on each of the node's links that is up.
func (p Port) Broadcast(frame []byte) {
	if p.net != nil {
		p.net.Broadcast(p.i, frame)
	}
}

// Connected reports whether the node believes it is connected to the node
// named node.
func (p Port) Connected(node string) bool {
	if p.net == nil {
		return false
	}
	for b, m := range p.net.nodes {
		if m.Self() == node {
			return p.net.conn[p.i][b]
		}
	}
	return false
}

// Broadcast queues frame on each link from node from that is up.
func (n *Net) Broadcast(from int, frame []byte) {
	for b := range n.links[from] {
		if l := &n.links[from][b]; b != from && l.up {
			l.q = append(l.q, Frame{Data: frame})
		}
	}
}

// Deliver hands the frame at the head of link a→b to b's replica, reporting
// whether there was one (false on a link that is down).
func (n *Net) Deliver(a, b int) bool {
	l := &n.links[a][b]
	if !l.up || len(l.q) == 0 {
		return false
	}
	f := l.q[0]
	l.q = l.q[1:]
	from := n.nodes[a].Self()
	r := n.nodes[b].Replica()
	var err error
	if f.Snapshot {
		err = r.Merge(from, f.Data)
	} else {
		err = r.Handle(from, f.Data)
	}
	n.Logf("%d→%d: %v = %v", a, b, delivery{n.nodes[b], from, f}, err)
	if err != nil {
		n.Failf("%d→%d: %v", a, b, err)
	}
	return true
}

// delivery describes a frame for the log.
type delivery struct {
	to   Node
	from string
	f    Frame
}

func (d delivery) String() string {
	if x, ok := d.to.(Describer); ok {
		return x.Describe(d.from, d.f)
	}
	if d.f.Snapshot {
		return fmt.Sprintf("snapshot (%d bytes)", len(d.f.Data))
	}
	return fmt.Sprintf("frame (%d bytes)", len(d.f.Data))
}

// Cut takes the connection of a and b down, both ways, dropping what is in
// flight on it and any snapshot not yet sent; each end is to notice later.
// A connection already down stays as it is.
func (n *Net) Cut(a, b int) {
	if !n.links[a][b].up {
		return
	}
	n.Logf("cut %d-%d", a, b)
	for _, p := range []pair{{a, b}, {b, a}} {
		n.links[p.a][p.b] = link{}
		n.syncs = slices.DeleteFunc(n.syncs, func(s pair) bool { return s == p })
		n.detect = append(n.detect, p)
	}
}

// NoticeAllDown lets every end of a cut connection notice it, in the order
// of the cuts.
func (n *Net) NoticeAllDown() {
	for len(n.detect) > 0 {
		n.noticeDown(0)
	}
}

func (n *Net) noticeDown(k int) {
	p := n.detect[k]
	n.detect = slices.Delete(n.detect, k, k+1)
	n.Logf("%d: NodeDown(%d)", p.a, p.b)
	n.conn[p.a][p.b] = false
	n.nodes[p.a].Replica().NodeDown(n.nodes[p.b].Self())
}

// Heal reconnects a and b if both believe they are not connected (and does
// nothing otherwise): both links carry broadcasts from now on, and each
// end's snapshot is due.
func (n *Net) Heal(a, b int) {
	if n.links[a][b].up || n.conn[a][b] || n.conn[b][a] {
		return
	}
	n.Logf("heal %d-%d", a, b)
	for _, p := range []pair{{a, b}, {b, a}} {
		n.links[p.a][p.b].up = true
		n.conn[p.a][p.b] = true
		n.syncs = append(n.syncs, p)
	}
}

func (n *Net) sync(k int) {
	p := n.syncs[k]
	n.syncs = slices.Delete(n.syncs, k, k+1)
	n.Logf("%d→%d: snapshot", p.a, p.b)
	l := &n.links[p.a][p.b]
	n.nodes[p.a].Replica().SnapshotTo(func(f []byte) { l.q = append(l.q, Frame{Snapshot: true, Data: f}) })
}

// Restart stops node i, whose processes die with it, and starts it again
// (Node.Restart): its connections are cut, it believes itself connected to
// nobody, and only its peers will notice.
func (n *Net) Restart(i int) {
	n.Logf("restart %d", i)
	for b := range n.nodes {
		if b != i {
			n.Cut(i, b)
		}
	}
	n.detect = slices.DeleteFunc(n.detect, func(p pair) bool { return p.a == i })
	clear(n.conn[i])
	n.nodes[i].Restart()
}

// Step takes one random step of the run: it draws two nodes i and j (maybe
// the same), then a kind of step by m's weights, and runs it on them.
func (n *Net) Step(m Mix) {
	n.steps++
	nn := len(n.nodes)
	i, j := n.rng.IntN(nn), n.rng.IntN(nn)
	total := m.Deliver + m.Cut + m.NoticeDown + m.Heal + m.Sync + m.Restart
	for _, op := range m.Ops {
		total += op.Weight
	}
	w := n.rng.IntN(total)
	if w -= m.Deliver; w < 0 {
		for range 4 {
			if n.Deliver(i, j) {
				return
			}
			i, j = n.rng.IntN(nn), n.rng.IntN(nn)
		}
		return
	}
	for _, op := range m.Ops {
		if w -= op.Weight; w < 0 {
			op.Do(i)
			return
		}
	}
	switch {
	case w < m.Cut:
		if i != j {
			n.Cut(i, j)
		}
	case w < m.Cut+m.NoticeDown:
		if len(n.detect) > 0 {
			n.noticeDown(n.rng.IntN(len(n.detect)))
		}
	case w < m.Cut+m.NoticeDown+m.Heal:
		if i != j {
			n.Heal(i, j)
		}
	case w < m.Cut+m.NoticeDown+m.Heal+m.Sync:
		if len(n.syncs) > 0 {
			n.sync(n.rng.IntN(len(n.syncs)))
		}
	default:
		n.Restart(i)
	}
}

// Flush sends every due snapshot and delivers everything in flight, in a
// fixed order (links by sender, then receiver), leaving cut connections
// as they are.
func (n *Net) Flush() {
	for progress := true; progress; {
		progress = false
		for len(n.syncs) > 0 {
			n.sync(0)
		}
		for a := range n.nodes {
			for b := range n.nodes {
				for n.Deliver(a, b) {
					progress = true
				}
			}
		}
	}
}

// Settle ends a run: every end of a cut connection notices it, every
// connection heals, and every snapshot and frame is delivered, in random
// order, until nothing is left in flight.
func (n *Net) Settle() {
	n.Logf("settle")
	for len(n.detect) > 0 {
		n.noticeDown(n.rng.IntN(len(n.detect)))
	}
	for a := range n.nodes {
		for b := a + 1; b < len(n.nodes); b++ {
			n.Heal(a, b)
		}
	}
	for {
		if len(n.syncs) > 0 && n.rng.IntN(3) == 0 {
			n.sync(n.rng.IntN(len(n.syncs)))
			continue
		}
		var busy []pair
		for a, row := range n.links {
			for b, l := range row {
				if len(l.q) > 0 {
					busy = append(busy, pair{a, b})
				}
			}
		}
		if len(busy) == 0 {
			if len(n.syncs) == 0 {
				return
			}
			continue
		}
		p := busy[n.rng.IntN(len(busy))]
		n.Deliver(p.a, p.b)
	}
}
