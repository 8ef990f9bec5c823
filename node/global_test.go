package node

// The global registry on real nodes: in-process nodes on an in-memory
// network (memlink; one test on 127.0.0.1 over TLS), full mesh, partitions
// through the network (partition/heal, memnet_test.go). Every wait polls
// for a condition with a bound (eventually).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/global"
	"github.com/meshrt/mesh/internal/memlink"
	"github.com/meshrt/mesh/internal/testutil"
)

// startMesh starts k nodes on an in-memory network and connects them
// through the first; gossip makes the full mesh, which startMesh waits for.
func startMesh(t *testing.T, prefix string, k int) []*Node {
	t.Helper()
	return startMeshWith(t, prefix, k, onNet(memlink.NewNetwork()))
}

// startMeshWith is startMesh with opts given to every node: without onNet,
// the nodes talk TLS over 127.0.0.1.
func startMeshWith(t *testing.T, prefix string, k int, opts ...Option) []*Node {
	t.Helper()
	nodes := make([]*Node, k)
	for i := range nodes {
		nodes[i] = startNamed(t, fmt.Sprintf("%s%d", prefix, i), "cookie", opts...)
	}
	for _, n := range nodes[1:] {
		connect(t, nodes[0], n)
	}
	waitMesh(t, nodes)
	return nodes
}

// waitMesh waits until every node lists every other as connected.
func waitMesh(t *testing.T, nodes []*Node) {
	t.Helper()
	eventually(t, "full mesh", func() bool {
		for _, n := range nodes {
			if len(n.List()) != len(nodes)-1 {
				return false
			}
		}
		return true
	})
}

// holder is a process that keeps running until sent "stop" and records every
// Conflict it receives.
type holder struct {
	pid PID

	mu        sync.Mutex
	conflicts []global.Conflict // guarded by mu
}

func spawnHolder(t testing.TB, n *Node) *holder {
	t.Helper()
	h := &holder{}
	h.pid = n.SpawnFunc(func(p *Process) error {
		for {
			m, err := p.Receive(context.Background())
			if err != nil || m == "stop" {
				return nil
			}
			if c, ok := m.(global.Conflict); ok {
				h.mu.Lock()
				h.conflicts = append(h.conflicts, c)
				h.mu.Unlock()
			}
		}
	})
	if h.pid.IsZero() {
		t.Fatalf("spawn on %s failed", n.Self())
	}
	return h
}

func (h *holder) told() []global.Conflict {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]global.Conflict(nil), h.conflicts...)
}

// stopHolder ends h's process and waits until it has left n's table.
func stopHolder(t *testing.T, n *Node, h *holder) {
	t.Helper()
	if err := n.Send(h.pid, "stop"); err != nil {
		t.Fatal(err)
	}
	waitDead(t, n, h.pid)
}

// seenEverywhere reports whether every node maps name to pid (or, for the
// zero PID, does not know name).
func seenEverywhere(nodes []*Node, name string, pid PID) bool {
	for _, n := range nodes {
		got, ok := n.Global().Whereis(name)
		if pid.IsZero() {
			if ok {
				return false
			}
		} else if !ok || got != pid {
			return false
		}
	}
	return true
}

func mustRegister(t *testing.T, n *Node, name string, pid PID) {
	t.Helper()
	if err := n.Global().Register(name, pid); err != nil {
		t.Fatalf("%s: Register(%q, %v): %v", n.Self(), name, pid, err)
	}
}

func TestGlobalRegistrationOfLocalAndRemotePIDsReachesEveryNode(t *testing.T) {
	nodes := startMeshWith(t, "reg", 4) // over TLS: the registry on the real transport
	local := spawnHolder(t, nodes[0])
	remote := spawnHolder(t, nodes[2])

	mustRegister(t, nodes[0], "local", local.pid)
	mustRegister(t, nodes[1], "remote", remote.pid) // owned by nodes[2]

	// A registering node reads its own write at once.
	if got, ok := nodes[0].Global().Whereis("local"); !ok || got != local.pid {
		t.Fatalf("registering node: Whereis(local) = %v, %v", got, ok)
	}
	if got, ok := nodes[1].Global().Whereis("remote"); !ok || got != remote.pid {
		t.Fatalf("registering node: Whereis(remote) = %v, %v", got, ok)
	}
	eventually(t, "both names on every node", func() bool {
		return seenEverywhere(nodes, "local", local.pid) && seenEverywhere(nodes, "remote", remote.pid)
	})
	for _, n := range nodes {
		if got := n.Global().Len(); got != 2 {
			t.Errorf("%s: Len() = %d, want 2", n.Self(), got)
		}
	}
	for _, n := range nodes {
		if got := n.Global().Names(); !slices.Equal(got, []string{"local", "remote"}) {
			t.Errorf("%s: Names() = %v", n.Self(), got)
		}
	}
	// The name is usable as an address from anywhere.
	pid, _ := nodes[3].Global().Whereis("remote")
	if err := nodes[3].Send(pid, "hello"); err != nil {
		t.Fatal(err)
	}
}

