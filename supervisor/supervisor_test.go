package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/leaktest"
	"github.com/meshrt/mesh/node"
	"github.com/meshrt/mesh/supervisor"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

const testWait = 60 * time.Second

func startNode(t *testing.T, name string) *node.Node {
	t.Helper()
	n, err := node.Start(name+"@127.0.0.1:0", "cookie")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		_ = n.Stop(ctx)
	})
	return n
}

// events records what children do, in order.
type events struct {
	mu  sync.Mutex
	log []string
	ch  chan string
}

func newEvents() *events { return &events{ch: make(chan string, 1000)} }

func (e *events) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
	e.ch <- s
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

// waitAll waits for every one of want, in any order.
func (e *events) waitAll(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(testWait)
	for !func() bool {
		got := e.all()
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	}() {
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %v; saw %v", want, e.all())
		}
	}
}

// wait waits until the event want has happened (at least) times times.
func (e *events) wait(t *testing.T, want string, times ...int) {
	t.Helper()
	k := 1
	if len(times) > 0 {
		k = times[0]
	}
	deadline := time.After(testWait)
	for {
		c := 0
		for _, s := range e.all() {
			if s == want {
				c++
			}
		}
		if c >= k {
			return
		}
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %q x%d; saw %v", want, k, e.all())
		}
	}
}

// worker is a child body: it logs "id up", then "crash" makes it fail and
// "stop" makes it end normally; at its end it logs "id down".
func worker(e *events, id string) func(p *node.Process) error {
	return func(p *node.Process) error {
		e.add(id + " up")
		defer e.add(id + " down")
		for {
			m, err := p.Receive(context.Background())
			if err != nil {
				return err
			}
			switch m {
			case "crash":
				return errors.New("crashed on request")
			case "stop":
				return nil
			}
		}
	}
}

// run runs fn as a process of n, which traps exits so that the
// supervisor's end does not kill it.
func run(t *testing.T, n *node.Node, fn func(p *node.Process) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := n.Run(ctx, func(p *node.Process) error { p.TrapExit(true); return fn(p) }); err != nil {
		t.Fatal(err)
	}
}

func which(p *node.Process, sup node.PID) map[string]supervisor.ChildInfo {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	infos, err := supervisor.Which(ctx, p, sup)
	if err != nil {
		panic(err)
	}
	out := map[string]supervisor.ChildInfo{}
	for _, c := range infos {
		out[c.ID] = c
	}
	return out
}

// startedInOrder checks that the children ids were spawned in that order
// (a node hands out process IDs in increasing order).
func startedInOrder(w map[string]supervisor.ChildInfo, ids ...string) error {
	for i := 1; i < len(ids); i++ {
		if w[ids[i-1]].PID.ID >= w[ids[i]].PID.ID {
			return fmt.Errorf("%s (%v) started after %s (%v)", ids[i-1], w[ids[i-1]].PID, ids[i], w[ids[i]].PID)
		}
	}
	return nil
}

// downOrder monitors the children ids and returns a function that waits for
// their exits and returns the IDs in the order they died.
func downOrder(p *node.Process, w map[string]supervisor.ChildInfo, ids ...string) func() ([]string, error) {
	byRef := map[node.Ref]string{}
	for _, id := range ids {
		byRef[p.Monitor(w[id].PID)] = id
	}
	return func() ([]string, error) {
		var order []string
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		for len(order) < len(ids) {
			m, err := p.ReceiveMatch(ctx, func(m any) bool { _, ok := m.(node.Down); return ok })
			if err != nil {
				return order, err
			}
			if id, ok := byRef[m.(node.Down).Ref]; ok {
				order = append(order, id)
			}
		}
		return order, nil
	}
}

func children(e *events, ids ...string) []supervisor.Child {
	var cs []supervisor.Child
	for _, id := range ids {
		cs = append(cs, supervisor.Child{ID: id, Start: worker(e, id), Shutdown: time.Second})
	}
	return cs
}

func TestStrategies(t *testing.T) {
	for _, tc := range []struct {
		strategy supervisor.Strategy
		crash    string
		restart  []string // the children that get new PIDs
	}{
		{supervisor.OneForOne, "b", []string{"b"}},
		{supervisor.OneForAll, "b", []string{"a", "b", "c"}},
		{supervisor.RestForOne, "b", []string{"b", "c"}},
	} {
		t.Run(fmt.Sprint(tc.strategy), func(t *testing.T) {
			n := startNode(t, "s")
			e := newEvents()
			run(t, n, func(p *node.Process) error {
				sup, err := supervisor.Start(p, supervisor.Spec{Strategy: tc.strategy, Intensity: 5, Period: time.Minute, Children: children(e, "a", "b", "c")})
				if err != nil {
					return err
				}
				before := which(p, sup)
				if err := startedInOrder(before, "a", "b", "c"); err != nil {
					return err
				}
				if err := p.Send(before[tc.crash].PID, "crash"); err != nil {
					return err
				}
				for _, id := range tc.restart {
					e.wait(t, id+" up", 2)
				}
				after := which(p, sup)
				for _, id := range []string{"a", "b", "c"} {
					renewed := after[id].PID != before[id].PID
					if renewed != slices.Contains(tc.restart, id) {
						return fmt.Errorf("child %s restarted: %v; want %v (events %v)", id, renewed, !renewed, e.all())
					}
					if renewed && after[id].Restarts != 1 {
						return fmt.Errorf("child %s: %d restarts", id, after[id].Restarts)
					}
				}
				return startedInOrder(after, tc.restart...)
			})
		})
	}
}

