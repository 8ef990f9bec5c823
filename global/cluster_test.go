package global

// An in-memory cluster for the convergence property test. Each simNode is a
// Host; every directed link is a FIFO queue the test delivers from one
// message at a time, in an order a seeded rand picks. Cutting a link drops
// what is queued on it and later (at a step the rand picks) tells each end
// NodeDown, as a real node does when it notices; healing a link reconnects it
// and later sends each side's Snapshot as the first message the other side
// merges, as the node will.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/testutil"
)

type simMsg struct {
	snapshot bool
	data     []byte
}

type simLink struct {
	up bool
	q  []simMsg
}

type simNode struct {
	c         *simCluster
	idx       int
	name      string
	inc       uint64
	nextID    uint64
	r         *Replica
	alive     map[codec.PID]bool
	connected map[string]bool // this node's view of its peers
}

func (n *simNode) Self() string { return n.name }
func (n *simNode) Broadcast(frame []byte) {
	for j, l := range n.c.links[n.idx] {
		if j != n.idx && l.up {
			l.q = append(l.q, simMsg{data: frame})
		}
	}
}
func (n *simNode) Connected(node string) bool { return n.connected[node] }
func (n *simNode) Alive(pid codec.PID) bool {
	return pid.Node == n.name && pid.Incarnation == n.inc && n.alive[pid]
}
func (n *simNode) Notify(pid codec.PID, msg any) {
	c, ok := msg.(Conflict)
	if !ok {
		n.c.failf("%s: Notify(%v, %T): not a Conflict", n.name, pid, msg)
		return
	}
	if pid.Node != n.name || pid.Incarnation != n.inc {
		n.c.failf("%s: Notify of %v: not a process of this node", n.name, pid)
	}
	if c.Winner == pid {
		n.c.failf("%s: %v told it lost %q to itself", n.name, pid, c.Name)
	}
	n.c.notes[regKey{pid, c.Name}]++
}

type pair struct{ a, b int }

type regKey struct {
	pid  codec.PID
	name string
}

type simCluster struct {
	t      testing.TB
	rng    *rand.Rand
	nodes  []*simNode
	links  [][]*simLink // links[i][j] carries i → j
	detect []pair       // a has yet to notice b is down
	syncs  []pair       // a has yet to send its snapshot to b
	names  []string
	regs   map[regKey]int // successful Register calls
	notes  map[regKey]int // Conflicts received
	trace  []string
	failed bool
	// conflicts counted by registries that a restart threw away
	oldConflicts uint64
}

func newSimCluster(t testing.TB, seed uint64, nodes, names int) *simCluster {
	c := &simCluster{
		t:     t,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		regs:  make(map[regKey]int),
		notes: make(map[regKey]int),
	}
	for i := range names {
		c.names = append(c.names, fmt.Sprintf("name%d", i))
	}
	c.links = make([][]*simLink, nodes)
	for i := range nodes {
		n := &simNode{c: c, idx: i, name: fmt.Sprintf("n%d@127.0.0.1:%d", i, 7000+i), inc: c.rng.Uint64() | 1,
			alive: make(map[codec.PID]bool), connected: make(map[string]bool)}
		n.r = New(n)
		c.nodes = append(c.nodes, n)
		c.links[i] = make([]*simLink, nodes)
		for j := range nodes {
			c.links[i][j] = &simLink{}
		}
	}
	// Start fully connected, through the normal heal path.
	for i := range nodes {
		for j := i + 1; j < nodes; j++ {
			c.heal(i, j)
		}
	}
	return c
}

func (c *simCluster) failf(format string, args ...any) {
	c.t.Helper()
	if !c.failed {
		c.failed = true
		from := max(0, len(c.trace)-60)
		c.t.Errorf("last %d steps:\n%s", len(c.trace)-from, strings.Join(c.trace[from:], "\n"))
	}
	c.t.Errorf(format, args...)
}

func (c *simCluster) logf(format string, args ...any) {
	c.trace = append(c.trace, fmt.Sprintf(format, args...))
}

func (c *simCluster) spawn(i int) codec.PID {
	n := c.nodes[i]
	n.nextID++
	pid := codec.PID{Node: n.name, Incarnation: n.inc, ID: n.nextID}
	n.alive[pid] = true
	return pid
}

