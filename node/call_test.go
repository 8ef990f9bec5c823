package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// server answers every Request with a reply computed by handle; a handle
// that returns an error ends the server with it.
func server(handle func(q *Process, r Request) (any, error)) func(q *Process) error {
	return func(q *Process) error {
		for {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			r, ok := m.(Request)
			if !ok {
				continue
			}
			v, err := handle(q, r)
			if err != nil {
				return err
			}
			if err := q.Reply(r, v); err != nil {
				return err
			}
		}
	}
}

func double(_ *Process, r Request) (any, error) { return r.Body.(int) * 2, nil }

// callCase runs a test on one node (local) and across two (remote): the
// server process runs on srv, the caller on cli.
func callCase(t *testing.T, fn func(t *testing.T, cli, srv *Node)) {
	t.Run("local", func(t *testing.T) {
		n := startNode(t)
		fn(t, n, n)
	})
	t.Run("remote", func(t *testing.T) {
		a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
		connect(t, a, b)
		fn(t, a, b)
	})
}

// monitorsOf counts p's monitor entries: a finished call leaves none.
func monitorsOf(p *Process) (watching, monitors int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rel == nil {
		return 0, 0
	}
	return len(p.rel.watching), len(p.rel.monitors)
}

func TestCallReturnsTheReplyAndLeavesNoMonitor(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		s := srv.SpawnFunc(server(double))
		within(t, cli, func(p *Process) error {
			for i := range 100 {
				v, err := p.Call(context.Background(), s, i)
				if err != nil || v != 2*i {
					return fmt.Errorf("call %d: %v, %v", i, v, err)
				}
			}
			if w, m := monitorsOf(p); w != 0 || m != 0 {
				return fmt.Errorf("caller holds %d watching, %d monitors after the calls", w, m)
			}
			return nil
		})
		eventually(t, "the server's monitors to go", func() bool {
			sp := srv.local(s)
			_, m := monitorsOf(sp)
			return m == 0
		})
	})
}

func TestCallToADeadProcessIsNoProc(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		dead := srv.SpawnFunc(func(*Process) error { return nil })
		eventually(t, "the process to exit", func() bool { return srv.local(dead) == nil })
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		_, err := cli.Call(ctx, dead, "hi")
		var ee *ExitError
		if !errors.Is(err, ErrNoProc) || !errors.As(err, &ee) || ee.PID != dead || ctx.Err() != nil {
			t.Fatalf("call to a dead process: %v; want an ExitError with noproc, at once", err)
		}
	})
}

func TestCallEndsWhenTheTargetExitsBeforeReplying(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		boom := errors.New("boom")
		s := srv.SpawnFunc(server(func(*Process, Request) (any, error) { return nil, boom }))
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		_, err := cli.Call(ctx, s, 1)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.PID != s || ctx.Err() != nil {
			t.Fatalf("got %v; want an ExitError from %v", err, s)
		}
		if cli == srv && !errors.Is(err, boom) {
			t.Fatalf("local: %v does not wrap the target's error", err)
		}
		if cli != srv && fmt.Sprint(ee.Reason) != "boom" {
			t.Fatalf("remote: reason %#v; want the error's text", ee.Reason)
		}
	})
}

func TestCallToAPanickingProcessCarriesThePanic(t *testing.T) {
	n := startNode(t)
	s := n.SpawnFunc(server(func(*Process, Request) (any, error) { panic("kaboom") }))
	_, err := n.Call(context.Background(), s, 1)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "kaboom" {
		t.Fatalf("got %v; want a PanicError", err)
	}
}

func TestCallEndsAtTheContextAndALateReplyIsNeverQueued(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		release := make(chan struct{})
		s := srv.SpawnFunc(func(q *Process) error {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			r := m.(Request)
			<-release
			if err := q.Reply(r, "late"); err != nil {
				return err
			}
			// Sent after the reply, on the same path: once it is queued,
			// the reply has arrived (and must have been dropped).
			return q.Send(r.From, "marker")
		})
		within(t, cli, func(p *Process) error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			_, err := p.Call(ctx, s, 1)
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("got %v; want DeadlineExceeded", err)
			}
			close(release)
			eventually(t, "the marker", func() bool { return p.mb.Len() > 0 })
			if l := p.mb.Len(); l != 1 {
				return fmt.Errorf("mailbox holds %d messages; want only the marker", l)
			}
			m, err := recv(p)
			if m != "marker" || err != nil {
				return fmt.Errorf("got %#v, %v; want the marker", m, err)
			}
			return nil
		})
	})
}