// A new user once called a.Global().NodeDown(b): b's names vanished from a
// while b stayed connected. What Global returns offers no call that drives
// the replica from outside.
func TestGlobalUserCannotReachTheReplicasWiring(t *testing.T) {
	n := startNamed(t, "a", "c")
	typ := reflect.TypeOf(n.Global())
	for _, m := range []string{"NodeDown", "ProcessExited", "Merge", "Handle", "Snapshot", "SnapshotTo"} {
		if _, ok := typ.MethodByName(m); ok {
			t.Errorf("Global() offers %s to users", m)
		}
	}
	for _, m := range []string{"Register", "Unregister", "Whereis", "Names", "Len"} {
		if _, ok := typ.MethodByName(m); !ok {
			t.Errorf("Global() lacks %s", m)
		}
	}
}

func TestGlobalNameTakenOnEveryNodeOnceKnown(t *testing.T) {
	nodes := startMesh(t, "taken", 3)
	first := spawnHolder(t, nodes[0])
	mustRegister(t, nodes[0], "svc", first.pid)
	eventually(t, "svc everywhere", func() bool { return seenEverywhere(nodes, "svc", first.pid) })

	for _, n := range nodes {
		for _, owner := range nodes {
			other := spawnHolder(t, owner)
			t.Run(fmt.Sprintf("on %s for a pid of %s", n.Self(), owner.Self()), func(t *testing.T) {
				err := n.Global().Register("svc", other.pid)
				if !errors.Is(err, global.ErrNameTaken) {
					t.Fatalf("Register = %v, want ErrNameTaken", err)
				}
			})
		}
	}
	if !seenEverywhere(nodes, "svc", first.pid) {
		t.Fatal("a refused registration changed the name")
	}
}

func TestGlobalUnregisterRemovesEverywhereFromAnyNode(t *testing.T) {
	nodes := startMesh(t, "unreg", 3)
	owner := spawnHolder(t, nodes[0])
	tests := []struct {
		name      string
		registrar int // node that calls Register
		caller    int // node that calls Unregister
	}{
		{"registered and unregistered by the owner", 0, 0},
		{"unregistered by another node", 0, 2},
		{"registered elsewhere, unregistered by the owner", 1, 0},
		{"registered and unregistered by a third node", 1, 1},
		{"registered by one non-owner, unregistered by another", 1, 2},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("u%d", i)
			mustRegister(t, nodes[tc.registrar], name, owner.pid)
			eventually(t, name+" everywhere", func() bool { return seenEverywhere(nodes, name, owner.pid) })
			if err := nodes[tc.caller].Global().Unregister(name); err != nil {
				t.Fatalf("Unregister: %v", err)
			}
			if _, ok := nodes[tc.caller].Global().Whereis(name); ok {
				t.Fatal("the unregistering node still shows the name")
			}
			eventually(t, name+" gone everywhere", func() bool { return seenEverywhere(nodes, name, PID{}) })
			// The name is free again, anywhere.
			mustRegister(t, nodes[2], name, owner.pid)
			eventually(t, name+" back everywhere", func() bool { return seenEverywhere(nodes, name, owner.pid) })
		})
	}
	if err := nodes[1].Global().Unregister("never-registered"); !errors.Is(err, global.ErrNotRegistered) {
		t.Fatalf("Unregister of an unknown name = %v, want ErrNotRegistered", err)
	}
}

