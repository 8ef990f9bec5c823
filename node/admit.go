package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/meshrt/mesh/internal/handshake"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/tlsconn"
)

// Admission: the node's engine and listener, the handshake hook that runs
// the cookie handshake on every new connection, and the acceptor's decision
// (admit, the handshake's last step) on whether an authenticated connection
// becomes the peer's connection (membership.go, invariant 2).

// startNet starts the engine and the listener, fixing n.self's port when the
// name asked for port 0.
func (n *Node) startNet() error {
	n.hs = handshake.Config{
		Name:         n.self,
		Incarnation:  n.incarnation,
		Features:     uint64(n.features()),
		Key:          handshake.DeriveKey(n.cookie),
		ValidateName: validPeerName,
	}
	if n.opts.network != nil {
		return n.startMemNet(n.opts.network)
	}
	cert, err := tlsconn.NewCertificate(tlsconn.DefaultValidity)
	if err != nil {
		return err
	}
	eng, err := loop.New(
		loop.WithCertificate(cert),
		loop.WithHook(n.hook),
		loop.WithHandshakeOutcome(n.handshakeOutcome),
		loop.WithHandshakeTimeout(n.opts.handshakeTimeout),
		loop.WithLogger(n.log),
		loop.WithSocketBuffers(n.opts.sockRecv, n.opts.sockNotSent),
	)
	if err != nil {
		return fmt.Errorf("node: start engine: %w", err)
	}
	listen := n.listenAddr()
	addr, err := eng.Listen(listen, n.accept)
	if err != nil {
		_ = eng.Close()
		return fmt.Errorf("node: listen on %s: %w", listen, err)
	}
	if n.name.port == 0 {
		if ta, ok := addr.(*net.TCPAddr); ok {
			n.name.port = ta.Port
		}
	}
	n.self = n.name.String()
	n.hs.Name = n.self
	n.engine = eng
	n.links = engineLinker{eng}
	return nil
}

// listenAddr is the address the node listens on: WithListen's, else its
// name's.
func (n *Node) listenAddr() string {
	if n.opts.listen != "" {
		return n.opts.listen
	}
	return net.JoinHostPort(n.name.host, strconv.Itoa(n.name.port))
}

// features are the link capabilities this node offers its peers.
func (n *Node) features() wire.Features {
	f := wire.FeatureFragments
	if n.opts.companions {
		f |= wire.FeatureCompanion
	}
	if n.opts.compression {
		f |= wire.FeatureS2
	}
	return f
}

// peerInfo is what the hook hands over with an authenticated connection.
type peerInfo struct {
	name        string
	incarnation uint64
	features    wire.Features
	peer        *peer // acceptor side: the admitted, reserved peer
	companionOf *peer // acceptor side: the link an admitted companion joins
}

// errDuplicate ends a connection that lost the simultaneous-dial rule: the
// acceptor keeps a connection of its own choosing.
var errDuplicate = handshake.ErrDuplicate