func TestCallEndsWhenTheConnectionIsLost(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	got := make(chan struct{})
	s := b.SpawnFunc(server(func(q *Process, _ Request) (any, error) {
		close(got)
		_, err := q.Receive(context.Background()) // never replies
		return nil, err
	}))
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		_, err := a.Call(ctx, s, 1)
		errc <- err
	}()
	<-got
	a.peerIfUp(b.Self()).conn.Close(errors.New("test: cut"))
	err := <-errc
	if !errors.Is(err, ErrNotConnected) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want ErrNotConnected at once", err)
	}
}

// The same for a call by name: the caller holds a monitor on the name's
// node, which the lost connection ends.
func TestCallNamedEndsWhenTheConnectionIsLost(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	connect(t, a, b)
	got := make(chan struct{})
	s := b.SpawnFunc(server(func(q *Process, _ Request) (any, error) {
		close(got)
		_, err := q.Receive(context.Background()) // never replies
		return nil, err
	}))
	if err := b.Register("srv", s); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		_, err := a.CallNamed(ctx, b.Self(), "srv", 1)
		errc <- err
	}()
	<-got
	a.peerIfUp(b.Self()).conn.Close(errors.New("test: cut"))
	err := <-errc
	if !errors.Is(err, ErrNotConnected) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want ErrNotConnected at once", err)
	}
}

// A PID of an earlier (or later) incarnation of a connected node names no
// process: the call ends at once, without a frame.
func TestCallToAnotherIncarnationIsNoProc(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	connect(t, a, b)
	s := b.SpawnFunc(server(double))
	stale := PID{Node: s.Node, Incarnation: s.Incarnation + 1, ID: s.ID}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	_, err := a.Call(ctx, stale, 1)
	if !errors.Is(err, ErrNoProc) || ctx.Err() != nil {
		t.Fatalf("got %v; want ErrNoProc at once", err)
	}
	if v, err := a.Call(ctx, s, 21); v != 42 || err != nil {
		t.Fatalf("the live PID: %v, %v", v, err)
	}
}

func TestCallToAnUnreachableNodeIsNotConnected(t *testing.T) {
	a := startNamed(t, "a", "c")
	dead := PID{Node: "gone@127.0.0.1:1", Incarnation: 1, ID: 1}
	_, err := a.Call(context.Background(), dead, 1)
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("got %v; want ErrNotConnected", err)
	}
}

func TestManyCallsInFlightFromOneNode(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		// Each request is served by its own process, so all are in
		// flight at once.
		s := srv.SpawnFunc(func(q *Process) error {
			for {
				m, err := q.Receive(context.Background())
				if err != nil {
					return err
				}
				r := m.(Request)
				srv.SpawnFunc(func(w *Process) error {
					time.Sleep(time.Millisecond)
					return w.Reply(r, r.Body.(int)+1)
				})
			}
		})
		const callers = 1000
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), testWait)
				defer cancel()
				v, err := cli.Call(ctx, s, i)
				if err != nil || v != i+1 {
					errs <- fmt.Errorf("call %d: %v, %v", i, v, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		srv.local(s).die(Kill)
	})
}

func TestReplyFromAnotherProcessReachesTheCaller(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		s := srv.SpawnFunc(func(q *Process) error {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			r := m.(Request)
			srv.SpawnFunc(func(w *Process) error { return w.Reply(r, "from a worker") })
			_, err = q.Receive(context.Background())
			return err
		})
		within(t, cli, func(p *Process) error {
			v, err := p.Call(context.Background(), s, 1)
			if v != "from a worker" || err != nil {
				return fmt.Errorf("got %v, %v", v, err)
			}
			return nil
		})
		eventually(t, "the monitor to be demonitored", func() bool {
			_, m := monitorsOf(srv.local(s))
			return m == 0
		})
		srv.local(s).die(Kill)
	})
}

