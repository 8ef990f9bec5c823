package groups

// The convergence property test of the groups, on the simulated network of
// internal/simnet: each simNode is a Host and a simnet.Node; the test's own
// steps are joins, leaves and exits, and its check is that after settling
// every replica shows, for every group, exactly the live processes that
// joined it and did not leave.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/simnet"
)

type simNode struct {
	simnet.Port // Broadcast; the zero Port's goes nowhere
	name        string
	inc         uint64
	nextID      uint64
	r           *Replica
	alive       map[codec.PID]bool
	joined      map[codec.PID]map[string]bool // the model: what each live process joined
}

func (n *simNode) Self() string { return n.name }
func (n *simNode) Alive(pid codec.PID) (any, bool) {
	return pid, pid.Node == n.name && pid.Incarnation == n.inc && n.alive[pid]
}

func (n *simNode) Replica() simnet.Replica { return n.r }

// Restart: the processes die with the node.
func (n *simNode) Restart() {
	n.inc++
	n.alive = make(map[codec.PID]bool)
	n.joined = make(map[codec.PID]map[string]bool)
	n.r = New(n, 0)
}

func (n *simNode) Describe(from string, f simnet.Frame) string {
	if f.Snapshot {
		return fmt.Sprintf("Merge(%d bytes)", len(f.Data))
	}
	ops, _ := decodeOps(f.Data, from)
	var b strings.Builder
	b.WriteString("Handle ")
	for _, o := range ops {
		verb := map[opKind]string{opJoin: "join", opLeave: "leave"}[o.kind]
		fmt.Fprintf(&b, "[%s %s %v]", verb, o.group, o.pid)
	}
	return b.String()
}

type simCluster struct {
	net    *simnet.Net
	rng    *rand.Rand // the net's
	mix    simnet.Mix
	nodes  []*simNode
	groups []string
}

func newSimCluster(t *testing.T, seed uint64, nodes int) *simCluster {
	c := &simCluster{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), groups: []string{"a", "b", "c", "d"}}
	c.net = simnet.New(t, c.rng, nodes, func(i int, p simnet.Port) simnet.Node {
		n := &simNode{Port: p, name: fmt.Sprintf("n%d@127.0.0.1:%d", i, 7000+i), inc: 1,
			alive: make(map[codec.PID]bool), joined: make(map[codec.PID]map[string]bool)}
		n.r = New(n, 0)
		c.nodes = append(c.nodes, n)
		return n
	})
	c.mix = simnet.Mix{
		Deliver: 45,
		Ops:     []simnet.Op{{Weight: 17, Do: c.join}, {Weight: 8, Do: c.leave}, {Weight: 6, Do: c.exit}},
		Cut:     5, NoticeDown: 5, Heal: 5, Sync: 8, Restart: 1,
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
	err := n.r.Join(g, pid)
	c.net.Logf("%d: Join(%s, %v) = %v", i, g, pid, err)
	if err != nil {
		c.net.Failf("%d: Join(%s, %v): %v", i, g, pid, err)
		return
	}
	n.joined[pid][g] = true
	if !slices.Contains(n.r.Members(g), pid) {
		c.net.Failf("%d: Members(%s) right after Join misses %v", i, g, pid)
	}
	c.checkLocal(i)
}

// checkLocal: LocalTargets of every group is node i's own live members of
// it, in PID order, right after each change (the simNode's handle is the
// PID).
func (c *simCluster) checkLocal(i int) {
	n := c.nodes[i]
	for _, g := range c.groups {
		var want []any
		for _, pid := range slices.SortedFunc(maps.Keys(n.joined), comparePIDs) {
			if n.joined[pid][g] {
				want = append(want, pid)
			}
		}
		if got := n.r.LocalTargets(g); !slices.Equal(got, want) {
			c.net.Failf("%d: LocalTargets(%s) = %v, want %v", i, g, got, want)
		}
	}
}

func (c *simCluster) leave(i int) {
	n, pid, g := c.nodes[i], c.somePID(i), c.groups[c.rng.IntN(len(c.groups))]
	err := n.r.Leave(g, pid)
	c.net.Logf("%d: Leave(%s, %v) = %v", i, g, pid, err)
	if err != nil {
		c.net.Failf("%d: Leave(%s, %v): %v", i, g, pid, err)
		return
	}
	delete(n.joined[pid], g)
	c.checkLocal(i)
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
	c.net.Logf("%d: exit %v", i, pid)
	n.r.ProcessExited(pid)
	c.checkLocal(i)
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
				c.net.Failf("%s: Members(%s) = %v, want %v", n.name, g, got, want[g])
			}
		}
		if got := n.r.Which(); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
			c.net.Failf("%s: Which() = %v, want %v", n.name, got, slices.Sorted(maps.Keys(want)))
		}
		members := 0
		for _, pids := range want {
			members += len(pids)
		}
		if gs, ms := n.r.Counts(); gs != len(want) || ms != members {
			c.net.Failf("%s: Counts() = %d groups, %d members; want %d, %d", n.name, gs, ms, len(want), members)
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
		for step := range 400 {
			c.net.Step(c.mix)
			if c.net.Failed() {
				t.Fatalf("seed %d failed at step %d", seed, step+1)
			}
		}
		c.net.Settle()
		c.check()
		if c.net.Failed() {
			t.Fatalf("seed %d failed", seed)
		}
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