// hook runs on the engine's handshake goroutine, in blocking mode, right
// after TLS: the cookie handshake, whose last step, on the acceptor, is
// admit's decision. The engine holds the connection's deadline throughout.
// Every handshake that reaches the hook is counted here, once, by outcome.
func (n *Node) hook(ctx context.Context, tc *tls.Conn, outbound bool, dialArg any) (any, error) {
	dialled, companion := "", false
	if outbound {
		switch a := dialArg.(type) {
		case string:
			dialled = a
		case companionDial:
			dialled, companion = string(a), true
		}
	}
	// Start listens before it has built everything the rest needs (the
	// registry needs the name, which needs the bound port): wait for it.
	select {
	case <-n.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cfg := n.hs
	if companion {
		cfg.Features |= uint64(wire.RoleCompanion)
	}
	var admitted *peer    // acceptor: the reservation admit made
	var companionOf *peer // acceptor: the link an admitted companion joins
	var companionID uint64
	if !outbound {
		cfg.Admit = func(ctx context.Context, h handshake.Hello) handshake.Admission {
			if wire.Features(h.Features)&wire.RoleCompanion != 0 {
				pe, id := n.admitCompanion(ctx, n.peerInfo(h))
				if id == 0 {
					return handshake.Refused
				}
				companionOf, companionID = pe, id
				return handshake.Admitted
			}
			pe, d, old := n.admit(n.peerInfo(h))
			if old != nil {
				// The connection this one replaces must be gone, its
				// cleanup done, before this one starts: otherwise that
				// cleanup would reach links, monitors and names made over
				// the new one.
				old.retire(ctx)
			}
			admitted = pe
			return d
		}
	}
	res, err := handshake.Run(ctx, tc, &cfg, dialled)
	n.metrics.handshake(handshake.Reason(err))
	if err != nil {
		if admitted != nil {
			n.unreserve(admitted) // admitted, but the dialler never heard so
		}
		if companionOf != nil {
			companionOf.unadmitCompanion(companionID)
		}
		return nil, err
	}
	info := n.peerInfo(res.Peer)
	info.peer, info.companionOf = admitted, companionOf
	return info, nil
}

// validPeerName accepts a peer's name only in the one form the node
// writes it (parseName's): a node could otherwise sit in the peer table
// under two names (a port with a leading zero, a host in another case).
func validPeerName(s string) error {
	nn, err := parseName(s)
	if err != nil {
		return err
	}
	if c := nn.String(); c != s {
		return fmt.Errorf("%w: %q is not in its canonical form %q", ErrBadName, s, c)
	}
	return nil
}

// handshakeOutcome counts a connection the engine ended before the hook
// (tls, timeout, limit); the hook counts the rest, so each handshake is
// counted once. Before Start has built the metrics there is nothing to
// count into: such an outcome is dropped.
func (n *Node) handshakeOutcome(outcome string) {
	select {
	case <-n.ready:
		n.metrics.handshake(outcome)
	default:
	}
}

// peerInfo is what the node keeps of a peer's hello.
func (n *Node) peerInfo(h handshake.Hello) *peerInfo {
	return &peerInfo{
		name:        h.Name,
		incarnation: h.Incarnation,
		features:    wire.Features(n.hs.Features&h.Features) &^ wire.RoleCompanion,
	}
}

// admit decides, as the acceptor, whether an authenticated inbound
// connection from info.name becomes the peer's connection (invariant 2), and
// if so reserves the name for it.
func (n *Node) admit(info *peerInfo) (*peer, handshake.Admission, *peer) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	if n.stopped.Load() {
		return nil, handshake.Refused, nil
	}
	old := n.peers[info.name]
	_, dialling := n.dialing[info.name]
	sameRun := old != nil && old.incarnation == info.incarnation
	if (sameRun || dialling) && n.self < info.name {
		// Our own connection (made or being made) is dialled by the
		// smaller name: it wins, this one is the duplicate.
		return nil, handshake.Duplicate, nil
	}
	pe := n.newPeer(info, false)
	n.peers[info.name] = pe
	n.publishPeersLocked()
	// A reservation whose connection the engine drops after this hook
	// (deadline, engine closing) never reaches accept: let it lapse.
	pe.lapse = time.AfterFunc(2*n.opts.handshakeTimeout, func() { n.unreserve(pe) })
	return pe, handshake.Admitted, old
}

// unreserve drops a reservation made by admit whose connection never came
// up (it was never attached).
func (n *Node) unreserve(pe *peer) {
	n.peersMu.Lock()
	if n.peers[pe.name] == pe && pe.conn == nil {
		delete(n.peers, pe.name)
		n.publishPeersLocked()
		close(pe.lapsed) // under peersMu: attach sees it (and drops a late conn)
	}
	n.peersMu.Unlock()
}

// accept receives an authenticated inbound connection from the engine.
func (n *Node) accept(c *loop.Conn) {
	info := c.Info().(*peerInfo)
	if info.companionOf != nil {
		info.companionOf.attachCompanion(c)
		return
	}
	info.peer.attach(c)
}
