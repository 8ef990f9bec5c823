package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/leaktest"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

// testWait bounds every wait in these tests; a test that needs it has failed.
// It is generous on purpose: on a busy 2-core machine under -race, a
// 24 MiB transfer has been seen to take 30 s, and a bound that only a
// failing test reaches costs nothing when the test passes.
const testWait = 60 * time.Second

func startNode(t *testing.T, opts ...Option) *Node {
	t.Helper()
	n, err := Start("test@127.0.0.1:0", "cookie", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return n
}

// within runs fn as a process of n and fails the test if fn fails.
func within(t *testing.T, n *Node, fn func(p *Process) error) {
	t.Helper()
	withinFor(t, n, testWait, fn)
}

// withinFor is within for a test whose whole body may take longer than
// testWait on a loaded machine (each wait inside stays bounded by testWait).
func withinFor(t *testing.T, n *Node, d time.Duration, fn func(p *Process) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := n.Run(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func recv(p *Process) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	return p.Receive(ctx)
}

func recvMatch(p *Process, f func(any) bool) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	return p.ReceiveMatch(ctx, f)
}

func TestSendReceiveDeliversInOrder(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		echo := n.SpawnFunc(func(q *Process) error {
			for {
				m, err := q.Receive(context.Background())
				if err != nil {
					return err
				}
				pair := m.([]any)
				if err := q.Send(pair[0].(PID), pair[1]); err != nil {
					return err
				}
			}
		})
		for i := range 1000 {
			if err := p.Send(echo, []any{p.Self(), i}); err != nil {
				return err
			}
		}
		for i := range 1000 {
			m, err := recv(p)
			if err != nil {
				return err
			}
			if m != i {
				return fmt.Errorf("message %d is %v", i, m)
			}
		}
		return nil
	})
}

func TestReceiveMatchLeavesOthersQueuedInOrder(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		for _, m := range []any{1, "a", 2, "b", 3} {
			_ = p.Send(p.Self(), m)
		}
		m, err := recvMatch(p, func(m any) bool { _, ok := m.(string); return ok })
		if err != nil || m != "a" {
			return fmt.Errorf("ReceiveMatch = %v, %v; want a", m, err)
		}
		for _, want := range []any{1, 2, "b", 3} {
			if m, err := recv(p); err != nil || m != want {
				return fmt.Errorf("Receive = %v, %v; want %v", m, err, want)
			}
		}
		return nil
	})
}

func TestReceiveReturnsContextError(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := p.Receive(ctx); !errors.Is(err, context.Canceled) {
			return fmt.Errorf("Receive on cancelled ctx: %v", err)
		}
		return nil
	})
}

func TestSpawnByActorNamePassesArgs(t *testing.T) {
	n := startNode(t)
	n.Define("adder", func(p *Process, args []any) error {
		return p.Send(args[0].(PID), args[1].(int)+args[2].(int))
	})
	within(t, n, func(p *Process) error {
		if _, err := p.Spawn(n.Self(), "adder", p.Self(), 2, 3); err != nil {
			return err
		}
		if m, err := recv(p); err != nil || m != 5 {
			return fmt.Errorf("got %v, %v; want 5", m, err)
		}
		return nil
	})
}

func TestSpawnUnknownActorIsErrUnknownActor(t *testing.T) {
	n := startNode(t)
	if _, err := n.Spawn(n.Self(), "nobody"); !errors.Is(err, ErrUnknownActor) {
		t.Fatalf("Spawn: %v, want ErrUnknownActor", err)
	}
	n.Define("gone", func(*Process, []any) error { return nil })
	n.Define("gone", nil)
	if _, err := n.Spawn(n.Self(), "gone"); !errors.Is(err, ErrUnknownActor) {
		t.Fatalf("Spawn of undefined actor: %v, want ErrUnknownActor", err)
	}
}

// exitCase is one way a linked or monitored process can end.
type exitCase struct {
	name   string
	body   func(p *Process) error
	reason func(any) bool
}

var errBoom = errors.New("boom")

var exitCases = []exitCase{
	{"returns nil", func(*Process) error { return nil }, func(r any) bool { return r == Normal }},
	{"returns error", func(*Process) error { return errBoom }, func(r any) bool { e, ok := r.(error); return ok && errors.Is(e, errBoom) }},
	{"panics", func(*Process) error { panic("kaboom") }, func(r any) bool { e, ok := r.(*PanicError); return ok && e.Value == "kaboom" }},
}

