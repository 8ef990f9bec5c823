package nodetest_test

import (
	"context"
	"errors"
	"fmt"
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