func TestGlobalProcessExitDropsItsNamesEverywhere(t *testing.T) {
	nodes := startMesh(t, "exit", 3)
	h := spawnHolder(t, nodes[1])
	bystander := spawnHolder(t, nodes[1])
	mustRegister(t, nodes[1], "a", h.pid)
	mustRegister(t, nodes[0], "b", h.pid) // a request to nodes[1], its owner
	mustRegister(t, nodes[2], "c", bystander.pid)
	eventually(t, "names everywhere", func() bool {
		return seenEverywhere(nodes, "a", h.pid) && seenEverywhere(nodes, "b", h.pid) &&
			seenEverywhere(nodes, "c", bystander.pid)
	})
	stopHolder(t, nodes[1], h)
	eventually(t, "the dead process's names gone everywhere", func() bool {
		return seenEverywhere(nodes, "a", PID{}) && seenEverywhere(nodes, "b", PID{})
	})
	if !seenEverywhere(nodes, "c", bystander.pid) {
		t.Fatal("another process's name went too")
	}
}

func TestGlobalNodeStopDropsItsNamesEverywhere(t *testing.T) {
	nodes := startMesh(t, "stop", 4)
	doomed := nodes[3]
	h := spawnHolder(t, doomed)
	keep := spawnHolder(t, nodes[0])
	mustRegister(t, doomed, "own", h.pid)
	mustRegister(t, nodes[1], "asked", h.pid) // owned by doomed, asked by another node
	mustRegister(t, doomed, "keep", keep.pid) // a name doomed registered for a survivor
	eventually(t, "names everywhere", func() bool {
		return seenEverywhere(nodes, "own", h.pid) && seenEverywhere(nodes, "asked", h.pid) &&
			seenEverywhere(nodes, "keep", keep.pid)
	})
	stopNode(t, doomed)
	rest := nodes[:3]
	eventually(t, "the stopped node's names gone from the rest", func() bool {
		return seenEverywhere(rest, "own", PID{}) && seenEverywhere(rest, "asked", PID{})
	})
	if !seenEverywhere(rest, "keep", keep.pid) {
		t.Fatal("a survivor's name, registered by the stopped node, went too")
	}
}

// partitionGroups cuts every link between a node of left and one of right.
func partitionGroups(left, right []*Node) {
	for _, a := range left {
		for _, b := range right {
			a.partition(b.Self())
			b.partition(a.Self())
		}
	}
}

// healAll lifts every partition among nodes and reconnects them into a full
// mesh.
func healAll(t *testing.T, nodes []*Node) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.heal(b.Self())
			}
		}
	}
	eventually(t, "full mesh after heal", func() bool {
		full := true
		for i, a := range nodes {
			if len(a.List()) == len(nodes)-1 {
				continue
			}
			full = false
			for _, b := range nodes[i+1:] {
				ctx, cancel := context.WithTimeout(context.Background(), testWait/4)
				_ = a.Connect(ctx, b.Self()) // a race with b's own dial may fail one attempt
				cancel()
			}
		}
		return full
	})
}

// waitApart waits until a partition between a and b has taken effect: the
// hook closes the connection asynchronously, and a Connect made before the
// close lands would return the dying connection.
func waitApart(t *testing.T, a, b *Node) {
	t.Helper()
	eventually(t, "partition of "+a.Self()+" and "+b.Self(), func() bool {
		return !slices.Contains(a.List(), b.Self()) && !slices.Contains(b.List(), a.Self())
	})
}

func TestGlobalConflictAcrossPartitionTellsExactlyTheLoser(t *testing.T) {
	for _, tc := range []struct {
		name  string
		left  int // nodes on the left side; the rest are on the right
		total int
	}{
		{"two nodes", 1, 2},
		{"one against two", 1, 3},
		{"two against three", 2, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := startMesh(t, "split", tc.total)
			left, right := nodes[:tc.left], nodes[tc.left:]
			partitionGroups(left, right)
			eventually(t, "the partition", func() bool {
				return len(left[0].List()) == len(left)-1 && len(right[0].List()) == len(right)-1
			})
			// Each side registers the name for one of its own processes,
			// the left one through a node other than the owner when it can.
			l := spawnHolder(t, left[len(left)-1])
			r := spawnHolder(t, right[len(right)-1])
			mustRegister(t, left[0], "leader", l.pid)
			mustRegister(t, right[0], "leader", r.pid)
			eventually(t, "each side sees its own", func() bool {
				return seenEverywhere(left, "leader", l.pid) && seenEverywhere(right, "leader", r.pid)
			})

			healAll(t, nodes)
			var winner PID
			eventually(t, "one winner everywhere", func() bool {
				w, ok := nodes[0].Global().Whereis("leader")
				winner = w
				return ok && seenEverywhere(nodes, "leader", w)
			})
			loser, won := l, r
			if winner == l.pid {
				loser, won = r, l
			} else if winner != r.pid {
				t.Fatalf("winner %v is neither side's process", winner)
			}
			eventually(t, "the loser told", func() bool { return len(loser.told()) > 0 })
			want := global.Conflict{Name: "leader", Winner: won.pid}
			if got := loser.told(); len(got) != 1 || got[0] != want {
				t.Fatalf("loser got %v, want exactly [%v]", got, want)
			}
			if got := won.told(); len(got) != 0 {
				t.Fatalf("winner got %v, want nothing", got)
			}
			var counted uint64
			for _, n := range nodes {
				counted += n.Global().Conflicts()
			}
			if counted != 1 {
				t.Fatalf("conflict counters sum to %d, want 1", counted)
			}
			// The loser keeps running.
			if nodes[0].Global() == nil || loserNode(nodes, loser.pid).local(loser.pid) == nil {
				t.Fatal("the losing process was killed")
			}
		})
	}
}

