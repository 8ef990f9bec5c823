package groups

// An in-memory cluster for the convergence property test, as global's: each
// simNode is a Host; every directed link is a FIFO queue delivered from one
// message at a time in an order a seeded rand picks. Cutting a link drops
// what is queued and later tells each end NodeDown; healing reconnects it
// and later sends each side's snapshot as the first message the other side
// merges.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meshrt/mesh/codec"
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
	c      *simCluster
	idx    int
	name   string
	inc    uint64
	nextID uint64
	r      *Replica
	alive  map[codec.PID]bool
	joined map[codec.PID]map[string]bool // the model: what each live process joined
}

func (n *simNode) Self() string { return n.name }
func (n *simNode) Broadcast(frame []byte) {
	for j, l := range n.c.links[n.idx] {
		if j != n.idx && l.up {
			l.q = append(l.q, simMsg{data: frame})
		}
	}
}
func (n *simNode) Alive(pid codec.PID) bool {
	return pid.Node == n.name && pid.Incarnation == n.inc && n.alive[pid]
}

type pair struct{ a, b int }

type simCluster struct {
	t      *testing.T
	rng    *rand.Rand
	nodes  []*simNode
	links  [][]*simLink
	conn   [][]bool // conn[a][b]: a thinks it is connected to b
	detect []pair
	syncs  []pair
	groups []string
}

func newSimCluster(t *testing.T, seed uint64, nodes int) *simCluster {
	c := &simCluster{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), groups: []string{"a", "b", "c", "d"}}
	c.links = make([][]*simLink, nodes)
	c.conn = make([][]bool, nodes)
	for i := range nodes {
		n := &simNode{c: c, idx: i, name: fmt.Sprintf("n%d@127.0.0.1:%d", i, 7000+i), inc: 1,
			alive: make(map[codec.PID]bool), joined: make(map[codec.PID]map[string]bool)}
		n.r = New(n, 0)
		c.nodes = append(c.nodes, n)
		c.links[i] = make([]*simLink, nodes)
		c.conn[i] = make([]bool, nodes)
		for j := range nodes {
			c.links[i][j] = &simLink{}
		}
	}
	for i := range nodes {
		for j := i + 1; j < nodes; j++ {
			c.heal(i, j)
		}
	}
	return c
}

func (c *simCluster) spawn(i int) codec.PID {
	n := c.nodes[i]
	n.nextID++
	pid := codec.PID{Node: n.name, Incarnation: n.inc, ID: n.nextID}
	n.alive[pid] = true
	n.joined[pid] = make(map[string]bool)
	return pid
}

func (c *simCluster) somePID(i int) codec.PID {
	n := c.nodes[i]
	pids := slices.SortedFunc(maps.Keys(n.alive), comparePIDs)
	if len(pids) == 0 || c.rng.IntN(4) == 0 {
		return c.spawn(i)
	}
	return pids[c.rng.IntN(len(pids))]
}

func (c *simCluster) join(i int) {
	n, pid, g := c.nodes[i], c.somePID(i), c.groups[c.rng.IntN(len(c.groups))]
	if err := n.r.Join(g, pid); err != nil {
		c.t.Fatalf("Join(%s, %v): %v", g, pid, err)
	}
	n.joined[pid][g] = true
	if !slices.Contains(n.r.Members(g), pid) {
		c.t.Fatalf("%s: Members(%s) right after Join misses %v", n.name, g, pid)
	}
}

func (c *simCluster) leave(i int) {
	n, pid, g := c.nodes[i], c.somePID(i), c.groups[c.rng.IntN(len(c.groups))]
	if err := n.r.Leave(g, pid); err != nil {
		c.t.Fatalf("Leave(%s, %v): %v", g, pid, err)
	}
	delete(n.joined[pid], g)
}

func (c *simCluster) exit(i int) {
	n := c.nodes[i]
	pids := slices.SortedFunc(maps.Keys(n.alive), comparePIDs)
	if len(pids) == 0 {
		return
	}
	pid := pids[c.rng.IntN(len(pids))]
	delete(n.alive, pid)
	delete(n.joined, pid)
	n.r.ProcessExited(pid)
}

func (c *simCluster) deliver(i, j int) bool {
	l := c.links[i][j]
	if !l.up || len(l.q) == 0 {
		return false
	}
	m := l.q[0]
	l.q = l.q[1:]
	var err error
	if m.snapshot {
		err = c.nodes[j].r.Merge(c.nodes[i].name, m.data)
	} else {
		err = c.nodes[j].r.Handle(c.nodes[i].name, m.data)
	}
	if err != nil {
		c.t.Fatalf("%d→%d: %v", i, j, err)
	}
	return true
}

func (c *simCluster) cut(i, j int) {
	if !c.links[i][j].up {
		return
	}
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
	c.conn[p.a][p.b] = false
	c.nodes[p.a].r.NodeDown(c.nodes[p.b].name)
}

func (c *simCluster) heal(i, j int) {
	if c.links[i][j].up || c.conn[i][j] || c.conn[j][i] {
		return
	}
	for _, p := range []pair{{i, j}, {j, i}} {
		c.links[p.a][p.b].up = true
		c.conn[p.a][p.b] = true
		c.syncs = append(c.syncs, p)
	}
}

func (c *simCluster) sync(k int) {
	p := c.syncs[k]
	c.syncs = slices.Delete(c.syncs, k, k+1)
	l := c.links[p.a][p.b]
	c.nodes[p.a].r.SnapshotTo(func(f []byte) { l.q = append(l.q, simMsg{snapshot: true, data: f}) })
}

