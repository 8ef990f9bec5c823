package node

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/meshrt/mesh/internal/handshake"
	"github.com/meshrt/mesh/internal/memlink"
	"github.com/meshrt/mesh/internal/memnode"
	"github.com/meshrt/mesh/internal/wire"
)

// A node on an in-memory network: its links are internal/memlink ends,
// its address an endpoint of a memlink.Network. For tests of what runs
// above a connection; nothing here runs unless withNetwork was given.
//
// The handshake is the in-memory network's: the dialler's hello reaches
// the acceptor as a value (name, incarnation, features and the key derived
// from the cookie, compared in constant time), and the acceptor's admit
// decides as it does inside the cookie handshake. A link is handed out
// admitted, with the peer's hello already known: no TLS, no proof over a
// wire, no admission limits (those are the engine's, tested on it).

// withNetwork makes the node get its links from nw instead of the loop
// engine. Its name's port 0 picks a free address on nw.
func withNetwork(nw *memlink.Network) Option { return func(o *options) { o.network = nw } }

// nodetest reaches withNetwork through internal/memnode.
func init() { memnode.Option = func(nw *memlink.Network) any { return withNetwork(nw) } }

// memHello is what each side of an in-memory dial tells the other.
type memHello struct {
	name        string
	incarnation uint64
	features    uint64
	key         handshake.Key
}

// memLinker dials from the node's endpoint on its network.
type memLinker struct {
	n  *Node
	ep *memlink.Endpoint
}

// startMemNet is startNet on an in-memory network.
func (n *Node) startMemNet(nw *memlink.Network) error {
	ep, err := nw.Listen(n.listenAddr(), n.memHandshake, n.memAccept)
	if err != nil {
		return fmt.Errorf("node: listen: %w", err)
	}
	if n.name.port == 0 {
		if _, port, err := net.SplitHostPort(ep.Addr()); err == nil {
			n.name.port, _ = strconv.Atoi(port)
		}
	}
	n.self = n.name.String()
	n.hs.Name = n.self
	n.links = memLinker{n: n, ep: ep}
	return nil
}

func (n *Node) memHello() *memHello {
	// In-memory links take no companion connection (companion.go): the
	// in-memory network has no second connection to give.
	f := n.hs.Features &^ uint64(wire.FeatureCompanion)
	return &memHello{name: n.self, incarnation: n.incarnation, features: f, key: n.hs.Key}
}

// memHandshake is the acceptor's side of an in-memory dial: the cookie
// check, then admit (as the cookie handshake's Admit step).
func (n *Node) memHandshake(ctx context.Context, hello any) (info, reply any, err error) {
	select {
	case <-n.ready:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	defer func() { n.metrics.handshake(handshake.Reason(err)) }()
	h, ok := hello.(*memHello)
	if !ok {
		return nil, nil, handshake.ErrBadHello
	}
	if !hmac.Equal(h.key[:], n.hs.Key[:]) {
		return nil, nil, fmt.Errorf("%w: the peer's cookie differs", handshake.ErrAuth)
	}
	pi := n.peerInfo(handshake.Hello{Name: h.name, Incarnation: h.incarnation, Features: h.features})
	pe, d, old := n.admit(pi)
	if old != nil {
		old.retire(ctx)
	}
	switch d {
	case handshake.Duplicate:
		return nil, nil, errDuplicate
	case handshake.Refused:
		return nil, nil, handshake.ErrRefused
	}
	pi.peer = pe
	return pi, n.memHello(), nil
}

// memAccept receives an admitted inbound link from the network.
func (n *Node) memAccept(c *memlink.Conn) {
	c.Info().(*peerInfo).peer.attach(c)
}

func (l memLinker) dial(ctx context.Context, addr, name string) (link, *peerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, l.n.opts.handshakeTimeout)
	defer cancel()
	c, err := l.ep.Dial(ctx, addr, l.n.memHello())
	if err != nil {
		return nil, nil, err
	}
	h := c.Info().(*memHello)
	if h.name != name {
		closeUnstarted(c, handshake.ErrUnexpectedPeer)
		return nil, nil, fmt.Errorf("%w: %s answered at %s", handshake.ErrUnexpectedPeer, h.name, addr)
	}
	return c, l.n.peerInfo(handshake.Hello{Name: h.name, Incarnation: h.incarnation, Features: h.features}), nil
}

// dialCompanion is never called: in-memory links do not offer companions
// (memHello).
func (l memLinker) dialCompanion(context.Context, string, string) (link, *peerInfo, error) {
	return nil, nil, errors.New("node: in-memory links take no companion connection")
}

func (l memLinker) close() error { return l.ep.Close() }
