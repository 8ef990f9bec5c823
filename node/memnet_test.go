package node

// Test helpers for nodes on an in-memory network (memnet.go): no TLS, no
// socket, and partitions as a property of the network. The tests that
// prove the real transport (TLS, the cookie handshake over a socket,
// admission limits, a stalled socket) start their nodes with startNamed
// alone.

import (
	"errors"
	"testing"

	"github.com/meshrt/mesh/internal/memlink"
)

// onNet returns the option that puts a node on nw.
func onNet(nw *memlink.Network) Option { return withNetwork(nw) }

// partition cuts n off from peers on their in-memory network, as a network
// that resets their links: every link between them ends (both sides see
// connection_closed) and dials between them fail until heal. It returns
// once the links' OnClose has run (the peers have left the tables). n must
// have been started with onNet.
func (n *Node) partition(peers ...string) {
	for _, p := range peers {
		n.network().Partition(n.name.addr(), memAddr(p))
	}
}

// heal lifts the partition between n and peers.
func (n *Node) heal(peers ...string) {
	for _, p := range peers {
		n.network().Heal(n.name.addr(), memAddr(p))
	}
}

func (n *Node) network() *memlink.Network {
	if n.opts.network == nil {
		panic("node: a partition needs nodes on an in-memory network (onNet)")
	}
	return n.opts.network
}

func memAddr(name string) string {
	nn, err := parseName(name)
	if err != nil {
		panic(err)
	}
	return nn.addr()
}

// errTestCut is the reason cutLink closes a link with.
var errTestCut = errors.New("test: cut")

// cutLink closes a's link to b, if there is one, as a lost connection
// (nothing stops either side from dialling again).
func cutLink(a, b *Node) {
	if pe := a.peerIfUp(b.Self()); pe != nil {
		_ = pe.conn.Close(errTestCut)
	}
}

// memPair starts nodes a and b (cookie "c") on a fresh in-memory network,
// not connected yet: for tests of what crosses two nodes (links, monitors,
// exit signals, spawns) rather than of the transport.
func memPair(t *testing.T, opts ...Option) (a, b *Node) {
	t.Helper()
	nw := memlink.NewNetwork()
	opts = append(opts, onNet(nw))
	return startNamed(t, "a", "c", opts...), startNamed(t, "b", "c", opts...)
}