// restart kills node i's processes with it and starts a new incarnation.
func (c *simCluster) restart(i int) {
	for j := range c.nodes {
		if j != i {
			c.cut(i, j)
		}
	}
	c.detect = slices.DeleteFunc(c.detect, func(p pair) bool { return p.a == i })
	for j := range c.nodes {
		c.conn[i][j] = false
	}
	n := c.nodes[i]
	n.inc++
	n.alive = make(map[codec.PID]bool)
	n.joined = make(map[codec.PID]map[string]bool)
	n.r = New(n, 0)
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
	case w < 62:
		c.join(i)
	case w < 70:
		c.leave(i)
	case w < 76:
		c.exit(i)
	case w < 81:
		if i != j {
			c.cut(i, j)
		}
	case w < 86:
		if len(c.detect) > 0 {
			c.noticeDown(c.rng.IntN(len(c.detect)))
		}
	case w < 91:
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

func (c *simCluster) settle() {
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

// check: every replica shows, for every group, exactly the live processes
// that joined it and did not leave.
func (c *simCluster) check() {
	want := make(map[string][]codec.PID)
	for _, n := range c.nodes {
		for pid, gs := range n.joined {
			for g := range gs {
				want[g] = append(want[g], pid)
			}
		}
	}
	for g := range want {
		slices.SortFunc(want[g], comparePIDs)
	}
	for _, n := range c.nodes {
		for _, g := range c.groups {
			if got := n.r.Members(g); !slices.Equal(got, want[g]) {
				c.t.Fatalf("%s: Members(%s) = %v, want %v", n.name, g, got, want[g])
			}
		}
		if got := n.r.Which(); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
			c.t.Fatalf("%s: Which() = %v, want %v", n.name, got, slices.Sorted(maps.Keys(want)))
		}
		members := 0
		for _, pids := range want {
			members += len(pids)
		}
		if gs, ms := n.r.Counts(); gs != len(want) || ms != members {
			c.t.Fatalf("%s: Counts() = %d groups, %d members; want %d, %d", n.name, gs, ms, len(want), members)
		}
	}
}

// TestConvergence is the property test: random joins, leaves, process
// exits, node restarts, link cuts and heals on 5 nodes, in every delivery
// order the seeds pick; after heal and settle every replica shows exactly
// the live members.
func TestConvergence(t *testing.T) {
	seeds := uint64(300)
	if testing.Short() {
		seeds = 30
	}
	for seed := range seeds {
		c := newSimCluster(t, seed, 5)
		for range 400 {
			c.step()
		}
		c.settle()
		c.check()
	}
}

func TestPeerBoundIsEnforced(t *testing.T) {
	a := &simNode{name: "a@h:1", inc: 1, alive: map[codec.PID]bool{}}
	b := &simNode{name: "b@h:1", inc: 1, alive: map[codec.PID]bool{}}
	ra := New(a, 0)
	rb := New(b, 3)
	ra.SnapshotTo(func(f []byte) {
		if err := rb.Merge(a.name, f); err != nil {
			t.Fatal(err)
		}
	})
	var err error
	for i := range 5 {
		ops := encodeOps(nil, []op{{kind: opJoin, group: "g", pid: codec.PID{Node: a.name, Incarnation: 1, ID: uint64(i + 1)}}})
		if err = rb.Handle(a.name, ops); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("the 4th membership of a peer bounded at 3: %v, want ErrLimit", err)
	}
	big := map[string]set{"g": {}}
	for i := range 4 {
		big["g"][codec.PID{Node: a.name, Incarnation: 1, ID: uint64(i + 1)}] = struct{}{}
	}
	if err := rb.Merge(a.name, encodeSnapshot(big)); !errors.Is(err, ErrLimit) {
		t.Fatalf("a snapshot over the bound: %v, want ErrLimit", err)
	}
}

func TestJoinRules(t *testing.T) {
	n := &simNode{name: "a@h:1", inc: 1, alive: map[codec.PID]bool{}}
	n.c = &simCluster{links: [][]*simLink{{{}}}}
	r := New(n, 0)
	live := codec.PID{Node: n.name, Incarnation: 1, ID: 1}
	n.alive[live] = true
	for _, tc := range []struct {
		group string
		pid   codec.PID
		want  error
	}{
		{"g", live, nil},
		{"g", live, nil}, // twice is once
		{"", live, ErrInvalidGroup},
		{string(make([]byte, MaxGroupName+1)), live, ErrInvalidGroup},
		{"g", codec.PID{Node: "b@h:1", Incarnation: 1, ID: 1}, ErrNotLocal},
		{"g", codec.PID{Node: n.name, Incarnation: 1, ID: 2}, ErrNoProcess},
	} {
		if err := r.Join(tc.group, tc.pid); !errors.Is(err, tc.want) {
			t.Errorf("Join(%.10q, %v) = %v, want %v", tc.group, tc.pid, err, tc.want)
		}
	}
	if got := r.Members("g"); !slices.Equal(got, []codec.PID{live}) {
		t.Fatalf("Members = %v", got)
	}
}

func FuzzFrames(f *testing.F) {
	f.Add(encodeOps(nil, []op{{kind: opJoin, group: "g", pid: codec.PID{Incarnation: 1, ID: 2}}}))
	f.Add(encodeSnapshot(map[string]set{"g": {codec.PID{Incarnation: 1, ID: 2}: {}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := &simNode{name: "a@h:1", inc: 1, alive: map[codec.PID]bool{}}
		r := New(n, 100)
		if IsSnapshot(b) {
			_ = r.Merge("b@h:1", b)
		} else {
			_ = r.Merge("b@h:1", []byte{frameSnapshot, 0})
			_ = r.Handle("b@h:1", b)
		}
		for _, g := range r.Which() {
			for _, pid := range r.Members(g) {
				if pid.Node != "b@h:1" {
					t.Fatalf("a member %v of another node than the sender", pid)
				}
			}
		}
	})
}
