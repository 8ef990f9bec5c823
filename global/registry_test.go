package global

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshrt/mesh/codec"
)

// newTestCluster returns n connected, synced nodes.
func newTestCluster(t *testing.T, n int) *simCluster {
	t.Helper()
	c := newSimCluster(t, 1, n, 1)
	c.net.Settle()
	return c
}

func wantEverywhere(t *testing.T, c *simCluster, name string, pid codec.PID) {
	t.Helper()
	for _, n := range c.nodes {
		got, ok := n.r.Whereis(name)
		switch {
		case pid.IsZero() && ok:
			t.Errorf("%s: Whereis(%q) = %v, want absent", n.name, name, got)
		case !pid.IsZero() && (!ok || got != pid):
			t.Errorf("%s: Whereis(%q) = %v, %v, want %v", n.name, name, got, ok, pid)
		}
	}
}

func TestRegisterRefusesBadInput(t *testing.T) {
	c := newTestCluster(t, 2)
	n0 := c.nodes[0]
	p0 := c.spawn(0)
	p1 := c.spawn(1)
	dead := c.spawn(0)
	delete(n0.alive, dead)
	oldInc := codec.PID{Node: n0.name, Incarnation: n0.inc - 1, ID: p0.ID}
	if err := n0.r.Register("taken", p0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		reg  string
		pid  codec.PID
		want error
	}{
		{"empty name", "", p0, ErrInvalidName},
		{"name over the limit", strings.Repeat("x", MaxNameLen+1), p0, ErrInvalidName},
		{"zero pid", "a", codec.PID{}, ErrInvalidPID},
		{"dead local process", "a", dead, ErrNoProcess},
		{"pid of an earlier incarnation", "a", oldInc, ErrNoProcess},
		{"pid of an unknown node", "a", codec.PID{Node: "ghost@h:1", Incarnation: 1, ID: 1}, ErrNodeDown},
		{"name known here", "taken", p1, ErrNameTaken},
		{"name known here, same pid", "taken", p0, ErrNameTaken},
		{"longest name", strings.Repeat("x", MaxNameLen), p0, nil},
		{"remote pid of a connected node", "b", p1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := n0.r.Register(tt.reg, tt.pid)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Register(%.10q, %v) = %v, want %v", tt.reg, tt.pid, err, tt.want)
			}
		})
	}
}

func TestRegisterIsSeenByEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	p := c.spawn(0)
	if err := c.nodes[0].r.Register("svc", p); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.nodes[0].r.Whereis("svc"); !ok || got != p {
		t.Fatalf("registering node does not read its own write: %v %v", got, ok)
	}
	c.net.Flush()
	wantEverywhere(t, c, "svc", p)
	for _, n := range c.nodes {
		if n.r.Len() != 1 {
			t.Errorf("%s: Len = %d, want 1", n.name, n.r.Len())
		}
	}
	// Known anywhere → taken anywhere.
	if err := c.nodes[2].r.Register("svc", c.spawn(2)); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("second Register on another node = %v, want ErrNameTaken", err)
	}
}

func TestRegisterOfARemoteProcessIsOwnedByItsNode(t *testing.T) {
	c := newTestCluster(t, 3)
	p1 := c.spawn(1)
	if err := c.nodes[0].r.Register("svc", p1); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.nodes[0].r.Whereis("svc"); !ok || got != p1 {
		t.Fatalf("pending registration not visible on its node: %v %v", got, ok)
	}
	c.net.Flush()
	wantEverywhere(t, c, "svc", p1)
	if _, ok := c.nodes[1].r.own["svc"]; !ok {
		t.Errorf("n1 does not own the registration of its process")
	}
	if len(c.nodes[0].r.pending) != 0 {
		t.Errorf("request still pending after the owner answered: %v", c.nodes[0].r.pending)
	}
	// The owner's process exit removes it everywhere.
	delete(c.nodes[1].alive, p1)
	c.nodes[1].r.ProcessExited(p1)
	c.net.Flush()
	wantEverywhere(t, c, "svc", codec.PID{})
}

func TestRegisterOfADeadRemoteProcessIsUndoneByItsOwner(t *testing.T) {
	c := newTestCluster(t, 3)
	p1 := c.spawn(1)
	delete(c.nodes[1].alive, p1) // died, and the registering node cannot know
	if err := c.nodes[0].r.Register("svc", p1); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	wantEverywhere(t, c, "svc", codec.PID{})
	if len(c.notes) != 0 {
		t.Errorf("a dead process was notified: %v", c.notes)
	}
}

