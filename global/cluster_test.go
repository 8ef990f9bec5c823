package global

// The convergence property test of the registry, on the simulated network
// of internal/simnet: each simNode is a Host and a simnet.Node; the test's
// own steps are registrations, unregistrations, spawns and exits, and its
// check is that after settling every replica holds the same table, each name
// held by one live process, each loser told at most once per registration.

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
	"github.com/meshrt/mesh/internal/simnet"
	"github.com/meshrt/mesh/internal/testutil"
)

type simNode struct {
	simnet.Port // Broadcast, Connected
	c           *simCluster
	name        string
	inc         uint64
	nextID      uint64
	r           *Replica
	alive       map[codec.PID]bool
}

func (n *simNode) Self() string { return n.name }
func (n *simNode) Alive(pid codec.PID) bool {
	return pid.Node == n.name && pid.Incarnation == n.inc && n.alive[pid]
}
func (n *simNode) Notify(pid codec.PID, msg any) {
	c, ok := msg.(Conflict)
	if !ok {
		n.c.net.Failf("%s: Notify(%v, %T): not a Conflict", n.name, pid, msg)
		return
	}
	if pid.Node != n.name || pid.Incarnation != n.inc {
		n.c.net.Failf("%s: Notify of %v: not a process of this node", n.name, pid)
	}
	if c.Winner == pid {
		n.c.net.Failf("%s: %v told it lost %q to itself", n.name, pid, c.Name)
	}
	n.c.notes[regKey{pid, c.Name}]++
}

func (n *simNode) Replica() simnet.Replica { return n.r }

// Restart: the processes die with the node, and nobody is told but through
// NodeDown.
func (n *simNode) Restart() {
	n.c.oldConflicts += n.r.Conflicts()
	n.inc++
	n.alive = make(map[codec.PID]bool)
	n.r = New(n)
}

func (n *simNode) Describe(from string, f simnet.Frame) string {
	if f.Snapshot {
		return fmt.Sprintf("Merge(%d bytes)", len(f.Data))
	}
	ops, _ := decodeOps(f.Data, from, MaxNameLen)
	return "Handle " + fmtOps(ops)
}

type regKey struct {
	pid  codec.PID
	name string
}

type simCluster struct {
	net   *simnet.Net
	rng   *rand.Rand // the net's
	mix   simnet.Mix
	nodes []*simNode
	names []string
	regs  map[regKey]int // successful Register calls
	notes map[regKey]int // Conflicts received
	// conflicts counted by registries that a restart threw away
	oldConflicts uint64
}

func newSimCluster(t testing.TB, seed uint64, nodes, names int) *simCluster {
	c := &simCluster{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		regs:  make(map[regKey]int),
		notes: make(map[regKey]int),
	}
	for i := range names {
		c.names = append(c.names, fmt.Sprintf("name%d", i))
	}
	c.net = simnet.New(t, c.rng, nodes, func(i int, p simnet.Port) simnet.Node {
		n := &simNode{Port: p, c: c, name: fmt.Sprintf("n%d@127.0.0.1:%d", i, 7000+i), inc: c.rng.Uint64() | 1,
			alive: make(map[codec.PID]bool)}
		n.r = New(n)
		c.nodes = append(c.nodes, n)
		return n
	})
	c.mix = simnet.Mix{
		Deliver: 45,
		Ops: []simnet.Op{
			{Weight: 15, Do: c.register},
			{Weight: 6, Do: c.unregister},
			{Weight: 6, Do: func(i int) { c.spawn(i) }},
			{Weight: 6, Do: c.exit},
		},
		Cut: 4, NoticeDown: 5, Heal: 5, Sync: 7, Restart: 1,
	}
	return c
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
	c.net.Logf("%d: Register(%s, %v) = %v", i, name, pid, err)
	switch {
	case err == nil:
		c.regs[regKey{pid, name}]++
		if got, ok := n.r.Whereis(name); !ok || got != pid {
			c.net.Failf("%d: Whereis(%s) right after Register(%v) = %v, %v", i, name, pid, got, ok)
		}
	case errors.Is(err, ErrNameTaken), errors.Is(err, ErrNoProcess), errors.Is(err, ErrNodeDown):
	default:
		c.net.Failf("%d: Register(%s, %v): unexpected error %v", i, name, pid, err)
	}
}