func loserNode(nodes []*Node, pid PID) *Node {
	for _, n := range nodes {
		if n.Self() == pid.Node {
			return n
		}
	}
	return nil
}

func TestGlobalBadInputIsAClearError(t *testing.T) {
	nodes := startMesh(t, "bad", 2)
	n := nodes[0]
	live := spawnHolder(t, n)
	dead := spawnHolder(t, n)
	stopHolder(t, n, dead)
	tests := []struct {
		name    string
		regName string
		pid     PID
		want    error
	}{
		{"empty name", "", live.pid, global.ErrInvalidName},
		{"name over the limit", strings.Repeat("x", global.MaxNameLen+1), live.pid, global.ErrInvalidName},
		{"zero pid", "z", PID{}, global.ErrInvalidPID},
		{"pid of an exited local process", "d", dead.pid, global.ErrNoProcess},
		{"pid of an earlier incarnation of this node", "i", PID{Node: n.Self(), Incarnation: n.incarnation + 1, ID: live.pid.ID}, global.ErrNoProcess},
		{"pid of an unknown node", "u", PID{Node: "nobody@127.0.0.1:1", Incarnation: 1, ID: 1}, global.ErrNodeDown},
		{"pid with a malformed node name", "m", PID{Node: "no-at-sign", Incarnation: 1, ID: 1}, global.ErrNodeDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := n.Global().Register(tc.regName, tc.pid)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Register = %v, want %v", err, tc.want)
			}
			if err := n.Global().Unregister(tc.regName); tc.regName != "" && len(tc.regName) <= global.MaxNameLen && !errors.Is(err, global.ErrNotRegistered) {
				t.Fatalf("Unregister after a refused Register = %v, want ErrNotRegistered", err)
			}
		})
	}
	if got := n.Global().Len(); got != 0 {
		t.Fatalf("refused registrations left %d names", got)
	}
	for _, bad := range []string{"", strings.Repeat("y", global.MaxNameLen+1)} {
		if err := n.Global().Unregister(bad); !errors.Is(err, global.ErrInvalidName) {
			t.Errorf("Unregister(%d bytes) = %v, want ErrInvalidName", len(bad), err)
		}
	}

	// A PID of a connected node whose process is gone (or never was) is
	// accepted by the registering node, which cannot know, and refused by
	// the owner: the name disappears everywhere.
	peer := nodes[1]
	gone := spawnHolder(t, peer)
	stopHolder(t, peer, gone)
	stale := PID{Node: peer.Self(), Incarnation: peer.incarnation + 1, ID: 1}
	for name, pid := range map[string]PID{"dead-remote": gone.pid, "stale-incarnation": stale} {
		mustRegister(t, n, name, pid)
		eventually(t, name+" refused by its owner", func() bool { return seenEverywhere(nodes, name, PID{}) })
	}
}