func TestMonitorReportsExitReason(t *testing.T) {
	for _, tc := range exitCases {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t)
			within(t, n, func(p *Process) error {
				gate := make(chan struct{})
				child := n.SpawnFunc(func(q *Process) error { <-gate; return tc.body(q) })
				ref := p.Monitor(child)
				close(gate)
				m, err := recv(p)
				if err != nil {
					return err
				}
				d, ok := m.(Down)
				if !ok || d.Ref != ref || d.PID != child || !tc.reason(d.Reason) {
					return fmt.Errorf("got %#v; want Down for %v", m, child)
				}
				return nil
			})
		})
	}
}

func TestMonitorOfDeadProcessIsNoProcAtOnce(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		dead := n.SpawnFunc(func(*Process) error { return nil })
		waitDead(t, n, dead)
		ref := p.Monitor(dead)
		m, err := recv(p)
		if d, ok := m.(Down); err != nil || !ok || d.Ref != ref || d.Reason != NoProc {
			return fmt.Errorf("got %#v, %v; want Down noproc", m, err)
		}
		return nil
	})
}

func TestDemonitorStopsDown(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		gate := make(chan struct{})
		child := n.SpawnFunc(func(*Process) error { <-gate; return errBoom })
		ref := p.Monitor(child)
		p.Demonitor(ref)
		ref2 := p.Monitor(child)
		close(gate)
		m, err := recv(p)
		if d, ok := m.(Down); err != nil || !ok || d.Ref != ref2 {
			return fmt.Errorf("got %#v, %v; want only the Down of the second monitor", m, err)
		}
		if m, ok := p.mb.TryReceive(); ok {
			return fmt.Errorf("unexpected message after demonitor: %#v", m)
		}
		return nil
	})
}

func TestLinkedProcessDiesOnAbnormalExitOnly(t *testing.T) {
	for _, tc := range exitCases {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t)
			within(t, n, func(p *Process) error {
				gate := make(chan struct{})
				partner := n.SpawnFunc(func(q *Process) error {
					_, err := q.Receive(context.Background())
					return err
				})
				child := n.SpawnFunc(func(q *Process) error {
					if err := q.Link(partner); err != nil {
						return err
					}
					<-gate
					return tc.body(q)
				})
				ref := p.Monitor(partner)
				childRef := p.Monitor(child)
				close(gate)
				m, _ := recvMatch(p, func(m any) bool { d, ok := m.(Down); return ok && d.Ref == childRef })
				if d := m.(Down); !tc.reason(d.Reason) {
					return fmt.Errorf("child exit reason %v", d.Reason)
				}
				if tc.reason(Normal) {
					// The partner must still be alive: stop it ourselves.
					if n.local(partner) == nil {
						return fmt.Errorf("partner died after a normal exit of its link")
					}
					_ = p.Exit(partner, Kill)
				}
				m, err := recv(p)
				d, ok := m.(Down)
				if err != nil || !ok || d.Ref != ref {
					return fmt.Errorf("got %#v, %v; want partner Down", m, err)
				}
				if !tc.reason(Normal) && !tc.reason(d.Reason) {
					return fmt.Errorf("partner died with %v; want the child's reason", d.Reason)
				}
				return nil
			})
		})
	}
}

func TestTrapExitTurnsLinkSignalsIntoMessages(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		p.TrapExit(true)
		child, err := p.SpawnLinkFunc(func(*Process) error { return errBoom })
		if err != nil {
			return err
		}
		m, err := recv(p)
		e, ok := m.(Exit)
		if err != nil || !ok || e.From != child || !errors.Is(e.Reason.(error), errBoom) {
			return fmt.Errorf("got %#v, %v; want Exit from child", m, err)
		}
		return nil
	})
}

func TestSpawnLinkImmediateCrashReachesCaller(t *testing.T) {
	n := startNode(t)
	n.Define("crash", func(*Process, []any) error { panic("at once") })
	within(t, n, func(p *Process) error {
		p.TrapExit(true)
		child, err := p.SpawnLink(n.Self(), "crash")
		if err != nil {
			return err
		}
		m, err := recv(p)
		if e, ok := m.(Exit); err != nil || !ok || e.From != child {
			return fmt.Errorf("got %#v, %v; want Exit from crashed child", m, err)
		}
		return nil
	})
}

func TestLinkToDeadProcessSignalsNoProc(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		p.TrapExit(true)
		dead := n.SpawnFunc(func(*Process) error { return nil })
		waitDead(t, n, dead)
		if err := p.Link(dead); err != nil {
			return err
		}
		m, err := recv(p)
		if e, ok := m.(Exit); err != nil || !ok || e.From != dead || e.Reason != NoProc {
			return fmt.Errorf("got %#v, %v; want Exit noproc", m, err)
		}
		return nil
	})
}