func (c *simCluster) livePIDs(i int) []codec.PID {
	return slices.SortedFunc(maps.Keys(c.nodes[i].alive), comparePIDs)
}

func (c *simCluster) register(i int) {
	n := c.nodes[i]
	name := c.names[c.rng.IntN(len(c.names))]
	var pid codec.PID
	if c.rng.IntN(3) > 0 || len(c.nodes) == 1 {
		pids := c.livePIDs(i)
		if len(pids) == 0 {
			pid = c.spawn(i)
		} else {
			pid = pids[c.rng.IntN(len(pids))]
		}
	} else {
		j := c.rng.IntN(len(c.nodes))
		m := c.nodes[j]
		// Any PID the other node ever had, dead ones and ones of an older
		// incarnation included: the registering node cannot tell.
		id := uint64(1 + c.rng.IntN(int(m.nextID)+1))
		inc := m.inc
		if c.rng.IntN(8) == 0 {
			inc++
		}
		pid = codec.PID{Node: m.name, Incarnation: inc, ID: id}
	}
	err := n.r.Register(name, pid)
	c.logf("%d: Register(%s, %v) = %v", i, name, pid, err)
	switch {
	case err == nil:
		c.regs[regKey{pid, name}]++
		if got, ok := n.r.Whereis(name); !ok || got != pid {
			c.failf("%d: Whereis(%s) right after Register(%v) = %v, %v", i, name, pid, got, ok)
		}
	case errors.Is(err, ErrNameTaken), errors.Is(err, ErrNoProcess), errors.Is(err, ErrNodeDown):
	default:
		c.failf("%d: Register(%s, %v): unexpected error %v", i, name, pid, err)
	}
}

func (c *simCluster) unregister(i int) {
	name := c.names[c.rng.IntN(len(c.names))]
	err := c.nodes[i].r.Unregister(name)
	c.logf("%d: Unregister(%s) = %v", i, name, err)
	if err != nil && !errors.Is(err, ErrNotRegistered) {
		c.failf("%d: Unregister(%s): %v", i, name, err)
	}
	if _, ok := c.nodes[i].r.Whereis(name); ok && err == nil {
		// Another candidate may show through only while a conflict is
		// unsettled; Unregister hides every candidate known here.
		c.failf("%d: Whereis(%s) after Unregister still finds it", i, name)
	}
}

func (c *simCluster) exit(i int) {
	pids := c.livePIDs(i)
	if len(pids) == 0 {
		return
	}
	pid := pids[c.rng.IntN(len(pids))]
	delete(c.nodes[i].alive, pid)
	c.logf("%d: exit %v", i, pid)
	c.nodes[i].r.ProcessExited(pid)
}

func (c *simCluster) deliver(i, j int) bool {
	l := c.links[i][j]
	if !l.up || len(l.q) == 0 {
		return false
	}
	m := l.q[0]
	l.q = l.q[1:]
	from := c.nodes[i].name
	var err error
	if m.snapshot {
		err = c.nodes[j].r.Merge(from, m.data)
		c.logf("%d→%d: Merge(%d bytes) = %v", i, j, len(m.data), err)
	} else {
		err = c.nodes[j].r.Handle(from, m.data)
		ops, _ := decodeOps(m.data, from, MaxNameLen)
		c.logf("%d→%d: Handle %s = %v", i, j, fmtOps(ops), err)
	}
	if err != nil {
		c.failf("%d→%d: %v", i, j, err)
	}
	return true
}

func fmtOps(ops []op) string {
	var b strings.Builder
	for _, o := range ops {
		fmt.Fprintf(&b, "[%v %s %v v%d by %s]", o.kind, o.e.Name, o.e.PID, o.e.Version, o.e.Origin)
	}
	return b.String()
}

func (c *simCluster) cut(i, j int) {
	if !c.links[i][j].up {
		return
	}
	c.logf("cut %d-%d", i, j)
	for _, p := range []pair{{i, j}, {j, i}} {
		l := c.links[p.a][p.b]
		l.up, l.q = false, nil
		c.syncs = slices.DeleteFunc(c.syncs, func(s pair) bool { return s == p })
		c.detect = append(c.detect, p)
	}
}