func TestCallNamed(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		s := srv.SpawnFunc(server(double))
		if err := srv.Register("doubler", s); err != nil {
			t.Fatal(err)
		}
		within(t, cli, func(p *Process) error {
			v, err := p.CallNamed(context.Background(), srv.Self(), "doubler", 21)
			if v != 42 || err != nil {
				return fmt.Errorf("got %v, %v", v, err)
			}
			_, err = p.CallNamed(context.Background(), srv.Self(), "nobody", 1)
			if !errors.Is(err, ErrNoProc) {
				return fmt.Errorf("call to an unregistered name: %v; want ErrNoProc", err)
			}
			if w, m := monitorsOf(p); w != 0 || m != 0 {
				return fmt.Errorf("caller holds %d watching, %d monitors after the calls", w, m)
			}
			return nil
		})
		eventually(t, "the server's monitors to go", func() bool {
			_, m := monitorsOf(srv.local(s))
			return m == 0
		})
	})
}

func TestCallNamedEndsWhenTheServerExitsAndAtTheContext(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		hang := srv.SpawnFunc(server(func(q *Process, r Request) (any, error) {
			if r.Body == "die" {
				return nil, errors.New("asked to")
			}
			_, err := q.Receive(context.Background()) // never replies
			return nil, err
		}))
		if err := srv.Register("hang", hang); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := cli.CallNamed(ctx, srv.Self(), "hang", "wait"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v; want DeadlineExceeded", err)
		}
		eventually(t, "the timed-out call's monitor to go", func() bool {
			_, m := monitorsOf(srv.local(hang))
			return m == 0
		})
		srv.local(hang).die(Kill)
		eventually(t, "the name to go", func() bool { _, ok := srv.Whereis("hang"); return !ok })

		s := srv.SpawnFunc(server(func(q *Process, r Request) (any, error) { return nil, errors.New("asked to") }))
		if err := srv.Register("dies", s); err != nil {
			t.Fatal(err)
		}
		_, err := cli.CallNamed(context.Background(), srv.Self(), "dies", "die")
		var ee *ExitError
		if !errors.As(err, &ee) || ee.PID != s {
			t.Fatalf("got %v; want an ExitError naming %v", err, s)
		}
	})
}

func TestReceiveNeverSeesAStaleReply(t *testing.T) {
	n := startNode(t)
	within(t, n, func(p *Process) error {
		// A reply queued just before its call gave up (the race the
		// alias table cannot close) is dropped by the next receive.
		p.mb.Push(&callReply{ref: n.makeRef(), value: "stale"})
		p.mb.Push("real")
		m, err := recv(p)
		if m != "real" || err != nil {
			return fmt.Errorf("got %#v, %v", m, err)
		}
		p.mb.Push(&callReply{ref: n.makeRef(), value: "stale"})
		p.mb.Push("real")
		m, err = recvMatch(p, func(any) bool { return true })
		if m != "real" || err != nil {
			return fmt.Errorf("ReceiveMatch got %#v, %v", m, err)
		}
		return nil
	})
}

func TestNoDownAfterDemonitorReturns(t *testing.T) {
	n := startNode(t)
	for range 200 {
		within(t, n, func(p *Process) error {
			stop := make(chan struct{})
			target := n.SpawnFunc(func(*Process) error { <-stop; return errors.New("x") })
			ref := p.Monitor(target)
			close(stop)
			if p.demonitor(ref) {
				// Removed in time: no Down may ever come.
				if err := p.Send(p.Self(), "mark"); err != nil {
					return err
				}
				eventually(t, "the target's exit", func() bool { return n.local(target) == nil })
				m, err := recv(p)
				if m != "mark" || err != nil {
					return fmt.Errorf("got %#v, %v after demonitor", m, err)
				}
			}
			return nil
		})
	}
}