func TestGlobalWhereisRunsInParallelWithWriters(t *testing.T) {
	nodes := startMesh(t, "race", 3)
	stable := spawnHolder(t, nodes[0])
	mustRegister(t, nodes[0], "stable", stable.pid)
	eventually(t, "stable everywhere", func() bool { return seenEverywhere(nodes, "stable", stable.pid) })

	workers := make([]*holder, len(nodes))
	for i, n := range nodes {
		workers[i] = spawnHolder(t, n)
	}
	var stop atomic.Bool
	var wg, writers sync.WaitGroup
	errs := make(chan error, 16)
	for _, n := range nodes {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					if pid, ok := n.Global().Whereis("stable"); !ok || pid != stable.pid {
						errs <- fmt.Errorf("%s: Whereis(stable) = %v, %v", n.Self(), pid, ok)
						return
					}
					for j := range 8 {
						n.Global().Whereis(fmt.Sprintf("churn-%d", j))
					}
				}
			}()
		}
	}
	const rounds = 200
	for i, n := range nodes {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for r := range rounds {
				name := fmt.Sprintf("churn-%d", (r+i)%8)
				pid := workers[(i+r)%len(workers)].pid
				if err := n.Global().Register(name, pid); err == nil {
					_ = n.Global().Unregister(name)
				}
			}
		}()
	}
	writers.Wait()
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "churn settled", func() bool {
		for j := range 8 {
			if !seenEverywhere(nodes, fmt.Sprintf("churn-%d", j), PID{}) {
				return false
			}
		}
		return seenEverywhere(nodes, "stable", stable.pid)
	})
}

func TestGlobalQuickReconnectKeepsThePeersNames(t *testing.T) {
	nodes := startMesh(t, "flap", 2)
	a, b := nodes[0], nodes[1]
	h := spawnHolder(t, b)
	mustRegister(t, b, "svc", h.pid)
	eventually(t, "svc on both", func() bool { return seenEverywhere(nodes, "svc", h.pid) })
	for i := range 30 {
		a.partition(b.Self())
		waitApart(t, a, b)
		a.heal(b.Self())
		healAll(t, nodes)
		eventually(t, fmt.Sprintf("svc on both after reconnect %d", i), func() bool {
			return seenEverywhere(nodes, "svc", h.pid)
		})
	}
}

// convergence drives the property test on real nodes: one cluster, many
// seeds (rounds). Each round makes random registrations, unregistrations,
// spawns, process exits, link cuts and heals, then heals everything, lets the
// traffic settle and checks the registry's promises.
type convergence struct {
	t     *testing.T
	rng   *rand.Rand
	nodes []*Node
	names []string
	live  [][]*holder // per node
	dead  []*holder
	cut   map[[2]int]bool
	regs  map[regKey]int // successful Register calls per (name, pid)
	stats convergenceStats
}

type regKey struct {
	name string
	pid  PID
}

type convergenceStats struct {
	rounds, ops, registered, cuts, exits int
}

func newConvergence(t *testing.T, nodes []*Node, names int) *convergence {
	c := &convergence{t: t, nodes: nodes, cut: make(map[[2]int]bool), regs: make(map[regKey]int)}
	for i := range names {
		c.names = append(c.names, fmt.Sprintf("n%d", i))
	}
	c.live = make([][]*holder, len(nodes))
	for i, n := range nodes {
		for range 3 {
			c.live[i] = append(c.live[i], spawnHolder(t, n))
		}
	}
	return c
}

func (c *convergence) node() int { return c.rng.IntN(len(c.nodes)) }

// pidFor picks a live process of node i or of a node i is connected to.
func (c *convergence) pidFor(i int) (PID, bool) {
	cands := []int{i}
	for j, n := range c.nodes {
		if j != i && slices.Contains(c.nodes[i].List(), n.Self()) {
			cands = append(cands, j)
		}
	}
	j := cands[c.rng.IntN(len(cands))]
	if len(c.live[j]) == 0 {
		return PID{}, false
	}
	return c.live[j][c.rng.IntN(len(c.live[j]))].pid, true
}