func (c *simCluster) noticeDown(k int) {
	p := c.detect[k]
	c.detect = slices.Delete(c.detect, k, k+1)
	a, b := c.nodes[p.a], c.nodes[p.b]
	c.logf("%d: NodeDown(%d)", p.a, p.b)
	delete(a.connected, b.name)
	a.r.NodeDown(b.name)
}

// heal reconnects i and j if both have noticed the old link is gone.
func (c *simCluster) heal(i, j int) {
	if c.links[i][j].up || c.nodes[i].connected[c.nodes[j].name] || c.nodes[j].connected[c.nodes[i].name] {
		return
	}
	c.logf("heal %d-%d", i, j)
	for _, p := range []pair{{i, j}, {j, i}} {
		c.links[p.a][p.b].up = true
		c.nodes[p.a].connected[c.nodes[p.b].name] = true
		c.syncs = append(c.syncs, p)
	}
}

func (c *simCluster) sync(k int) {
	p := c.syncs[k]
	c.syncs = slices.Delete(c.syncs, k, k+1)
	c.logf("%d→%d: snapshot", p.a, p.b)
	l := c.links[p.a][p.b]
	l.q = append(l.q, simMsg{snapshot: true, data: c.nodes[p.a].r.Snapshot()})
}

// restart stops node i (its processes die with it, nobody is told but through
// NodeDown) and starts it again with a new incarnation and an empty registry.
func (c *simCluster) restart(i int) {
	c.logf("restart %d", i)
	n := c.nodes[i]
	for j := range c.nodes {
		if j != i {
			c.cut(i, j)
		}
	}
	c.detect = slices.DeleteFunc(c.detect, func(p pair) bool { return p.a == i })
	c.oldConflicts += n.r.Conflicts()
	n.inc++
	n.alive = make(map[codec.PID]bool)
	n.connected = make(map[string]bool)
	n.r = New(n)
}

func (c *simCluster) step() {
	nn := len(c.nodes)
	i, j := c.rng.IntN(nn), c.rng.IntN(nn)
	switch w := c.rng.IntN(100); {
	case w < 45:
		for range 4 {
			if c.deliver(i, j) {
				return
			}
			i, j = c.rng.IntN(nn), c.rng.IntN(nn)
		}
	case w < 60:
		c.register(i)
	case w < 66:
		c.unregister(i)
	case w < 72:
		c.spawn(i)
	case w < 78:
		c.exit(i)
	case w < 82:
		if i != j {
			c.cut(i, j)
		}
	case w < 87:
		if len(c.detect) > 0 {
			c.noticeDown(c.rng.IntN(len(c.detect)))
		}
	case w < 92:
		if i != j {
			c.heal(i, j)
		}
	case w < 99:
		if len(c.syncs) > 0 {
			c.sync(c.rng.IntN(len(c.syncs)))
		}
	default:
		c.restart(i)
	}
}

// settle heals every link and delivers every message, in random order.
func (c *simCluster) settle() {
	c.logf("settle")
	for len(c.detect) > 0 {
		c.noticeDown(c.rng.IntN(len(c.detect)))
	}
	for i := range c.nodes {
		for j := i + 1; j < len(c.nodes); j++ {
			c.heal(i, j)
		}
	}
	for {
		if len(c.syncs) > 0 && c.rng.IntN(3) == 0 {
			c.sync(c.rng.IntN(len(c.syncs)))
			continue
		}
		var busy []pair
		for i, row := range c.links {
			for j, l := range row {
				if len(l.q) > 0 {
					busy = append(busy, pair{i, j})
				}
			}
		}
		if len(busy) == 0 {
			if len(c.syncs) == 0 {
				return
			}
			continue
		}
		p := busy[c.rng.IntN(len(busy))]
		c.deliver(p.a, p.b)
	}
}