func TestUnregister(t *testing.T) {
	tests := []struct {
		name    string
		regOn   int // node that registers
		pidOn   int // node of the process
		unregOn int // node that unregisters
	}{
		{"own name on its node", 0, 0, 0},
		{"own name from another node", 0, 0, 1},
		{"remote registration from its registrar", 0, 1, 0},
		{"remote registration from a third node", 0, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, 3)
			p := c.spawn(tt.pidOn)
			if err := c.nodes[tt.regOn].r.Register("svc", p); err != nil {
				t.Fatal(err)
			}
			c.net.Flush()
			if err := c.nodes[tt.unregOn].r.Unregister("svc"); err != nil {
				t.Fatal(err)
			}
			if pid, ok := c.nodes[tt.unregOn].r.Whereis("svc"); ok {
				t.Fatalf("Whereis right after Unregister = %v", pid)
			}
			c.net.Flush()
			wantEverywhere(t, c, "svc", codec.PID{})
			if err := c.nodes[tt.unregOn].r.Unregister("svc"); !errors.Is(err, ErrNotRegistered) {
				t.Fatalf("second Unregister = %v, want ErrNotRegistered", err)
			}
			// The name is free again, for anyone.
			q := c.spawn(2)
			if err := c.nodes[2].r.Register("svc", q); err != nil {
				t.Fatalf("re-registration: %v", err)
			}
			c.net.Flush()
			wantEverywhere(t, c, "svc", q)
		})
	}
}

func TestUnregisterBeforeTheOwnerAnswered(t *testing.T) {
	c := newTestCluster(t, 3)
	p1 := c.spawn(1)
	r0 := c.nodes[0].r
	if err := r0.Register("svc", p1); err != nil {
		t.Fatal(err)
	}
	if err := r0.Unregister("svc"); err != nil {
		t.Fatal(err)
	}
	// The owner's add arrives before its remove: the name must not flicker
	// back on the node that unregistered it.
	c.net.Deliver(0, 1) // the register request only
	c.net.Deliver(1, 0) // the owner's add; its remove is not sent yet
	if pid, ok := r0.Whereis("svc"); ok {
		t.Fatalf("unregistered name came back: %v", pid)
	}
	c.net.Flush()
	wantEverywhere(t, c, "svc", codec.PID{})
}

// An unregister of an old registration that crosses a new registration of
// the same name must not remove the new one: versions tell them apart.
func TestStaleUnregisterDoesNotRemoveANewerRegistration(t *testing.T) {
	c := newTestCluster(t, 2)
	p0 := c.spawn(0)
	r0, r1 := c.nodes[0].r, c.nodes[1].r
	if err := r0.Register("svc", p0); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	if err := r1.Unregister("svc"); err != nil { // request in flight to n0
		t.Fatal(err)
	}
	if err := r0.Unregister("svc"); err != nil {
		t.Fatal(err)
	}
	if err := r0.Register("svc", p0); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	wantEverywhere(t, c, "svc", p0)
}

// A remove of an old version arriving late (replayed) leaves the new
// registration alone.
func TestLateRemoveOfAnOldVersionIsHarmless(t *testing.T) {
	c := newTestCluster(t, 2)
	p0 := c.spawn(0)
	r0, r1 := c.nodes[0].r, c.nodes[1].r
	if err := r0.Register("svc", p0); err != nil {
		t.Fatal(err)
	}
	old := r0.own["svc"]
	if err := r0.Unregister("svc"); err != nil {
		t.Fatal(err)
	}
	if err := r0.Register("svc", p0); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	var w frameWriter
	w.add(opRemove, &old)
	if err := r1.Handle(c.nodes[0].name, w.take()); err != nil {
		t.Fatal(err)
	}
	wantEverywhere(t, c, "svc", p0)
	if newer := r0.own["svc"]; newer.Version <= old.Version {
		t.Errorf("re-registration version %d not above %d", newer.Version, old.Version)
	}
}