func TestUnlinkStopsPropagation(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		p.TrapExit(true)
		gate := make(chan struct{})
		child, err := p.SpawnLinkFunc(func(*Process) error { <-gate; return errBoom })
		if err != nil {
			return err
		}
		_ = p.Unlink(child)
		ref := p.Monitor(child)
		close(gate)
		m, err := recv(p)
		if d, ok := m.(Down); err != nil || !ok || d.Ref != ref {
			return fmt.Errorf("got %#v, %v; want only the Down (no Exit after Unlink)", m, err)
		}
		return nil
	})
}

func TestExitSignal(t *testing.T) {
	tests := []struct {
		name       string
		trap       bool
		reason     any
		wantDead   bool
		wantReason any // Down reason when dead, Exit reason when trapped
	}{
		{"kill is untrappable", true, Kill, true, Killed},
		{"kill without trap", false, Kill, true, Killed},
		{"abnormal without trap kills", false, codec.Atom("bye"), true, codec.Atom("bye")},
		{"abnormal with trap is a message", true, codec.Atom("bye"), false, codec.Atom("bye")},
		{"normal without trap is ignored", false, Normal, false, nil},
		{"normal with trap is a message", true, Normal, false, Normal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t)
			within(t, n, func(p *Process) error {
				ready := make(chan struct{})
				target := n.SpawnFunc(func(q *Process) error {
					q.TrapExit(tc.trap)
					close(ready)
					m, err := q.Receive(context.Background())
					if err != nil {
						return err
					}
					return q.Send(p.Self(), m) // report what arrived
				})
				<-ready
				ref := p.Monitor(target)
				_ = p.Exit(target, tc.reason)
				if !tc.wantDead {
					_ = p.Send(target, "ping") // harmless when a trapped Exit came first
				}
				m, err := recv(p)
				if err != nil {
					return err
				}
				switch {
				case tc.wantDead:
					if d, ok := m.(Down); !ok || d.Ref != ref || d.Reason != tc.wantReason {
						return fmt.Errorf("got %#v; want Down %v", m, tc.wantReason)
					}
				case tc.trap:
					if e, ok := m.(Exit); !ok || e.From != p.Self() || e.Reason != tc.wantReason {
						return fmt.Errorf("got %#v; want Exit %v", m, tc.wantReason)
					}
				default:
					if m != "ping" {
						return fmt.Errorf("got %#v; want the target alive to echo ping", m)
					}
				}
				return nil
			})
		})
	}
}

func TestKilledProcessReceiveReturnsErrExited(t *testing.T) {
	n := startNode(t)
	got := make(chan error, 1)
	pid := n.SpawnFunc(func(q *Process) error {
		_, err := q.Receive(context.Background())
		got <- err
		return err
	})
	within(t, n, func(p *Process) error { return p.Exit(pid, Kill) })
	select {
	case err := <-got:
		if !errors.Is(err, ErrExited) {
			t.Fatalf("Receive after kill: %v, want ErrExited", err)
		}
	case <-time.After(testWait):
		t.Fatal("killed process still blocked in Receive")
	}
}

func TestPIDOfEarlierIncarnationIsNotDelivered(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		stale := p.Self()
		stale.Incarnation++
		if err := n.Send(stale, "ghost"); err != nil {
			return err
		}
		_ = p.Send(p.Self(), "real")
		if m, err := recv(p); err != nil || m != "real" {
			return fmt.Errorf("got %v, %v; the stale-incarnation message was delivered", m, err)
		}
		return nil
	})
}

func TestStopEndsBlockedProcesses(t *testing.T) {
	n, err := Start("stopper@127.0.0.1:0", "cookie")
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		n.SpawnFunc(func(q *Process) error {
			_, err := q.Receive(context.Background())
			return err
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n.procs.len(); got != 0 {
		t.Fatalf("%d processes left after Stop", got)
	}
	if pid := n.SpawnFunc(func(*Process) error { return nil }); !pid.IsZero() {
		t.Fatalf("SpawnFunc after Stop returned %v", pid)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestRunEndsProcessWhenContextEnds(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	err := n.Run(ctx, func(p *Process) error {
		cancel()
		_, err := p.Receive(context.Background())
		return err
	})
	if !errors.Is(err, ErrExited) {
		t.Fatalf("Run: %v, want ErrExited after ctx end", err)
	}
}

// waitDead polls until pid has left the process table.
func waitDead(t *testing.T, n *Node, pid PID) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for n.local(pid) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%v still alive", pid)
		}
		time.Sleep(time.Millisecond)
	}
}