func (c *convergence) step() {
	c.stats.ops++
	switch r := c.rng.IntN(100); {
	case r < 45:
		i := c.node()
		pid, ok := c.pidFor(i)
		if !ok {
			return
		}
		name := c.names[c.rng.IntN(len(c.names))]
		err := c.nodes[i].Global().Register(name, pid)
		switch {
		case err == nil:
			c.regs[regKey{name, pid}]++
			c.stats.registered++
		case errors.Is(err, global.ErrNameTaken), errors.Is(err, global.ErrNodeDown), errors.Is(err, global.ErrNoProcess):
		default:
			c.t.Fatalf("Register(%q, %v) on %s: %v", name, pid, c.nodes[i].Self(), err)
		}
	case r < 65:
		i := c.node()
		name := c.names[c.rng.IntN(len(c.names))]
		if err := c.nodes[i].Global().Unregister(name); err != nil && !errors.Is(err, global.ErrNotRegistered) {
			c.t.Fatalf("Unregister(%q) on %s: %v", name, c.nodes[i].Self(), err)
		}
	case r < 75:
		if i := c.node(); len(c.live[i]) < 6 {
			c.live[i] = append(c.live[i], spawnHolder(c.t, c.nodes[i]))
		}
	case r < 85:
		i := c.node()
		if len(c.live[i]) == 0 {
			return
		}
		k := c.rng.IntN(len(c.live[i]))
		h := c.live[i][k]
		c.live[i] = slices.Delete(c.live[i], k, k+1)
		c.dead = append(c.dead, h)
		c.stats.exits++
		if err := c.nodes[i].Send(h.pid, "stop"); err != nil {
			c.t.Fatal(err)
		}
	case r < 93:
		i, j := c.node(), c.node()
		if i == j {
			return
		}
		c.cut[[2]int{min(i, j), max(i, j)}] = true
		c.stats.cuts++
		c.nodes[i].partition(c.nodes[j].Self())
		c.nodes[j].partition(c.nodes[i].Self())
	default:
		for p := range c.cut {
			delete(c.cut, p)
			a, b := c.nodes[p[0]], c.nodes[p[1]]
			waitApart(c.t, a, b)
			a.heal(b.Self())
			b.heal(a.Self())
			// Wait until both ends are up: partitioning a connection the
			// acceptor has admitted but not yet attached races in the
			// partition hook (see TestPartitionWhileTheAcceptorAttaches).
			eventually(c.t, "reconnect of "+a.Self()+" and "+b.Self(), func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), testWait/4)
				_ = a.Connect(ctx, b.Self()) // may lose a race with b's dial: retried
				cancel()
				return slices.Contains(a.List(), b.Self()) && slices.Contains(b.List(), a.Self())
			})
			return
		}
	}
}

// settled reports, after the final heal, whether every promise holds; if not,
// why.
func (c *convergence) settled() error {
	for _, h := range c.dead {
		if loserNode(c.nodes, h.pid).local(h.pid) != nil {
			return fmt.Errorf("%v still exiting", h.pid)
		}
	}
	alive := make(map[PID]bool)
	for _, hs := range c.live {
		for _, h := range hs {
			alive[h.pid] = true
		}
	}
	ref := make(map[string]PID)
	for _, name := range c.names {
		if pid, ok := c.nodes[0].Global().Whereis(name); ok {
			ref[name] = pid
		}
	}
	for _, n := range c.nodes {
		got := make(map[string]PID)
		for _, name := range c.names {
			if pid, ok := n.Global().Whereis(name); ok {
				got[name] = pid
			}
		}
		if !maps.Equal(got, ref) {
			return fmt.Errorf("replica of %s differs from %s's:\n %v\n %v", n.Self(), c.nodes[0].Self(), got, ref)
		}
		if n.Global().Len() != len(got) {
			return fmt.Errorf("%s: Len() = %d, names found %d", n.Self(), n.Global().Len(), len(got))
		}
	}
	for name, pid := range ref {
		if !alive[pid] {
			return fmt.Errorf("%q maps to %v, not a live process", name, pid)
		}
	}
	return nil
}

// checkConflicts: no process was told more often that it lost a name than it
// had registrations of that name that are no longer standing, and no more
// Conflict messages arrived than the nodes counted.
func (c *convergence) checkConflicts() (told, counted uint64) {
	c.t.Helper()
	tally := make(map[regKey]int)
	for _, hs := range append(slices.Concat(c.live...), c.dead...) {
		for _, m := range hs.told() {
			if m.Winner == hs.pid {
				c.t.Errorf("%v told it lost %q to itself", hs.pid, m.Name)
			}
			tally[regKey{m.Name, hs.pid}]++
			told++
		}
	}
	for k, got := range tally {
		standing := 0
		if pid, ok := c.nodes[0].Global().Whereis(k.name); ok && pid == k.pid {
			standing = 1
		}
		if limit := c.regs[k] - standing; got > limit {
			c.t.Errorf("%v told %d times it lost %q; %d registrations, %d standing", k.pid, got, k.name, c.regs[k], standing)
		}
	}
	for _, n := range c.nodes {
		counted += n.Global().Conflicts()
	}
	if told > counted {
		c.t.Errorf("%d Conflict messages arrived, the nodes counted %d", told, counted)
	}
	return told, counted
}

