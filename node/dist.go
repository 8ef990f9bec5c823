package node

// Distribution: the node's engine, the handshake hook, admission of peer
// connections and Connect.
//
// Invariants.
//
//  1. At most one live connection per peer name: n.peers holds it. A name is
//     in n.peers from the moment its connection is admitted (acceptor: in the
//     handshake hook, before the status byte says OK; dialler: when Dial
//     returns) until that connection's OnClose has finished the cleanup.
//  2. Simultaneous dials end with one connection by a rule both sides apply
//     alike: a connection dialled by the node with the smaller name wins. The
//     acceptor decides right after the cookie proofs and tells the dialler
//     with one status byte; see admit.
//  3. A newer incarnation of a peer replaces the older one's connection at
//     once: the old one is closed and its processes are reported gone.
//  4. Lock order: n.peersMu, then nothing (no process lock, no I/O, no
//     Enqueue under it).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/handshake"
	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/tlsconn"
)

// Status bytes the acceptor sends right after the proofs.
const (
	statusOK        byte = 1
	statusDuplicate byte = 2 // the peer keeps a connection of its own choosing
	statusRefused   byte = 3 // the peer does not take this connection now
)

// errDuplicate ends a connection that lost the simultaneous-dial rule.
var errDuplicate = errors.New("node: duplicate connection")

// errRefused ends a connection the acceptor does not take now (it is
// stopping, or a test partitioned it away).
var errRefused = errors.New("node: connection refused by peer")

// errReplaced ends a connection superseded by a newer incarnation's.
var errReplaced = errors.New("node: connection replaced by a newer incarnation")

// dialCall is one Connect in progress to a name; others wait on it.
type dialCall struct {
	done chan struct{}
	err  error // set before done closes
}

// startNet starts the engine and the listener, fixing n.self's port when the
// name asked for port 0.
func (n *Node) startNet() error {
	cert, err := tlsconn.NewCertificate(tlsconn.DefaultValidity)
	if err != nil {
		return err
	}
	n.hs = handshake.Config{
		Name:         n.self,
		Incarnation:  n.incarnation,
		Features:     uint64(n.features()),
		Key:          handshake.DeriveKey(n.cookie),
		ValidateName: func(s string) error { _, err := parseName(s); return err },
	}
	eng, err := loop.New(
		loop.WithCertificate(cert),
		loop.WithHook(n.hook),
		loop.WithHandshakeTimeout(n.opts.handshakeTimeout),
		loop.WithLogger(n.log),
	)
	if err != nil {
		return fmt.Errorf("node: start engine: %w", err)
	}
	listen := n.opts.listen
	if listen == "" {
		listen = net.JoinHostPort(n.name.host, strconv.Itoa(n.name.port))
	}
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
	return nil
}

// features are the link capabilities this node offers its peers.
func (n *Node) features() codec.Features {
	f := codec.FeatureFragments
	if n.opts.compression {
		f |= codec.FeatureS2
	}
	return f
}

// peerInfo is what the hook hands over with an authenticated connection.
type peerInfo struct {
	name        string
	incarnation uint64
	features    codec.Features
	peer        *peer // acceptor side: the admitted, reserved peer
}