func TestRestartTypes(t *testing.T) {
	n := startNode(t, "s")
	e := newEvents()
	run(t, n, func(p *node.Process) error {
		spec := supervisor.Spec{Intensity: 10, Period: time.Minute}
		for _, c := range []struct {
			id string
			r  supervisor.Restart
		}{{"perm", supervisor.Permanent}, {"trans", supervisor.Transient}, {"temp", supervisor.Temporary}, {"trans2", supervisor.Transient}} {
			spec.Children = append(spec.Children, supervisor.Child{ID: c.id, Start: worker(e, c.id), Restart: c.r})
		}
		sup, err := supervisor.Start(p, spec)
		if err != nil {
			return err
		}
		w := which(p, sup)
		for _, id := range []string{"perm", "trans", "temp"} {
			if err := p.Send(w[id].PID, "stop"); err != nil { // a normal exit
				return err
			}
		}
		if err := p.Send(w["trans2"].PID, "crash"); err != nil {
			return err
		}
		e.wait(t, "trans2 up", 2)
		e.wait(t, "perm up", 2)
		e.wait(t, "temp down")
		e.wait(t, "trans down")
		// A child logs "down" before its exit reaches the supervisor: ask
		// until the supervisor has handled both exits (the child's entry
		// no longer holds its old PID), then check what it did.
		var after map[string]supervisor.ChildInfo
		for deadline := time.Now().Add(testWait); ; time.Sleep(time.Millisecond) {
			after = which(p, sup)
			temp, listed := after["temp"]
			handled := (!listed || temp.PID != w["temp"].PID) && after["trans"].PID != w["trans"].PID
			if handled || time.Now().After(deadline) {
				break
			}
		}
		if after["perm"].PID.IsZero() || after["perm"].PID == w["perm"].PID {
			return fmt.Errorf("permanent child not restarted after a normal exit: %+v", after["perm"])
		}
		if !after["trans"].PID.IsZero() {
			return fmt.Errorf("transient child restarted after a normal exit: %+v", after["trans"])
		}
		if after["trans2"].PID.IsZero() || after["trans2"].PID == w["trans2"].PID {
			return fmt.Errorf("transient child not restarted after a crash: %+v", after["trans2"])
		}
		if _, ok := after["temp"]; ok {
			return fmt.Errorf("temporary child still listed: %+v", after)
		}
		return nil
	})
}

func TestIntensityExceededStopsTheSupervisor(t *testing.T) {
	n := startNode(t, "s")
	e := newEvents()
	run(t, n, func(p *node.Process) error {
		crashy := func(p *node.Process) error { e.add("crashy up"); return errors.New("always") }
		sup, err := supervisor.Start(p, supervisor.Spec{
			Intensity: 3, Period: time.Hour,
			Children: []supervisor.Child{
				{ID: "steady", Start: worker(e, "steady")},
				{ID: "crashy", Start: crashy},
			},
		})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		m, err := p.ReceiveMatch(ctx, func(m any) bool { x, ok := m.(node.Exit); return ok && x.From == sup })
		if err != nil {
			return err
		}
		if reason, _ := m.(node.Exit).Reason.(error); !errors.Is(reason, supervisor.ErrIntensity) {
			return fmt.Errorf("supervisor exited with %v; want ErrIntensity", m.(node.Exit).Reason)
		}
		e.wait(t, "steady down") // the supervisor stopped its other child
		ups := 0
		for _, s := range e.all() {
			if s == "crashy up" {
				ups++
			}
		}
		if ups != 4 { // the start and 3 restarts
			return fmt.Errorf("crashy started %d times; want 4", ups)
		}
		return nil
	})
}