func TestProcessExitDropsItsNamesEverywhere(t *testing.T) {
	c := newTestCluster(t, 3)
	p, other := c.spawn(0), c.spawn(0)
	for _, name := range []string{"a", "b", "c"} {
		if err := c.nodes[0].r.Register(name, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.nodes[0].r.Register("d", other); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	delete(c.nodes[0].alive, p)
	c.nodes[0].r.ProcessExited(p)
	c.net.Flush()
	for _, name := range []string{"a", "b", "c"} {
		wantEverywhere(t, c, name, codec.PID{})
	}
	wantEverywhere(t, c, "d", other)
	// Another node's pid is not this node's business.
	c.nodes[1].r.ProcessExited(other)
	c.net.Flush()
	wantEverywhere(t, c, "d", other)
}

func TestNodeDownDropsTheNamesOfItsProcesses(t *testing.T) {
	c := newTestCluster(t, 3)
	p0, p1 := c.spawn(0), c.spawn(1)
	if err := c.nodes[0].r.Register("zero", p0); err != nil {
		t.Fatal(err)
	}
	// Registered by n2 for n1's process: still n1's name.
	if err := c.nodes[2].r.Register("one", p1); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	c.net.Cut(1, 0)
	c.net.Cut(1, 2)
	c.net.NoticeAllDown()
	for _, i := range []int{0, 2} {
		if _, ok := c.nodes[i].r.Whereis("one"); ok {
			t.Errorf("%s still finds a name of a down node's process", c.nodes[i].name)
		}
		if got, _ := c.nodes[i].r.Whereis("zero"); got != p0 {
			t.Errorf("%s lost an unrelated name", c.nodes[i].name)
		}
	}
	if got, _ := c.nodes[1].r.Whereis("one"); got != p1 {
		t.Errorf("the cut-off node lost its own process's name")
	}
	// Heal: the node's live process keeps its name and it is seen again.
	c.net.Heal(1, 0)
	c.net.Heal(1, 2)
	c.net.Flush()
	wantEverywhere(t, c, "one", p1)
	wantEverywhere(t, c, "zero", p0)
}

func TestStaleOpAfterNodeDownIsIgnored(t *testing.T) {
	c := newTestCluster(t, 2)
	p1 := c.spawn(1)
	r0 := c.nodes[0].r
	r0.NodeDown(c.nodes[1].name)
	var w frameWriter
	w.add(opAdd, &Entry{Name: "late", PID: p1, Version: 1, Origin: c.nodes[1].name})
	if err := r0.Handle(c.nodes[1].name, w.take()); err != nil {
		t.Fatal(err)
	}
	if pid, ok := r0.Whereis("late"); ok {
		t.Fatalf("an op from a node declared down was applied: %v", pid)
	}
}

func TestConflictIsSettledByTheRuleAndTheLoserToldOnce(t *testing.T) {
	for _, partitioned := range []bool{false, true} {
		t.Run(fmt.Sprintf("partitioned=%v", partitioned), func(t *testing.T) {
			c := newTestCluster(t, 3)
			if partitioned {
				c.net.Cut(0, 1)
				c.net.Cut(2, 1)
				c.net.NoticeAllDown()
			}
			p0, p1 := c.spawn(0), c.spawn(1)
			// Both accept: neither knows the other's registration yet.
			if err := c.nodes[0].r.Register("svc", p0); err != nil {
				t.Fatal(err)
			}
			if err := c.nodes[1].r.Register("svc", p1); err != nil {
				t.Fatal(err)
			}
			c.net.Flush()
			if partitioned {
				c.net.Heal(0, 1)
				c.net.Heal(2, 1)
				c.net.Flush()
			}
			e0 := Entry{Name: "svc", PID: p0, Version: 1, Origin: c.nodes[0].name}
			e1 := Entry{Name: "svc", PID: p1, Version: 1, Origin: c.nodes[1].name}
			winner, loser := e0, e1
			if Wins(e1, e0) {
				winner, loser = e1, e0
			}
			wantEverywhere(t, c, "svc", winner.PID)
			want := map[regKey]int{{loser.PID, "svc"}: 1}
			if !maps.Equal(c.notes, want) {
				t.Fatalf("notifications %v, want %v", c.notes, want)
			}
			var total uint64
			for _, n := range c.nodes {
				total += n.r.Conflicts()
			}
			if total != 1 {
				t.Fatalf("Conflicts summed over nodes = %d, want 1", total)
			}
			if !c.nodeOf(loser.PID.Node).Alive(loser.PID) {
				t.Fatalf("the loser was killed")
			}
		})
	}
}

func TestSameProcessRegisteredOnTwoNodesAtOnceIsNotAConflict(t *testing.T) {
	c := newTestCluster(t, 3)
	p1 := c.spawn(1)
	// Two nodes ask the owner at the same moment; both requests are
	// accepted by their registering nodes and reach the owner one after
	// the other.
	for _, i := range []int{0, 2} {
		if err := c.nodes[i].r.Register("svc", p1); err != nil {
			t.Fatal(err)
		}
	}
	c.net.Flush()
	wantEverywhere(t, c, "svc", p1)
	if len(c.notes) != 0 {
		t.Fatalf("the process was told it lost a name it holds: %v", c.notes)
	}
	for _, n := range c.nodes {
		if got := n.r.Conflicts(); got != 0 {
			t.Errorf("%s: Conflicts() = %d, want 0", n.name, got)
		}
	}
}

func TestMergeRefusesNamesOfOtherNodesProcesses(t *testing.T) {
	c := newTestCluster(t, 3)
	r0 := c.nodes[0].r
	// n1 relays a name of n2's process: a node only ever vouches for its own
	// processes, so a merge can never bring a name of a node this node
	// thinks is down.
	bad := encodeSnapshot(map[string]Entry{"x": {Name: "x", PID: c.spawn(2), Version: 3, Origin: c.nodes[2].name}})
	if err := r0.Merge(c.nodes[1].name, bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Merge = %v, want ErrMalformed", err)
	}
	if _, ok := r0.Whereis("x"); ok {
		t.Fatal("refused snapshot was applied")
	}
	var w frameWriter
	w.add(opAdd, &Entry{Name: "x", PID: c.spawn(2), Version: 3, Origin: c.nodes[2].name})
	if err := r0.Handle(c.nodes[1].name, w.take()); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Handle of a relayed add = %v, want ErrMalformed", err)
	}
}

func TestMergeReplacesTheEarlierCopy(t *testing.T) {
	c := newTestCluster(t, 2)
	p1 := c.spawn(1)
	r0, r1 := c.nodes[0].r, c.nodes[1].r
	if err := r1.Register("a", p1); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	snapA := r1.Snapshot()
	if err := r1.Unregister("a"); err != nil {
		t.Fatal(err)
	}
	if err := r1.Register("b", p1); err != nil {
		t.Fatal(err)
	}
	if err := r0.Merge(c.nodes[1].name, r1.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r0.Whereis("a"); ok {
		t.Error("name missing from the new snapshot survived the merge")
	}
	if got, ok := r0.Whereis("b"); !ok || got != p1 {
		t.Error("name of the new snapshot missing")
	}
	if err := r0.Merge(c.nodes[1].name, snapA); err != nil {
		t.Fatal(err)
	}
	if _, ok := r0.Whereis("b"); ok {
		t.Error("merge kept a name of the replaced copy")
	}
}

func TestMergeAndHandleRefuseTheirOwnNode(t *testing.T) {
	c := newTestCluster(t, 1)
	r := c.nodes[0].r
	if err := r.Merge(c.nodes[0].name, r.Snapshot()); !errors.Is(err, ErrMalformed) {
		t.Errorf("Merge from self = %v", err)
	}
	if err := r.Handle("", []byte{frameOps, 0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Handle from nobody = %v", err)
	}
}

func TestWithMaxNameLen(t *testing.T) {
	c := newTestCluster(t, 1)
	r := New(c.nodes[0], WithMaxNameLen(4))
	p := c.spawn(0)
	if err := r.Register("abcd", p); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("abcde", p); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("5-byte name with limit 4: %v", err)
	}
}

func TestWhereisDoesNotAllocate(t *testing.T) {
	c := newTestCluster(t, 1)
	p := c.spawn(0)
	if err := c.nodes[0].r.Register("svc", p); err != nil {
		t.Fatal(err)
	}
	r := c.nodes[0].r
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := r.Whereis("svc"); !ok {
			t.Fatal("lost")
		}
		r.Whereis("absent")
	})
	if allocs != 0 {
		t.Fatalf("Whereis allocates %.1f times per call", allocs)
	}
}

