// Package nodetest starts Mesh nodes for tests, in the spirit of
// net/http/httptest: a test of actors that talk across nodes gets two or
// three real nodes in its own process, connected to each other on
// 127.0.0.1 with a fresh cookie, and stopped when the test ends.
//
//	c := nodetest.NewCluster(t, 2)
//	c.Define("echo", echo)             // on every node
//	pid, err := c.Node(1).Spawn(c.Node(1).Self(), "echo")
//
// The nodes are ordinary [node.Node] values on loopback TCP with TLS, so
// what a test sees (ordering, errors, NodeDown when a node stops) is what a
// deployment sees. Each node's goroutines are gone once the test's cleanup
// has run; a node that does not stop within the bound fails the test.
package nodetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshrt/mesh/node"
)

// Bound is how long NewCluster waits for the nodes to connect and a
// cleanup waits for a node to stop before failing the test. It is a failure
// bound for a loaded machine, not a timing the tests rely on.
var Bound = time.Minute

// Cluster is a set of nodes started by [NewCluster] or [Start], each
// connected to every other. Its methods are safe from any goroutine.
type Cluster struct {
	cookie string
	nodes  []*node.Node
}

// NewCluster starts size nodes named "n1@127.0.0.1:port" ... on free ports,
// all with one fresh random cookie and opts, connects them to each other,
// and returns once every node lists every other. The nodes are stopped when
// the test (or benchmark) ends. Call it from the test's goroutine: a
// failure ends the test with t.Fatal.
func NewCluster(t testing.TB, size int, opts ...node.Option) *Cluster {
	t.Helper()
	c, err := Start(size, opts...)
	if c != nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), Bound)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				t.Errorf("nodetest: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("nodetest: %v", err)
	}
	return c
}

// Start is [NewCluster] outside a test (a TestMain, an Example, a
// benchmark harness): the caller stops the cluster with [Cluster.Stop].
// On an error the nodes started so far are returned too, for Stop.
func Start(size int, opts ...node.Option) (*Cluster, error) {
	if size < 1 {
		return nil, fmt.Errorf("a cluster of %d nodes", size)
	}
	c := &Cluster{cookie: rand.Text()}
	for i := range size {
		n, err := node.Start(fmt.Sprintf("n%d@127.0.0.1:0", i+1), c.cookie, opts...)
		if err != nil {
			return c, fmt.Errorf("starting node %d: %w", i+1, err)
		}
		c.nodes = append(c.nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	defer cancel()
	for i, a := range c.nodes {
		for _, b := range c.nodes[i+1:] {
			if err := a.Connect(ctx, b.Self()); err != nil {
				return c, fmt.Errorf("%s connecting to %s: %w", a.Self(), b.Self(), err)
			}
		}
	}
	for _, a := range c.nodes {
		for !c.meshed(a) {
			select {
			case <-ctx.Done():
				return c, fmt.Errorf("%s lists %v after %v, want every other node", a.Self(), a.List(), Bound)
			case <-time.After(time.Millisecond):
			}
		}
	}
	return c, nil
}

// Stop stops every node of the cluster (see [node.Node.Stop]), returning
// the first error.
func (c *Cluster) Stop(ctx context.Context) error {
	var first error
	for _, n := range c.nodes {
		if err := n.Stop(ctx); err != nil && first == nil {
			first = fmt.Errorf("stopping %s: %w", n.Self(), err)
		}
	}
	return first
}

// Cookie returns the cluster's cookie, for a node that should join it
// ([NewNode]).
func (c *Cluster) Cookie() string { return c.cookie }

// meshed reports whether a lists every other node of the cluster.
func (c *Cluster) meshed(a *node.Node) bool {
	list := a.List()
	for _, b := range c.nodes {
		if b != a && !slices.Contains(list, b.Self()) {
			return false
		}
	}
	return true
}

// NewNode starts one node named "name@127.0.0.1:port" on a free port with
// cookie and opts, stopped when the test ends. Use it for a node that joins
// a cluster later (pass the cluster's [Cluster.Cookie]), or for a node with
// another cookie. Call it from the test's goroutine.
func NewNode(t testing.TB, name, cookie string, opts ...node.Option) *node.Node {
	t.Helper()
	return start(t, name, cookie, opts)
}

func start(t testing.TB, name, cookie string, opts []node.Option) *node.Node {
	t.Helper()
	n, err := node.Start(name+"@127.0.0.1:0", cookie, opts...)
	if err != nil {
		t.Fatalf("nodetest: starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Bound)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("nodetest: stopping %s: %v", n.Self(), err)
		}
	})
	return n
}

// Node returns the i-th node (from 0) of the cluster.
func (c *Cluster) Node(i int) *node.Node { return c.nodes[i] }

// Nodes returns the cluster's nodes, in start order.
func (c *Cluster) Nodes() []*node.Node { return slices.Clone(c.nodes) }

// Define defines actor on every node of the cluster (see [node.Node.Define]).
func (c *Cluster) Define(actor string, fn node.ActorFunc) {
	for _, n := range c.nodes {
		n.Define(actor, fn)
	}
}