// hook runs on the engine's handshake goroutine, in blocking mode, right
// after TLS: the cookie handshake, then the admission status byte.
func (n *Node) hook(ctx context.Context, tc *tls.Conn, outbound bool, dialArg any) (any, error) {
	dialled := ""
	if outbound {
		dialled, _ = dialArg.(string)
	}
	// Start listens before it has built everything the rest needs (the
	// registry needs the name, which needs the bound port): wait for it.
	select {
	case <-n.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res, err := handshake.Run(ctx, tc, &n.hs, dialled)
	if err != nil {
		n.metrics.handshake(handshake.Reason(err))
		return nil, err
	}
	info := &peerInfo{
		name:        res.Peer.Name,
		incarnation: res.Peer.Incarnation,
		features:    codec.Features(res.Features),
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = tc.SetDeadline(dl)
		defer func() { _ = tc.SetDeadline(time.Time{}) }()
	}
	if outbound {
		var status [1]byte
		if _, err := io.ReadFull(tc, status[:]); err != nil {
			n.metrics.handshake("io")
			return nil, fmt.Errorf("node: reading admission status: %w", err)
		}
		n.metrics.handshake(statusReason(status[0]))
		switch status[0] {
		case statusOK:
			return info, nil
		case statusDuplicate:
			return nil, errDuplicate
		default:
			return nil, errRefused
		}
	}
	pe, status, old := n.admit(info)
	if old != nil {
		// The connection this one replaces must be gone, its cleanup done,
		// before this one starts: otherwise that cleanup would reach links,
		// monitors and names made over the new one.
		old.retire(ctx)
	}
	n.metrics.handshake(statusReason(status))
	if _, err := tc.Write([]byte{status}); err != nil || status != statusOK {
		if status == statusOK {
			n.unreserve(pe)
			return nil, fmt.Errorf("node: writing admission status: %w", err)
		}
		if status == statusDuplicate {
			return nil, errDuplicate
		}
		return nil, errRefused
	}
	info.peer = pe
	return info, nil
}

// statusReason is the handshake counter's label for an admission outcome:
// each handshake is counted once, by how it ended.
func statusReason(status byte) string {
	switch status {
	case statusOK:
		return "ok"
	case statusDuplicate:
		return "duplicate"
	default:
		return "refused"
	}
}

// admit decides, as the acceptor, whether an authenticated inbound
// connection from info.name becomes the peer's connection (invariant 2), and
// if so reserves the name for it.
func (n *Node) admit(info *peerInfo) (*peer, byte, *peer) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	if n.stopped.Load() || n.isCutLocked(info.name) {
		return nil, statusRefused, nil
	}
	old := n.peers[info.name]
	_, dialling := n.dialing[info.name]
	sameRun := old != nil && old.incarnation == info.incarnation
	if (sameRun || dialling) && n.self < info.name {
		// Our own connection (made or being made) is dialled by the
		// smaller name: it wins, this one is the duplicate.
		return nil, statusDuplicate, nil
	}
	pe := n.newPeer(info, false)
	n.peers[info.name] = pe
	n.publishPeersLocked()
	// A reservation whose connection the engine drops after this hook
	// (deadline, engine closing) never reaches accept: let it lapse.
	pe.lapse = time.AfterFunc(2*n.opts.handshakeTimeout, func() { n.unreserve(pe) })
	return pe, statusOK, old
}

// unreserve drops a reservation made by admit whose connection never came
// up (it was never attached).
func (n *Node) unreserve(pe *peer) {
	n.peersMu.Lock()
	if n.peers[pe.name] == pe && pe.conn == nil {
		delete(n.peers, pe.name)
		n.publishPeersLocked()
	}
	n.peersMu.Unlock()
}

// retire ends a peer replaced by a newer connection and waits, bounded by
// ctx, until its cleanup is done. A peer not attached yet is marked, and
// attach closes it. Never called under peersMu.
func (old *peer) retire(ctx context.Context) {
	n := old.n
	n.peersMu.Lock()
	old.replaced = true
	c := old.conn
	n.peersMu.Unlock()
	if c == nil {
		return // attach will see replaced and close it
	}
	_ = c.Close(errReplaced)
	select {
	case <-old.down:
	case <-ctx.Done():
	}
}

// accept receives an authenticated inbound connection from the engine.
func (n *Node) accept(c *loop.Conn) {
	info := c.Info().(*peerInfo)
	info.peer.attach(c)
}

// Connect connects this node to the node named name, authenticating both
// ways with the cookie. It returns at once if the node is already connected.
// Errors: [ErrBadName] for a malformed name, [ErrAuth] when either side's
// cookie proof fails, [ErrNotConnected] (wrapping the cause) when the node
// cannot be reached.
func (n *Node) Connect(ctx context.Context, name string) error {
	nn, err := parseName(name)
	if err != nil {
		return err
	}
	name = nn.String()
	if name == n.self {
		return nil
	}
	_, err = n.connect(ctx, name, nn.addr())
	return err
}

// connect returns the peer named name, dialling addr if needed. Concurrent
// calls for one name share one dial.
func (n *Node) connect(ctx context.Context, name, addr string) (*peer, error) {
	for attempt := 0; ; attempt++ {
		n.peersMu.Lock()
		if n.stopped.Load() {
			n.peersMu.Unlock()
			return nil, ErrStopped
		}
		if n.isCutLocked(name) {
			n.peersMu.Unlock()
			return nil, partitionedErr(name)
		}
		if pe := n.peers[name]; pe != nil {
			n.peersMu.Unlock()
			return pe, pe.waitUp(ctx)
		}
		if d := n.dialing[name]; d != nil {
			n.peersMu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("connect %s: %w: %w", name, ErrNotConnected, ctx.Err())
			}
			if d.err != nil && !errors.Is(d.err, errDuplicate) {
				return nil, d.err
			}
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		n.dialing[name] = d
		n.peersMu.Unlock()

		pe, err := n.dial(ctx, name, addr)

		n.peersMu.Lock()
		delete(n.dialing, name)
		n.peersMu.Unlock()
		d.err = err
		close(d.done)
		if err == nil {
			return pe, nil
		}
		if errors.Is(err, errDuplicate) && attempt < 3 {
			// The peer keeps the connection it dialled to us; wait for
			// its arrival, bounded by ctx and the handshake timeout.
			if pe := n.awaitPeer(ctx, name); pe != nil {
				return pe, nil
			}
			continue
		}
		return nil, err
	}
}