// lockedHost is a Host safe for concurrent registry callers.
type lockedHost struct {
	name     string
	mu       sync.Mutex
	notified []codec.PID
	r        atomic.Pointer[Replica]
}

func (h *lockedHost) Self() string            { return h.name }
func (h *lockedHost) Broadcast([]byte)        {}
func (h *lockedHost) Connected(n string) bool { return true }
func (h *lockedHost) Alive(p codec.PID) bool  { return true }
func (h *lockedHost) Notify(p codec.PID, _ any) {
	// Notify runs outside the registry's lock: calling back must not
	// deadlock.
	h.r.Load().Whereis("x")
	_ = h.r.Load().Register("notified", p)
	h.mu.Lock()
	h.notified = append(h.notified, p)
	h.mu.Unlock()
}

// Readers run in parallel with every kind of writer (run under -race): each
// name i is only ever bound to a PID with ID i, so a torn or mixed read shows.
func TestWhereisInParallelWithWriters(t *testing.T) {
	h := &lockedHost{name: "a@h:1"}
	r := New(h)
	h.r.Store(r)
	const names = 512
	name := func(i int) string { return fmt.Sprintf("n%d", i) }
	pidOf := func(node string, i int) codec.PID { return codec.PID{Node: node, Incarnation: 1, ID: uint64(i)} }
	peer := make(map[string]Entry)
	for i := range names {
		if i%2 == 1 {
			peer[name(i)] = Entry{Name: name(i), PID: pidOf("b@h:2", i), Version: 1, Origin: "b@h:2"}
		}
	}
	snap := encodeSnapshot(peer)

	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for k := 0; !stop.Load(); k++ {
				i := k % names
				if pid, ok := r.Whereis(name(i)); ok && pid.ID != uint64(i) {
					t.Errorf("Whereis(%s) = %v: torn read", name(i), pid)
					return
				}
			}
		})
	}
	for round := range 20 {
		for i := 0; i < names; i += 2 {
			_ = r.Register(name(i), pidOf(h.name, i))
		}
		if err := r.Merge("b@h:2", snap); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < names; i += 2 {
			if round%2 == 0 {
				_ = r.Unregister(name(i))
			} else {
				r.ProcessExited(pidOf(h.name, i))
			}
		}
		r.NodeDown("b@h:2")
	}
	stop.Store(true)
	wg.Wait()
	if r.Len() != 0 {
		t.Fatalf("Len = %d after everything was removed", r.Len())
	}
}

