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
//
// [NewMemCluster] starts the same nodes on an in-memory network instead:
// the runtime above the connection is the same (admission, membership, the
// registry, links, monitors, backpressure), the connections are in-memory
// queues with no TLS and no socket. Such a cluster can be partitioned
// ([Cluster.Partition], [Cluster.Heal]), to test how actors live through
// a split:
//
//	c := nodetest.NewMemCluster(t, 3)
//	c.Partition(0, 1) // n1 and n2 see NodeDown; n3 still sees both
//	c.Heal(0, 1)      // they may connect again (seeds redial by themselves)
package nodetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/memlink"
	"github.com/meshrt/mesh/internal/memnode"
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
	nw     *memlink.Network // NewMemCluster's network; nil on TCP
}

// NewCluster starts size nodes named "n1@127.0.0.1:port" ... on free ports,
// all with one fresh random cookie and opts, connects them to each other,
// and returns once every node lists every other. The nodes are stopped when
// the test (or benchmark) ends. Call it from the test's goroutine: a
// failure ends the test with t.Fatal.
func NewCluster(t testing.TB, size int, opts ...node.Option) *Cluster {
	t.Helper()
	return newCluster(t, size, nil, opts)
}

// NewMemCluster is [NewCluster] on an in-memory network instead of
// loopback TCP with TLS (see the package documentation): the nodes' names
// are "n1@127.0.0.1:port" ... with ports of that network, their cookie
// check compares the cookies' keys in memory, and the cluster can be
// partitioned. Use NewCluster to test what crosses a real wire.
func NewMemCluster(t testing.TB, size int, opts ...node.Option) *Cluster {
	t.Helper()
	return newCluster(t, size, memlink.NewNetwork(), opts)
}

func newCluster(t testing.TB, size int, nw *memlink.Network, opts []node.Option) *Cluster {
	t.Helper()
	c, err := start(size, nw, opts)
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
	return start(size, nil, opts)
}

// StartMem is [NewMemCluster] outside a test; the caller stops the cluster
// with [Cluster.Stop].
func StartMem(size int, opts ...node.Option) (*Cluster, error) {
	return start(size, memlink.NewNetwork(), opts)
}

func start(size int, nw *memlink.Network, opts []node.Option) (*Cluster, error) {
	if size < 1 {
		return nil, fmt.Errorf("a cluster of %d nodes", size)
	}
	c := &Cluster{cookie: rand.Text(), nw: nw}
	if nw != nil {
		opts = append(opts[:len(opts):len(opts)], memnode.Option(nw).(node.Option))
	}
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
	return startNode(t, name, cookie, opts)
}

func startNode(t testing.TB, name, cookie string, opts []node.Option) *node.Node {
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

// Partition cuts nodes i and j (from 0) apart, as a network that resets
// their connection: both see [node.NodeDown] with reason connection_closed
// (their linked and monitoring processes see noconnection), and neither
// can connect to the other until [Cluster.Heal]; every other link is
// untouched. It returns once both have seen the connection end. Only a
// cluster from [NewMemCluster] or [StartMem] can be partitioned: on
// another, Partition panics. Safe from any goroutine but a process of the
// cluster's nodes waiting for it.
func (c *Cluster) Partition(i, j int) {
	nw := c.memNetwork("Partition")
	nw.Partition(c.addr(i), c.addr(j))
}

// Heal lifts the partition between nodes i and j: they may connect again
// (a node redials the seeds and the peers it lost by itself, see
// [node.WithSeeds]; else call [node.Node.Connect]). It panics on a cluster
// that is not in memory.
func (c *Cluster) Heal(i, j int) {
	nw := c.memNetwork("Heal")
	nw.Heal(c.addr(i), c.addr(j))
}

func (c *Cluster) memNetwork(op string) *memlink.Network {
	if c.nw == nil {
		panic("nodetest: " + op + " needs a cluster from NewMemCluster or StartMem")
	}
	return c.nw
}

// addr is node i's address on the network: its name's host:port.
func (c *Cluster) addr(i int) string {
	name := c.nodes[i].Self()
	_, addr, _ := strings.Cut(name, "@")
	return addr
}