// dial makes and registers an outbound connection.
func (n *Node) dial(ctx context.Context, name, addr string) (*peer, error) {
	c, err := n.engine.Dial(ctx, addr, name)
	if err != nil {
		return nil, connectErr(name, err)
	}
	info := c.Info().(*peerInfo)
	n.peersMu.Lock()
	if n.stopped.Load() {
		n.peersMu.Unlock()
		closeUnstarted(c, ErrStopped)
		return nil, ErrStopped
	}
	old := n.peers[name]
	if old != nil && old.incarnation == info.incarnation {
		// An inbound connection from the same run was admitted meanwhile
		// (the peer is the smaller name): keep that one.
		n.peersMu.Unlock()
		closeUnstarted(c, errDuplicate)
		return old, old.waitUp(ctx)
	}
	pe := n.newPeer(info, true)
	n.peers[name] = pe
	n.publishPeersLocked()
	n.peersMu.Unlock()
	if old != nil {
		old.retire(ctx)
	}
	pe.attach(c)
	return pe, nil
}

// closeUnstarted closes a connection that never got a handler: loop
// delivers OnClose to the closing goroutine for such a connection.
func closeUnstarted(c *loop.Conn, reason error) {
	c.SetHandler(discardHandler{})
	_ = c.Close(reason)
}

// discardHandler is the handler of connections closed before they start.
type discardHandler struct{}

func (discardHandler) OnData(_ *loop.Conn, b []byte) (int, error) { return len(b), nil }
func (discardHandler) OnClose(*loop.Conn, error)                  {}

// awaitPeer waits until name is in the peer table and up, or gives up
// after the handshake timeout. It wakes on each change of the table.
func (n *Node) awaitPeer(ctx context.Context, name string) *peer {
	ctx, cancel := context.WithTimeout(ctx, n.opts.handshakeTimeout)
	defer cancel()
	for {
		n.peersMu.Lock()
		pe := n.peers[name]
		if n.peersChanged == nil {
			n.peersChanged = make(chan struct{})
		}
		changed := n.peersChanged
		n.peersMu.Unlock()
		if pe != nil {
			// Up, or gone; or replaced meanwhile (a reservation that
			// lapsed, a newer connection): then look again.
			select {
			case <-pe.up:
				if pe.isUp() {
					return pe
				}
			case <-pe.down:
			case <-changed:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// connectErr maps a transport or handshake failure to the runtime's errors.
func connectErr(name string, err error) error {
	switch {
	case errors.Is(err, handshake.ErrAuth):
		return fmt.Errorf("connect %s: %w: %w", name, ErrAuth, err)
	case errors.Is(err, errDuplicate):
		return fmt.Errorf("connect %s: %w: %w", name, ErrNotConnected, err)
	case errors.Is(err, handshake.ErrVersion):
		return fmt.Errorf("connect %s: %w: %w", name, ErrVersion, err)
	default:
		return fmt.Errorf("connect %s: %w: %w", name, ErrNotConnected, err)
	}
}

// List returns the names of the connected nodes, sorted, without this node.
func (n *Node) List() []string {
	n.peersMu.Lock()
	names := make([]string, 0, len(n.peers))
	for name, pe := range n.peers {
		if pe.isUp() {
			names = append(names, name)
		}
	}
	n.peersMu.Unlock()
	slices.Sort(names)
	return names
}

// publishPeersLocked makes a read-only copy of n.peers for the send path,
// which looks a peer up on every remote send without taking peersMu.
// n.peersMu must be held. Peers change rarely; sends are constant.
func (n *Node) publishPeersLocked() {
	view := make(map[string]*peer, len(n.peers))
	for name, pe := range n.peers {
		view[name] = pe
	}
	n.peerView.Store(&view)
	if n.peersChanged != nil {
		close(n.peersChanged)
		n.peersChanged = nil
	}
}

// peerFor returns the connected peer for node, connecting on demand.
func (n *Node) peerFor(node string) (*peer, error) {
	if view := n.peerView.Load(); view != nil {
		if pe := (*view)[node]; pe != nil && pe.isUp() {
			return pe, nil
		}
	}
	nn, err := parseName(node)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(n.life, n.opts.handshakeTimeout)
	defer cancel()
	return n.connect(ctx, nn.String(), nn.addr())
}
