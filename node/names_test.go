package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/meshrt/mesh/codec"
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

func TestParseAddressRefusesMalformedRecords(t *testing.T) {
	for _, b := range [][]byte{
		nil, {0}, {9}, {addrName}, {addrName, 0}, {addrName, 3, 'a'}, {addrName, 1, 'a'},
		{addrReply}, {addrReply, 1}, {addrReply, 1, 0}, {addrCall, 1, 'a'}, {addrCall, 1, 'a', 1},
		{addrUnmonitor, 1, 'a', 1, 0}, {addrName, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1},
	} {
		if _, err := parseAddress(b); err == nil {
			t.Errorf("parseAddress(%v) accepted", b)
		}
	}
}

// recordOf parses an addressed item as the receiving link does.
func recordOf(t testing.TB, item []byte) codec.Message {
	t.Helper()
	f, k, err := codec.NewFrameReader(nil, 0).Next(item)
	if err != nil || k != len(item) {
		t.Fatalf("frame: %v (%d of %d bytes)", err, k, len(item))
	}
	it := f.Messages()
	if !it.Next() {
		t.Fatalf("no record: %v", it.Err())
	}
	m := it.Message()
	if it.Next() || it.Err() != nil {
		t.Fatalf("more than one record: %v", it.Err())
	}
	return m
}

func TestAddressedRecordsRoundTrip(t *testing.T) {
	long := strings.Repeat("n", maxLocalName)
	for _, k := range []byte{addrName, addrReply, addrCall, addrUnmonitor} {
		for _, body := range []any{"body", strings.Repeat("b", 300)} {
			item, err := appendAddressedFlags(nil, 7, k, long, 1<<40, replyReleased, body)
			if err != nil {
				t.Fatal(err)
			}
			m := recordOf(t, item)
			a, err := parseAddress(m.Term)
			if err != nil || m.To != 0 || m.From != 7 || a.kind != k {
				t.Fatalf("kind %d: %+v, %v", k, a, err)
			}
			if k != addrReply && string(a.name) != long {
				t.Fatalf("kind %d: name %q", k, a.name)
			}
			if k != addrName && a.ref != 1<<40 {
				t.Fatalf("kind %d: ref %d", k, a.ref)
			}
			if k == addrReply && a.flags != replyReleased {
				t.Fatalf("flags %d", a.flags)
			}
			if k != addrUnmonitor {
				v, err := codec.Message{Term: a.body}.Decode(nil)
				if err != nil || v != body {
					t.Fatalf("kind %d: body %.20v, %v", k, v, err)
				}
			}
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, k := range []byte{addrName, addrReply, addrCall, addrUnmonitor} {
		item, err := appendAddressed(nil, 7, k, "name", 42, "body")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(recordOf(f, item).Term)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAddress(b)
		if err != nil {
			return
		}
		if len(a.name) > maxLocalName || (a.kind != addrUnmonitor && len(a.body) == 0) {
			t.Fatalf("accepted %v as %+v", b, a)
		}
	})
}