func (c *convergence) round(seed uint64, steps int) {
	c.t.Helper()
	c.rng = rand.New(rand.NewPCG(seed, 0x6d657368))
	for range steps {
		c.step()
	}
	for p := range c.cut {
		waitApart(c.t, c.nodes[p[0]], c.nodes[p[1]])
	}
	clear(c.cut)
	healAll(c.t, c.nodes)
	var why error
	deadline := time.Now().Add(testWait)
	for why = c.settled(); why != nil && time.Now().Before(deadline); why = c.settled() {
		time.Sleep(2 * time.Millisecond)
	}
	if why != nil {
		c.t.Fatalf("seed %d: not settled after %v: %v", seed, testWait, why)
	}
	c.checkConflicts()
	if c.t.Failed() {
		c.t.Fatalf("seed %d failed", seed)
	}
	c.stats.rounds++
	c.dead = c.dead[:0:0]
}

// TestGlobalConvergence is issue 6's property test on five real nodes in one
// process: random registrations, unregistrations, process exits, link cuts and
// heals; after heal and settle every replica is equal, each name maps to one
// live process, no name of a dead process remains and no loser is told twice.
// The cluster lives across rounds, so each seed starts from the state the last
// one left. With MESH_SOAK set to a duration (make soak), it keeps drawing
// new seeds, with longer rounds, for that long.
func TestGlobalConvergence(t *testing.T) {
	nodes := startMesh(t, "conv", 5)
	c := newConvergence(t, nodes, 12)
	seeds, steps := uint64(40), 150
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		c.round(seed, steps)
	}
	told, counted := c.checkConflicts()
	t.Logf("%d seeds of %d steps: %+v; conflicts told %d, counted %d", seeds, steps, c.stats, told, counted)

	d := testutil.Soak(t)
	if d == 0 {
		return
	}
	base := rand.Uint64()
	t.Logf("soak for %v from seed %d", d, base)
	end := time.Now().Add(d)
	for seed := base; time.Now().Before(end); seed++ {
		c.round(seed, 1000)
	}
	told, counted = c.checkConflicts()
	t.Logf("soak: %+v; conflicts told %d, counted %d", c.stats, told, counted)
}

// TestPartitionWhileTheAcceptorAttaches pins a race partitions had:
// Connect returns once the dialler's end is up, while the acceptor may still
// be between admit (the peer is in n.peers) and attach. A link admitted but
// not yet attached when the partition is made must end all the same (the
// partition lived in node then and missed it; memlink delivers such an
// end's OnClose when attach starts it).
func TestPartitionWhileTheAcceptorAttaches(t *testing.T) {
	nw := memlink.NewNetwork()
	a := startNamed(t, "pa", "cookie", onNet(nw))
	b := startNamed(t, "pb", "cookie", onNet(nw))
	for range 20 {
		connect(t, a, b)
		b.partition(a.Self())
		waitApart(t, a, b)
		b.heal(a.Self())
	}
}

// Regression: a node sent its registry and groups snapshots to a new peer
// without waiting, before the link's loop started draining, so a snapshot
// over the queue's hard limit (four times the high-water mark: 8 MiB on a
// real link, 16 KiB on this test network) cut the link as a slow consumer
// at once: a node owning some 30 000 long names could join no cluster.
func TestSnapshotsLargerThanTheQueueLimitStillSync(t *testing.T) {
	nw := memlink.NewNetwork(memlink.WithWaterMarks(1<<10, 4<<10))
	a := startNamed(t, "a", "c", onNet(nw))
	b := startNamed(t, "b", "c", onNet(nw))
	holder := a.SpawnFunc(func(p *Process) error { _, err := recv(p); return err })
	const names = 200 // about 55 KB of snapshot each
	pad := strings.Repeat("x", 240)
	for i := range names {
		if err := a.Global().Register(fmt.Sprintf("%s%08d", pad, i), holder); err != nil {
			t.Fatal(err)
		}
		if err := a.Groups().Join(fmt.Sprintf("%s%08d", pad, i), holder); err != nil {
			t.Fatal(err)
		}
	}
	connect(t, b, a)
	eventually(t, "b has a's names and groups", func() bool {
		return b.Global().Len() == names && len(b.Groups().Which()) == names
	})
	if !connected(b, a.Self()) {
		t.Fatal("the link did not survive the snapshots")
	}
}
