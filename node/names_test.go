package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestLocalNames(t *testing.T) {
	n := startNode(t)
	stop := make(chan struct{})
	a := n.SpawnFunc(func(*Process) error { <-stop; return nil })
	b := n.SpawnFunc(func(*Process) error { <-stop; return nil })
	defer close(stop)
	if err := n.Register("a", a); err != nil {
		t.Fatal(err)
	}
	if err := n.Register("a", b); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("second Register of a name: %v; want ErrNameTaken", err)
	}
	if err := n.Register("also-a", a); err != nil {
		t.Fatal(err)
	}
	if err := n.Register("b", b); err != nil {
		t.Fatal(err)
	}
	if got, ok := n.Whereis("a"); !ok || got != a {
		t.Fatalf("Whereis(a) = %v, %v", got, ok)
	}
	if got := n.Registered(); !slices.Equal(got, []string{"a", "also-a", "b"}) {
		t.Fatalf("Registered() = %v", got)
	}
	if err := n.Unregister("b"); err != nil {
		t.Fatal(err)
	}
	if err := n.Unregister("b"); err == nil {
		t.Fatal("Unregister of an unregistered name succeeded")
	}
	if _, ok := n.Whereis("b"); ok {
		t.Fatal("b still registered")
	}
	if err := n.Register("", a); !errors.Is(err, ErrBadName) {
		t.Fatalf("empty name: %v", err)
	}
	if err := n.Register(strings.Repeat("x", 256), a); !errors.Is(err, ErrBadName) {
		t.Fatalf("long name: %v", err)
	}
	if err := n.Register("c", PID{Node: n.Self(), Incarnation: n.incarnation, ID: 1 << 40}); !errors.Is(err, ErrNoProc) {
		t.Fatalf("name for a process that does not exist: %v", err)
	}
}

func TestNamesGoWhenTheProcessExits(t *testing.T) {
	n := startNode(t)
	for range 100 {
		stop := make(chan struct{})
		a := n.SpawnFunc(func(*Process) error { <-stop; return nil })
		if err := n.Register("a", a); err != nil {
			t.Fatal(err)
		}
		if err := n.Register("a2", a); err != nil {
			t.Fatal(err)
		}
		close(stop)
		eventually(t, "the names to go", func() bool { return len(n.Registered()) == 0 })
	}
	// A process that dies while it is being registered leaves no name.
	for range 100 {
		a := n.SpawnFunc(func(*Process) error { return nil })
		_ = n.Register("racer", a)
		eventually(t, "the process to exit", func() bool { return n.local(a) == nil })
		if _, ok := n.Whereis("racer"); ok {
			t.Fatal("a name outlived its process")
		}
	}
}

func TestSendNamed(t *testing.T) {
	callCase(t, func(t *testing.T, cli, srv *Node) {
		got := make(chan any, 10)
		s := srv.SpawnFunc(func(q *Process) error {
			for {
				m, err := q.Receive(context.Background())
				if err != nil {
					return err
				}
				got <- m
			}
		})
		if err := srv.Register("sink", s); err != nil {
			t.Fatal(err)
		}
		big := strings.Repeat("x", 200<<10) // fragmented across nodes
		within(t, cli, func(p *Process) error {
			// Named and direct sends from one process keep their order.
			for _, m := range []any{1, "two", big, 4} {
				if err := p.SendNamed(srv.Self(), "sink", m); err != nil {
					return err
				}
			}
			if err := p.SendNamed(srv.Self(), "nobody", "dropped"); err != nil {
				return fmt.Errorf("send to an unregistered name: %v; want nil", err)
			}
			return p.Send(s, 5)
		})
		for _, want := range []any{1, "two", big, 4, 5} {
			if m := <-got; m != want {
				t.Fatalf("got %.20v; want %.20v", m, want)
			}
		}
		if err := cli.SendNamed(srv.Self(), "sink", 6); err != nil {
			t.Fatal(err)
		}
		if m := <-got; m != 6 {
			t.Fatalf("Node.SendNamed delivered %v", m)
		}
		if err := cli.SendNamed("bad name", "sink", 1); !errors.Is(err, ErrBadName) {
			t.Fatalf("bad node name: %v", err)
		}
		srv.local(s).die(Kill)
	})
}
