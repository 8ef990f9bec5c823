package nodetest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/meshrt/mesh/internal/leaktest"
	"github.com/meshrt/mesh/node"
	"github.com/meshrt/mesh/nodetest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// echo answers every {from, msg} tuple with msg.
func echo(p *node.Process, _ []any) error {
	for {
		m, err := p.Receive(context.Background())
		if err != nil {
			return err
		}
		if req, ok := m.([]any); ok && len(req) == 2 {
			if from, ok := req[0].(node.PID); ok {
				_ = p.Send(from, req[1])
			}
		}
	}
}

func TestClusterIsAFullMeshWhereActorsTalk(t *testing.T) {
	c := nodetest.NewCluster(t, 3)
	c.Define("echo", echo)
	for _, n := range c.Nodes() {
		if got := len(n.List()); got != 2 {
			t.Fatalf("%s lists %d nodes, want 2", n.Self(), got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.Bound)
	defer cancel()
	err := c.Node(0).Run(ctx, func(p *node.Process) error {
		for _, n := range c.Nodes()[1:] {
			pid, err := p.Spawn(n.Self(), "echo")
			if err != nil {
				return err
			}
			if err := p.Send(pid, []any{p.Self(), "hi " + n.Self()}); err != nil {
				return err
			}
			m, err := p.Receive(ctx)
			if err != nil {
				return err
			}
			if m != "hi "+n.Self() {
				return fmt.Errorf("echo on %s answered %#v", n.Self(), m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewNodeJoinsWithTheClustersCookieOnly(t *testing.T) {
	c := nodetest.NewCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.Bound)
	defer cancel()
	friend := nodetest.NewNode(t, "friend", c.Cookie())
	if err := friend.Connect(ctx, c.Node(0).Self()); err != nil {
		t.Fatal(err)
	}
	stranger := nodetest.NewNode(t, "stranger", "another cookie")
	if err := stranger.Connect(ctx, c.Node(0).Self()); !errors.Is(err, node.ErrAuth) {
		t.Fatalf("a node with another cookie: %v, want ErrAuth", err)
	}
}

func TestStartRefusesAnEmptyCluster(t *testing.T) {
	if _, err := nodetest.Start(0); err == nil {
		t.Fatal("Start(0) succeeded")
	}
}

// Two nodes in one process: a process on the first spawns an echo on the
// second and hears its own message back. In a test, nodetest.NewCluster(t, 2)
// does the same and stops the nodes when the test ends.
func Example() {
	c, err := nodetest.Start(2)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Stop(context.Background())
	c.Define("echo", echo)

	ctx := context.Background()
	err = c.Node(0).Run(ctx, func(p *node.Process) error {
		pid, err := p.Spawn(c.Node(1).Self(), "echo")
		if err != nil {
			return err
		}
		if err := p.Send(pid, []any{p.Self(), "hello across nodes"}); err != nil {
			return err
		}
		m, err := p.Receive(ctx)
		fmt.Println(m)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: hello across nodes
}

func TestMemClusterPartitionsAndHeals(t *testing.T) {
	c := nodetest.NewMemCluster(t, 3)
	c.Define("echo", echo)
	n1, n2, n3 := c.Node(0), c.Node(1), c.Node(2)
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.Bound)
	defer cancel()
	err := n1.Run(ctx, func(p *node.Process) error {
		if err := p.MonitorNode(n2.Self()); err != nil {
			return err
		}
		c.Partition(0, 1)
		m, err := p.Receive(ctx)
		if err != nil {
			return err
		}
		if d, ok := m.(node.NodeDown); !ok || d.Node != n2.Self() || d.Reason != node.ConnectionClosed {
			return fmt.Errorf("after the partition: %#v, want NodeDown connection_closed", m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.Connect(ctx, n2.Self()); !errors.Is(err, node.ErrNotConnected) {
		t.Fatalf("Connect across the partition: %v, want ErrNotConnected", err)
	}
	for _, n := range []*node.Node{n1, n2} {
		if got := n.List(); !slices.Contains(got, n3.Self()) {
			t.Fatalf("%s lists %v: the partition cut the link to n3 too", n.Self(), got)
		}
	}
	c.Heal(0, 1)
	if err := n1.Connect(ctx, n2.Self()); err != nil {
		t.Fatalf("Connect after the heal: %v", err)
	}
	// The link works again: an echo across it.
	err = n1.Run(ctx, func(p *node.Process) error {
		pid, err := p.Spawn(n2.Self(), "echo")
		if err != nil {
			return err
		}
		if err := p.Send(pid, []any{p.Self(), "again"}); err != nil {
			return err
		}
		m, err := p.Receive(ctx)
		if err == nil && m != "again" {
			err = fmt.Errorf("echo answered %#v", m)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPartitionNeedsAMemCluster(t *testing.T) {
	c := nodetest.NewCluster(t, 2)
	defer func() {
		if recover() == nil {
			t.Fatal("Partition on a TCP cluster did not panic")
		}
	}()
	c.Partition(0, 1)
}

// A cluster in memory, split and healed: a process on n1 watching n2 hears
// NodeDown when the two are partitioned. In a test,
// nodetest.NewMemCluster(t, 2) does the same and stops the nodes when the
// test ends.
func ExampleCluster_Partition() {
	c, err := nodetest.StartMem(2)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Stop(context.Background())
	ctx := context.Background()
	err = c.Node(0).Run(ctx, func(p *node.Process) error {
		if err := p.MonitorNode(c.Node(1).Self()); err != nil {
			return err
		}
		c.Partition(0, 1)
		m, err := p.Receive(ctx)
		fmt.Println(m.(node.NodeDown).Reason)
		return err
	})
	if err != nil {
		fmt.Println(err)
	}
	c.Heal(0, 1)
	fmt.Println(c.Node(0).Connect(ctx, c.Node(1).Self()))
	// Output:
	// connection_closed
	// <nil>
}