func TestShutdownIsReverseOrderWithGraceThenKill(t *testing.T) {
	n := startNode(t, "s")
	e := newEvents()
	stubborn := func(p *node.Process) error {
		p.TrapExit(true) // ignores the shutdown signal
		e.add("stubborn up")
		defer e.add("stubborn down")
		for {
			if _, err := p.Receive(context.Background()); err != nil {
				return err
			}
		}
	}
	run(t, n, func(p *node.Process) error {
		cs := children(e, "a", "b")
		cs = append(cs, supervisor.Child{ID: "stubborn", Start: stubborn, Shutdown: 20 * time.Millisecond})
		sup, err := supervisor.Start(p, supervisor.Spec{Children: cs})
		if err != nil {
			return err
		}
		e.wait(t, "stubborn up") // trapping exits before the shutdown comes
		downs := downOrder(p, which(p, sup), "a", "b", "stubborn")
		if err := p.Exit(sup, node.Shutdown); err != nil {
			return err
		}
		order, err := downs()
		if err != nil {
			return err
		}
		if want := []string{"stubborn", "b", "a"}; !slices.Equal(order, want) {
			return fmt.Errorf("children stopped in order %v; want %v", order, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if _, err := p.ReceiveMatch(ctx, func(m any) bool { x, ok := m.(node.Exit); return ok && x.From == sup }); err != nil {
			return err
		}
		return nil
	})
}

func TestParentExitStopsTheTree(t *testing.T) {
	n := startNode(t, "s")
	e := newEvents()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	err := n.Run(ctx, func(p *node.Process) error {
		_, err := supervisor.Start(p, supervisor.Spec{Children: children(e, "a", "b")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.waitAll(t, "a down", "b down")
}

func TestStartChildTerminateChildWhich(t *testing.T) {
	n := startNode(t, "s")
	e := newEvents()
	run(t, n, func(p *node.Process) error {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		sup, err := supervisor.Start(p, supervisor.Spec{Children: children(e, "a")})
		if err != nil {
			return err
		}
		pid, err := supervisor.StartChild(ctx, p, sup, supervisor.Child{ID: "b", Start: worker(e, "b")})
		if err != nil {
			return err
		}
		if _, err := supervisor.StartChild(ctx, p, sup, supervisor.Child{ID: "b", Start: worker(e, "b")}); !errors.Is(err, supervisor.ErrChildExists) {
			return fmt.Errorf("duplicate ID: %v", err)
		}
		infos, err := supervisor.Which(ctx, p, sup)
		if err != nil {
			return err
		}
		if len(infos) != 2 || infos[0].ID != "a" || infos[1].ID != "b" || infos[1].PID != pid || infos[1].Node != n.Self() {
			return fmt.Errorf("Which = %+v", infos)
		}
		if err := supervisor.TerminateChild(ctx, p, sup, "a"); err != nil {
			return err
		}
		if err := supervisor.TerminateChild(ctx, p, sup, "a"); !errors.Is(err, supervisor.ErrNoChild) {
			return fmt.Errorf("second terminate: %v", err)
		}
		e.wait(t, "a down")
		if w := which(p, sup); len(w) != 1 || w["b"].PID != pid {
			return fmt.Errorf("Which after terminate = %+v", w)
		}
		return nil
	})
}

func TestStartFailureStopsTheStartedChildren(t *testing.T) {
	n := startNode(t, "s")
	e := newEvents()
	run(t, n, func(p *node.Process) error {
		cs := children(e, "a")
		cs = append(cs, supervisor.Child{ID: "ghost", Actor: "undefined"})
		_, err := supervisor.Start(p, supervisor.Spec{Children: cs})
		if !errors.Is(err, node.ErrUnknownActor) {
			return fmt.Errorf("got %v; want ErrUnknownActor", err)
		}
		e.wait(t, "a down")
		if _, err := supervisor.Start(p, supervisor.Spec{Children: []supervisor.Child{{ID: "x"}}}); !errors.Is(err, supervisor.ErrBadSpec) {
			return fmt.Errorf("child without a body: %v", err)
		}
		return nil
	})
}

func TestFailoverToTheNextNode(t *testing.T) {
	a, b, c := startNode(t, "a"), startNode(t, "b"), startNode(t, "c")
	e := newEvents()
	for _, n := range []*node.Node{b, c} {
		self := n.Self()
		n.Define("worker", func(p *node.Process, args []any) error {
			return worker(e, "worker on "+self)(p)
		})
	}
	run(t, a, func(p *node.Process) error {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		for _, n := range []*node.Node{b, c} {
			if err := a.Connect(ctx, n.Self()); err != nil {
				return err
			}
		}
		sup, err := supervisor.Start(p, supervisor.Spec{Intensity: 5, Period: time.Minute, Children: []supervisor.Child{
			{ID: "w", Actor: "worker", Nodes: []string{b.Self(), c.Self()}},
		}})
		if err != nil {
			return err
		}
		if w := which(p, sup)["w"]; w.Node != b.Self() {
			return fmt.Errorf("child placed on %s; want the first node %s", w.Node, b.Self())
		}
		if err := b.Stop(ctx); err != nil {
			return err
		}
		e.wait(t, "worker on "+c.Self()+" up")
		w := which(p, sup)["w"]
		if w.Node != c.Self() || w.PID.Node != c.Self() || w.Restarts != 1 {
			return fmt.Errorf("after failover: %+v", w)
		}
		return nil
	})
}
