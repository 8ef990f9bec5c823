package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/memlink"
)

// member spawns a process on n that forwards what it receives to out.
func member(n *Node, out chan<- any) PID {
	return receiver(n, func(p *Process, m any) { out <- fmt.Sprint(p.Self().Node, ":", m) })
}

// receiver spawns a process on n that hands each message to got until it
// receives "stop".
func receiver(n *Node, got func(p *Process, m any)) PID {
	return n.SpawnFunc(func(p *Process) error {
		for {
			m, err := p.Receive(context.Background())
			if err != nil || m == "stop" {
				return nil
			}
			got(p, m)
		}
	})
}

func sameMembers(nodes []*Node, group string, want []PID) bool {
	slices.SortFunc(want, comparePIDsForTest)
	for _, n := range nodes {
		if !slices.Equal(n.Groups().Members(group), want) {
			return false
		}
	}
	return true
}

func comparePIDsForTest(a, b PID) int {
	switch {
	case a.Node != b.Node:
		if a.Node < b.Node {
			return -1
		}
		return 1
	case a.Incarnation != b.Incarnation:
		if a.Incarnation < b.Incarnation {
			return -1
		}
		return 1
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return 0
}

func TestGroupsReplicateAndPublish(t *testing.T) {
	a := startNamed(t, "a", "c", fastRedial)
	b := startNamed(t, "b", "c", fastRedial, WithSeeds(a.Self()))
	c := startNamed(t, "c", "c", fastRedial, WithSeeds(a.Self()))
	nodes := []*Node{a, b, c}
	eventually(t, "mesh", func() bool { return connected(a, b.Self(), c.Self()) && connected(b, c.Self()) })

	got := make(chan any, 100)
	var pids []PID
	for _, n := range nodes {
		for range 2 {
			pid := member(n, got)
			if err := n.Groups().Join("room", pid); err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
	}
	eventually(t, "every node sees the six members", func() bool { return sameMembers(nodes, "room", slices.Clone(pids)) })
	if w := b.Groups().Which(); !slices.Equal(w, []string{"room"}) {
		t.Fatalf("Which = %v", w)
	}

	// Publish from a: every member gets it once.
	if err := a.Groups().Publish("room", "hello"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range len(pids) {
		seen[fmt.Sprint(<-got)]++
	}
	for _, n := range nodes {
		if seen[n.Self()+":hello"] != 2 {
			t.Fatalf("per node deliveries %v; want 2 on each", seen)
		}
	}

	// A member that exits leaves everywhere; a stopped node's members too.
	if err := a.Send(pids[0], "stop"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the exited member is gone everywhere", func() bool { return sameMembers(nodes, "room", slices.Clone(pids[1:])) })
	if err := b.Groups().Leave("room", pids[2]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the member that left is gone everywhere", func() bool {
		return sameMembers(nodes, "room", []PID{pids[1], pids[3], pids[4], pids[5]})
	})
	stopNode(t, c)
	eventually(t, "the stopped node's members are gone", func() bool {
		return sameMembers([]*Node{a, b}, "room", []PID{pids[1], pids[3]})
	})

	if err := a.Groups().Join("room", pids[3]); !errors.Is(err, ErrNotLocal) {
		t.Fatalf("Join of another node's process = %v, want ErrNotLocal", err)
	}
	if err := a.Groups().Join("", pids[1]); !errors.Is(err, ErrBadGroup) {
		t.Fatalf("Join of an empty group = %v, want ErrBadGroup", err)
	}
	if err := a.Groups().Publish("room", make(chan int)); err == nil {
		t.Fatal("Publish of an unencodable message succeeded")
	}
}

// A peer's publish is decoded once on each node: that node's members get
// one shared value, as a local Publish's members get the publisher's own.
// Members that join or leave between publishes get exactly the publishes
// made while they are members (the node's cached member list follows).
func TestPublishIsDecodedOncePerNode(t *testing.T) {
	a := startNamed(t, "a", "c", fastRedial)
	b := startNamed(t, "b", "c", fastRedial, WithSeeds(a.Self()))
	eventually(t, "mesh", func() bool { return connected(a, b.Self()) })
	type got struct {
		who  PID
		data *byte
	}
	out := make(chan got, 16)
	spawn := func(n *Node) PID {
		pid := receiver(n, func(p *Process, m any) { out <- got{p.Self(), unsafe.SliceData(m.([]byte))} })
		if err := n.Groups().Join("g", pid); err != nil {
			t.Fatal(err)
		}
		return pid
	}
	a1, b1, b2 := spawn(a), spawn(b), spawn(b)
	eventually(t, "both nodes see the three members", func() bool {
		return sameMembers([]*Node{a, b}, "g", []PID{a1, b1, b2})
	})
	publish := func(want ...PID) map[PID]*byte {
		t.Helper()
		msg := []byte("payload")
		if err := a.Groups().Publish("g", msg); err != nil {
			t.Fatal(err)
		}
		seen := map[PID]*byte{}
		for range want {
			g := <-out
			if _, dup := seen[g.who]; dup {
				t.Fatalf("%v got the publish twice", g.who)
			}
			seen[g.who] = g.data
		}
		for _, pid := range want {
			if _, ok := seen[pid]; !ok {
				t.Fatalf("deliveries to %v; %v missing", seen, pid)
			}
		}
		if seen[a1] != nil && seen[a1] != unsafe.SliceData(msg) {
			t.Fatal("a local member got a copy, not the publisher's value")
		}
		return seen
	}
	seen := publish(a1, b1, b2)
	if seen[b1] != seen[b2] {
		t.Fatal("the members on b got two decoded values, want one shared")
	}

	b3 := spawn(b)
	if err := b.Groups().Leave("g", b1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees b's new members", func() bool {
		return sameMembers([]*Node{a, b}, "g", []PID{a1, b2, b3})
	})
	publish(a1, b2, b3)
	if err := b.Send(b2, "stop"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stopped member is gone", func() bool {
		return sameMembers([]*Node{a, b}, "g", []PID{a1, b3})
	})
	publish(a1, b3)
	select {
	case g := <-out:
		t.Fatalf("an extra delivery to %v", g.who)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestGroupsConvergeOnRealNodes: random joins, leaves, exits and
// partitions on four nodes; after the heal (redials, no Connect) every
// node shows exactly the live members.
func TestGroupsConvergeOnRealNodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	nw := memlink.NewNetwork()
	var nodes []*Node
	for i := range 4 {
		opts := []Option{onNet(nw)}
		if i > 0 {
			opts = append(opts, WithSeeds(nodes[0].Self()))
		}
		nodes = append(nodes, startNamed(t, fmt.Sprint("g", i), "c", append(opts, fastRedial)...))
	}
	full := func() bool {
		for _, n := range nodes {
			if len(n.List()) != len(nodes)-1 {
				return false
			}
		}
		return true
	}
	eventually(t, "mesh", full)
	sink := make(chan any, 1024)
	type mem struct {
		pid   PID
		group string
	}
	live := map[mem]bool{}
	var procs [][]PID = make([][]PID, len(nodes))
	steps := 200
	if testing.Short() {
		steps = 60
	}
	for range steps {
		i := rng.IntN(len(nodes))
		n := nodes[i]
		switch r := rng.IntN(100); {
		case r < 45:
			if len(procs[i]) == 0 || rng.IntN(3) == 0 {
				procs[i] = append(procs[i], member(n, sink))
			}
			pid := procs[i][rng.IntN(len(procs[i]))]
			g := fmt.Sprint("g", rng.IntN(3))
			if err := n.Groups().Join(g, pid); err != nil {
				t.Fatal(err)
			}
			live[mem{pid, g}] = true
		case r < 65:
			if len(procs[i]) == 0 {
				continue
			}
			pid := procs[i][rng.IntN(len(procs[i]))]
			g := fmt.Sprint("g", rng.IntN(3))
			if err := n.Groups().Leave(g, pid); err != nil {
				t.Fatal(err)
			}
			delete(live, mem{pid, g})
		case r < 85:
			if len(procs[i]) == 0 {
				continue
			}
			k := rng.IntN(len(procs[i]))
			pid := procs[i][k]
			procs[i] = slices.Delete(procs[i], k, k+1)
			_ = n.Send(pid, "stop")
			for m := range live {
				if m.pid == pid {
					delete(live, m)
				}
			}
		default:
			j := rng.IntN(len(nodes))
			if j != i {
				n.partition(nodes[j].Self())
				nodes[j].partition(n.Self())
				n.heal(nodes[j].Self())
				nodes[j].heal(n.Self())
			}
		}
	}
	eventually(t, "the mesh heals by itself", full)
	for g := range 3 {
		group := fmt.Sprint("g", g)
		var want []PID
		for m := range live {
			if m.group == group {
				want = append(want, m.pid)
			}
		}
		eventually(t, "every replica of "+group+" shows the live members", func() bool {
			return sameMembers(nodes, group, slices.Clone(want))
		})
	}
}

func TestPeerOverItsGroupBoundIsCut(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := startNamed(t, "a", "c")
	b := startNamed(t, "b", "c", WithMaxPeerGroupMembers(2), WithMetrics(reg))
	connect(t, a, b)
	sink := make(chan any, 8)
	for range 3 {
		if err := a.Groups().Join("big", member(a, sink)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "b cuts a", func() bool { return !connected(b, a.Self()) || len(b.Groups().Members("big")) < 3 })
	if n := len(b.Groups().Members("big")); n > 2 {
		t.Fatalf("b holds %d of a's memberships, over its bound of 2", n)
	}
	eventually(t, "the cut counted", func() bool {
		return counterBy(t, reg, "mesh_peers_cut_total", "limit")["group_members"] >= 1
	})
}

// One Publish is one frame per other node that has members, whatever the
// number of members: 10 nodes with members and one without, 100 members on
// each of the ten; the publisher writes exactly 9 frames (counted by the
// node's frame counters, mesh_frames_sent_total), each node with members
// reads exactly one from it, the memberless node none, and every member
// gets the message once.
func TestPublishIsOneFramePerNodeWithMembers(t *testing.T) {
	const withMembers, perNode = 10, 100
	// No ticks (nor the node lists that ride on them) during the count.
	quiet := WithTickTimeout(time.Hour)
	hub := startNamed(t, "p0", "c", quiet, fastRedial)
	nodes := []*Node{hub}
	for i := 1; i <= withMembers; i++ { // p10 has no members
		nodes = append(nodes, startNamed(t, fmt.Sprintf("p%d", i), "c", quiet, fastRedial, WithSeeds(hub.Self())))
	}
	eventually(t, "a full mesh", func() bool {
		for _, n := range nodes {
			if len(n.List()) != len(nodes)-1 {
				return false
			}
		}
		return true
	})
	var got atomic.Int64
	for _, n := range nodes[:withMembers] {
		for range perNode {
			pid := n.SpawnFunc(func(p *Process) error {
				for {
					if _, err := p.Receive(context.Background()); err != nil {
						return nil
					}
					got.Add(1)
				}
			})
			if err := n.Groups().Join("fan", pid); err != nil {
				t.Fatal(err)
			}
		}
	}
	const members = withMembers * perNode
	eventually(t, "every node sees every member", func() bool {
		for _, n := range nodes {
			if len(n.Groups().Members("fan")) != members {
				return false
			}
		}
		return true
	})
	framesOut := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, pe := range hub.upPeers() {
			out[pe.name] = pe.stats.framesOut.Load()
		}
		return out
	}
	framesIn := func(n *Node) uint64 {
		pe := n.peerIfUp(hub.Self())
		if pe == nil {
			t.Fatalf("%s lost the hub", n.Self())
		}
		return pe.stats.framesIn.Load()
	}
	out0 := framesOut()
	in0 := make([]uint64, len(nodes))
	for i, n := range nodes[1:] {
		in0[i+1] = framesIn(n)
	}
	if err := hub.Groups().Publish("fan", "hello"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every member has the message", func() bool { return got.Load() == members })
	out1 := framesOut()
	sent := uint64(0)
	for name, n := range out1 {
		sent += n - out0[name]
	}
	if sent != withMembers-1 {
		t.Errorf("one Publish to %d members on %d nodes wrote %d frames, want %d (%v -> %v)", members, withMembers, sent, withMembers-1, out0, out1)
	}
	for i, n := range nodes[1:] {
		want := uint64(1)
		if i+1 == withMembers {
			want = 0 // no members there
		}
		if d := framesIn(n) - in0[i+1]; d != want {
			t.Errorf("%s read %d frames from the publisher, want %d", n.Self(), d, want)
		}
	}
	if n := got.Load(); n != members {
		t.Errorf("%d deliveries, want %d", n, members)
	}
}

// What a node decodes on a peer's loop (a published message, a small call
// reply) may run a registered type's UnmarshalBinary, the user's code, on
// input the peer chose. A panic there must not end the OS process: the
// publish is dropped and counted like any undecodable message, the call
// fails with codec.ErrCorrupt, and both nodes go on.
func TestAPanicWhileDecodingOnTheLoopLeavesTheNodeUp(t *testing.T) {
	registerPicky(t)
	a := startNamed(t, "a", "c", fastRedial)
	b := startNamed(t, "b", "c", fastRedial, WithSeeds(a.Self()))
	eventually(t, "mesh", func() bool { return connected(a, b.Self()) })
	got := make(chan any, 4)
	member := b.SpawnFunc(func(p *Process) error {
		for {
			m, err := p.Receive(context.Background())
			if err != nil {
				return nil
			}
			switch m := m.(type) {
			case Request:
				_ = p.Reply(m, picky{"panic"})
			default:
				got <- m
			}
		}
	})
	if err := b.Groups().Join("g", member); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees the member", func() bool { return sameMembers([]*Node{a, b}, "g", []PID{member}) })
	for _, m := range []any{picky{"panic"}, "after"} {
		if err := a.Groups().Publish("g", m); err != nil {
			t.Fatal(err)
		}
	}
	if m := <-got; m != "after" {
		t.Fatalf("the member got %#v first, want the publish after the one that panicked", m)
	}
	if n := b.metrics.decodeErrors.Load(); n != 1 {
		t.Fatalf("decode errors counted on b: %d, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if _, err := a.Call(ctx, member, "reply with a panic"); !errors.Is(err, codec.ErrCorrupt) {
		t.Fatalf("Call whose reply panics in decoding: %v, want codec.ErrCorrupt", err)
	}
	if !connected(a, b.Self()) {
		t.Fatal("the link went down")
	}
}