// The hardening review: a peer announcing a registration at version 1 took
// any name (the lower version wins), and replicas then disagreed. A node's
// clock only grows, so an add of its own making at or below a version it has
// already announced is a forgery: refused and counted.
func TestAddBelowAVersionItsNodeAnnouncedIsRefusedAndCounted(t *testing.T) {
	c := newTestCluster(t, 2)
	p0, p1 := c.spawn(0), c.spawn(1)
	r0, r1 := c.nodes[0].r, c.nodes[1].r
	for _, name := range []string{"a", "b", "svc"} {
		if err := r0.Register(name, p0); err != nil {
			t.Fatal(err)
		}
	}
	c.net.Flush()
	if err := r1.Register("mine", p1); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	// Node 1 announced "mine" at some version v: it now claims "svc" with
	// version 1 — below v, and below node 0's registration, which it would
	// beat.
	forged := Entry{Name: "svc", PID: p1, Version: 1, Origin: c.nodes[1].name}
	if v := r1.own["mine"].Version; v <= forged.Version {
		t.Fatalf("setup: node 1 announced version %d, want above %d", v, forged.Version)
	}
	var w frameWriter
	w.add(opAdd, &forged)
	if err := r0.Handle(c.nodes[1].name, w.take()); err != nil {
		t.Fatal(err)
	}
	if got, _ := r0.Whereis("svc"); got != p0 {
		t.Fatalf("a forged version took the name: Whereis = %v, want %v", got, p0)
	}
	if r0.Forged() != 1 {
		t.Fatalf("Forged() = %d, want 1", r0.Forged())
	}
	// A later, honest registration of node 1 still goes through.
	if err := r1.Register("more", p1); err != nil {
		t.Fatal(err)
	}
	c.net.Flush()
	wantEverywhere(t, c, "more", p1)
	if r0.Forged() != 1 {
		t.Fatalf("an honest add was counted as forged: %d", r0.Forged())
	}
}

func TestAPeerOverItsLimitOfNamesIsRefused(t *testing.T) {
	c := newTestCluster(t, 2)
	n0 := c.nodes[0]
	r := New(n0, WithMaxNamesPerPeer(2))
	p1 := c.spawn(1)
	from := c.nodes[1].name
	snap := func(k int) []byte {
		m := make(map[string]Entry)
		for i := range k {
			name := fmt.Sprintf("n%d", i)
			m[name] = Entry{Name: name, PID: p1, Version: uint64(i + 1), Origin: from}
		}
		return encodeSnapshot(m)
	}
	if err := r.Merge(from, snap(3)); !errors.Is(err, ErrLimit) {
		t.Fatalf("a snapshot of 3 names with a limit of 2: %v, want ErrLimit", err)
	}
	if err := r.Merge(from, snap(2)); err != nil {
		t.Fatal(err)
	}
	var w frameWriter
	w.add(opAdd, &Entry{Name: "n9", PID: p1, Version: 10, Origin: from})
	if err := r.Handle(from, w.take()); !errors.Is(err, ErrLimit) {
		t.Fatalf("a third name with a limit of 2: %v, want ErrLimit", err)
	}
	if r.Len() != 2 {
		t.Fatalf("Len() = %d after refused frames, want 2", r.Len())
	}
}