// check asserts the settled state: every replica equal, each name held by
// one live process, nothing left in flight, each loser told at most once per
// registration.
func (c *simCluster) check() {
	ref := c.nodes[0].r.view.all()
	owners := make(map[string]string)
	for _, n := range c.nodes {
		r := n.r
		r.mu.Lock()
		if len(r.pending) != 0 || len(r.hidden) != 0 {
			c.failf("%s: settled with %d pending, %d hidden: %v %v", n.name, len(r.pending), len(r.hidden), r.pending, r.hidden)
		}
		for name, e := range r.own {
			if prev, dup := owners[name]; dup {
				c.failf("%q owned by both %s and %s", name, prev, n.name)
			}
			owners[name] = n.name
			if !n.Alive(e.PID) {
				c.failf("%s: owns %q for dead %v", n.name, name, e.PID)
			}
		}
		for _, m := range c.nodes {
			if m == n {
				continue
			}
			if !maps.Equal(r.mirrors[m.name], m.r.own) {
				c.failf("%s's copy of %s's table differs:\n copy %v\n real %v", n.name, m.name, r.mirrors[m.name], m.r.own)
			}
		}
		r.mu.Unlock()
		got := r.view.all()
		if !maps.Equal(got, ref) {
			c.failf("replica of %s differs from %s's:\n %v\n %v", n.name, c.nodes[0].name, got, ref)
		}
		if r.Len() != len(got) {
			c.failf("%s: Len() = %d, view holds %d", n.name, r.Len(), len(got))
		}
	}
	if len(owners) != len(ref) {
		c.failf("view has %d names, owners hold %d", len(ref), len(owners))
	}
	for name, pid := range ref {
		n := c.nodeOf(pid)
		if n == nil || !n.Alive(pid) {
			c.failf("%q maps to %v, not a live process", name, pid)
		}
	}
	conflicts := c.oldConflicts
	for _, n := range c.nodes {
		conflicts += n.r.Conflicts()
	}
	var told int
	for k, got := range c.notes {
		told += got
		present := 0
		if ref[k.name] == k.pid {
			present = 1
		}
		if limit := c.regs[k] - present; got > limit {
			c.failf("%v told %d times it lost %q; %d registrations, %d standing", k.pid, got, k.name, c.regs[k], present)
		}
	}
	if uint64(told) != conflicts {
		c.failf("%d Conflict messages, counters say %d", told, conflicts)
	}
}

func (c *simCluster) nodeOf(pid codec.PID) *simNode {
	for _, n := range c.nodes {
		if n.name == pid.Node {
			return n
		}
	}
	return nil
}

type convergenceStats struct {
	conflicts   uint64
	names, regs int
}

func runConvergence(t *testing.T, seed uint64, steps int, stats *convergenceStats) {
	c := newSimCluster(t, seed, 5, 8)
	for range steps {
		c.step()
		if c.failed {
			t.Fatalf("seed %d failed", seed)
		}
	}
	c.settle()
	c.check()
	stats.conflicts += c.oldConflicts
	for _, n := range c.nodes {
		stats.conflicts += n.r.Conflicts()
		stats.names += n.r.Len()
	}
	for _, v := range c.regs {
		stats.regs += v
	}
	if c.failed || t.Failed() {
		t.Fatalf("seed %d failed", seed)
	}
}

// TestConvergence is the property test: random registrations, unregistrations,
// process exits, node restarts, link cuts and heals on 5 nodes, with every
// delivery order the seeds pick; after heal and settle every replica is equal
// and every name is held by one live process. With MESH_SOAK set to a
// duration (make soak), it keeps drawing new seeds for that long.
func TestConvergence(t *testing.T) {
	var stats convergenceStats
	seeds, steps := uint64(300), 400
	if testing.Short() {
		seeds = 30
	}
	for seed := range seeds {
		runConvergence(t, seed, steps, &stats)
	}
	t.Logf("%d seeds of %d steps: %+v", seeds, steps, stats)
	d := testutil.Soak(t)
	if d == 0 {
		return
	}
	base := rand.Uint64()
	t.Logf("soak for %v from seed %d", d, base)
	deadline := time.Now().Add(d)
	n := 0
	for seed := base; time.Now().Before(deadline); seed++ {
		runConvergence(t, seed, 3000, &stats)
		n++
	}
	t.Logf("soak: %d seeds of 3000 steps passed", n)
}