func (c *simCluster) unregister(i int) {
	name := c.names[c.rng.IntN(len(c.names))]
	err := c.nodes[i].r.Unregister(name)
	c.net.Logf("%d: Unregister(%s) = %v", i, name, err)
	if err != nil && !errors.Is(err, ErrNotRegistered) {
		c.net.Failf("%d: Unregister(%s): %v", i, name, err)
	}
	if _, ok := c.nodes[i].r.Whereis(name); ok && err == nil {
		// Another candidate may show through only while a conflict is
		// unsettled; Unregister hides every candidate known here.
		c.net.Failf("%d: Whereis(%s) after Unregister still finds it", i, name)
	}
}

func (c *simCluster) exit(i int) {
	pids := c.livePIDs(i)
	if len(pids) == 0 {
		return
	}
	pid := pids[c.rng.IntN(len(pids))]
	delete(c.nodes[i].alive, pid)
	c.net.Logf("%d: exit %v", i, pid)
	c.nodes[i].r.ProcessExited(pid)
}

func fmtOps(ops []op) string {
	var b strings.Builder
	for _, o := range ops {
		fmt.Fprintf(&b, "[%v %s %v v%d by %s]", o.kind, o.e.Name, o.e.PID, o.e.Version, o.e.Origin)
	}
	return b.String()
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
			c.net.Failf("%s: settled with %d pending, %d hidden: %v %v", n.name, len(r.pending), len(r.hidden), r.pending, r.hidden)
		}
		for name, e := range r.own {
			if prev, dup := owners[name]; dup {
				c.net.Failf("%q owned by both %s and %s", name, prev, n.name)
			}
			owners[name] = n.name
			if !n.Alive(e.PID) {
				c.net.Failf("%s: owns %q for dead %v", n.name, name, e.PID)
			}
		}
		for _, m := range c.nodes {
			if m == n {
				continue
			}
			if !maps.Equal(r.mirrors[m.name], m.r.own) {
				c.net.Failf("%s's copy of %s's table differs:\n copy %v\n real %v", n.name, m.name, r.mirrors[m.name], m.r.own)
			}
		}
		r.mu.Unlock()
		got := r.view.all()
		if !maps.Equal(got, ref) {
			c.net.Failf("replica of %s differs from %s's:\n %v\n %v", n.name, c.nodes[0].name, got, ref)
		}
		if r.Len() != len(got) {
			c.net.Failf("%s: Len() = %d, view holds %d", n.name, r.Len(), len(got))
		}
	}
	if len(owners) != len(ref) {
		c.net.Failf("view has %d names, owners hold %d", len(ref), len(owners))
	}
	for name, pid := range ref {
		n := c.nodeOf(pid.Node)
		if n == nil || !n.Alive(pid) {
			c.net.Failf("%q maps to %v, not a live process", name, pid)
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
			c.net.Failf("%v told %d times it lost %q; %d registrations, %d standing", k.pid, got, k.name, c.regs[k], present)
		}
	}
	if uint64(told) != conflicts {
		c.net.Failf("%d Conflict messages, counters say %d", told, conflicts)
	}
}

func (c *simCluster) nodeOf(name string) *simNode {
	for _, n := range c.nodes {
		if n.name == name {
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
	for step := range steps {
		c.net.Step(c.mix)
		if c.net.Failed() {
			t.Fatalf("seed %d failed at step %d", seed, step+1)
		}
	}
	c.net.Settle()
	c.check()
	stats.conflicts += c.oldConflicts
	for _, n := range c.nodes {
		stats.conflicts += n.r.Conflicts()
		stats.names += n.r.Len()
	}
	for _, v := range c.regs {
		stats.regs += v
	}
	if c.net.Failed() || t.Failed() {
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
