package memlink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/meshrt/mesh/loop"
)

// ErrRefused is the error of a dial to an address no endpoint listens on.
var ErrRefused = errors.New("memlink: connection refused")

// Handshake is an endpoint's side of a dial: given the dialler's hello, it
// returns what the accepted end's Info will be and the reply that becomes
// the dialled end's Info, or an error that fails the dial. It runs on the
// dialling goroutine, bounded by the dial's ctx, and may block.
type Handshake func(ctx context.Context, hello any) (info, reply any, err error)

// Network connects endpoints by address, in memory, and holds the
// partitions between pairs of them. Its methods are safe from any
// goroutine.
type Network struct {
	opts options

	mu       sync.Mutex
	eps      map[string]*Endpoint // listening endpoints by address
	apart    map[[2]string]bool   // partitioned pairs of addresses (true: frozen)
	lastPort int
}

// NewNetwork returns an empty network whose links use opts.
func NewNetwork(opts ...Option) *Network {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	// Ports picked for port 0 start high, clear of the small fixed ports
	// tests name to mean "nobody there".
	return &Network{opts: o, eps: make(map[string]*Endpoint), apart: make(map[[2]string]bool), lastPort: 20000}
}

// Endpoint is one listener on a [Network], and the dialler of the links it
// makes: every end it dials or accepts belongs to it until Close.
type Endpoint struct {
	nw        *Network
	addr      string
	handshake Handshake
	accept    func(*Conn)

	mu      sync.Mutex
	closed  bool
	ends    map[*Conn]struct{} // ends not finished
	accepts sync.WaitGroup     // accept calls in progress
}

// Listen makes an endpoint at addr ("host:port"; port 0 picks one not in
// use). Each dial to it runs handshake; an accepted end is handed to accept
// on a goroutine of its own, which should set its handler and Start it.
func (nw *Network) Listen(addr string, handshake Handshake, accept func(*Conn)) (*Endpoint, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("memlink: listen %q: %w", addr, err)
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if port == "0" {
		for {
			nw.lastPort++
			addr = net.JoinHostPort(host, strconv.Itoa(nw.lastPort))
			if nw.eps[addr] == nil {
				break
			}
		}
	} else if nw.eps[addr] != nil {
		return nil, fmt.Errorf("memlink: listen %s: address in use", addr)
	}
	ep := &Endpoint{nw: nw, addr: addr, handshake: handshake, accept: accept, ends: make(map[*Conn]struct{})}
	nw.eps[addr] = ep
	return ep, nil
}

// Addr returns the endpoint's address.
func (ep *Endpoint) Addr() string { return ep.addr }

// Dial connects to the endpoint at addr: its handshake gets hello, and the
// returned end (not started) has the handshake's reply as its Info. A dial
// across a partition fails with [ErrPartitioned], to no endpoint with
// [ErrRefused]; a handshake's error is wrapped in [loop.ErrHandshake]. Safe
// from any goroutine but a handler's.
func (ep *Endpoint) Dial(ctx context.Context, addr string, hello any) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memlink: dial %s: %w", addr, err)
	}
	nw := ep.nw
	nw.mu.Lock()
	to := nw.eps[addr]
	_, apart := nw.apart[pairKey(ep.addr, addr)]
	nw.mu.Unlock()
	switch {
	case ep.isClosed():
		return nil, loop.ErrEngineClosed
	case apart:
		return nil, fmt.Errorf("memlink: dial %s: %w", addr, ErrPartitioned)
	case to == nil:
		return nil, fmt.Errorf("memlink: dial %s: %w", addr, ErrRefused)
	}
	info, reply, err := to.handshake(ctx, hello)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", loop.ErrHandshake, err)
	}
	a, b := newPair(&nw.opts, reply, info, ep, to)
	// Registered with both endpoints and checked against partitions in one
	// step: a partition or a close from here on finds the pair and ends it.
	nw.mu.Lock()
	frozen, apart := nw.apart[pairKey(ep.addr, addr)]
	okA, okB := ep.add(a), to.add(b)
	nw.mu.Unlock()
	if okB {
		go func() {
			defer to.accepts.Done()
			to.accept(b)
		}()
	}
	switch {
	case !okA:
		a.closeEnd(loop.ErrEngineClosed) // b hears of it as a close
		return nil, loop.ErrEngineClosed
	case !okB:
		ep.untrack(a)
		return nil, fmt.Errorf("memlink: dial %s: %w", addr, ErrRefused)
	case apart && frozen:
		a.setFrozen(true)
		b.setFrozen(true)
	case apart:
		resetAll([]*Conn{a, b}, ErrPartitioned)
	}
	return a, nil
}

// add registers c with the endpoint, and an accept call if c is the
// accepted end; false if the endpoint is closed.
func (ep *Endpoint) add(c *Conn) bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed {
		return false
	}
	ep.ends[c] = struct{}{}
	if !c.outbound {
		ep.accepts.Add(1)
	}
	return true
}

func (ep *Endpoint) untrack(c *Conn) {
	ep.mu.Lock()
	delete(ep.ends, c)
	ep.mu.Unlock()
}

func (ep *Endpoint) isClosed() bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.closed
}

// Close stops the endpoint, as [loop.Engine.Close]: no more dials reach it
// or leave it, every end it holds is closed with [loop.ErrEngineClosed],
// and Close returns once the accept calls have returned and every started
// end has delivered OnClose (an end that starts later gets its OnClose in
// Start). Idempotent; not from a handler.
func (ep *Endpoint) Close() error {
	ep.nw.mu.Lock()
	if ep.nw.eps[ep.addr] == ep {
		delete(ep.nw.eps, ep.addr)
	}
	ep.nw.mu.Unlock()
	ep.mu.Lock()
	ep.closed = true
	ends := ep.snapshotLocked()
	ep.mu.Unlock()
	for _, c := range ends {
		c.closeEnd(loop.ErrEngineClosed)
	}
	ep.accepts.Wait()
	waitStarted(ends)
	return nil
}

func (ep *Endpoint) snapshotLocked() []*Conn {
	out := make([]*Conn, 0, len(ep.ends))
	for c := range ep.ends {
		out = append(out, c)
	}
	return out
}

// waitStarted waits for OnClose on every end of ends that has started or
// has a handler (the others deliver it when they start).
func waitStarted(ends []*Conn) {
	for _, c := range ends {
		c.mu.Lock()
		wait := c.started || c.handler != nil
		c.mu.Unlock()
		if wait {
			<-c.gone
		}
	}
}

// Partition cuts a and b apart, as a network that resets their
// connections: both ends of every link between them close with a reason
// wrapping [loop.ErrPeerClosed] and [ErrPartitioned], and dials between
// them fail until [Network.Heal]. It returns once the started ends have
// delivered OnClose. Not from a handler.
func (nw *Network) Partition(a, b string) {
	ends := nw.setApart(a, b, false)
	resetAll(ends, ErrPartitioned)
	waitStarted(ends)
}

// Freeze cuts a and b apart silently: their links stay open but carry
// nothing either way (senders fill their queues and wait, as over a
// network that drops every packet), and dials between them fail, until
// [Network.Heal].
func (nw *Network) Freeze(a, b string) {
	for _, c := range nw.setApart(a, b, true) {
		c.setFrozen(true)
	}
}

// Heal lifts a partition or a freeze between a and b: frozen links carry
// what they held, and dials between them succeed again.
func (nw *Network) Heal(a, b string) {
	nw.mu.Lock()
	delete(nw.apart, pairKey(a, b))
	ends := nw.linksLocked(a, b)
	nw.mu.Unlock()
	for _, c := range ends {
		c.setFrozen(false)
	}
}

// setApart records the partition of a and b and returns both ends of every
// link between them.
func (nw *Network) setApart(a, b string, frozen bool) []*Conn {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.apart[pairKey(a, b)] = frozen
	return nw.linksLocked(a, b)
}

// linksLocked returns both ends of every link between the endpoints at a
// and b. nw.mu must be held.
func (nw *Network) linksLocked(a, b string) []*Conn {
	var out []*Conn
	if ep := nw.eps[a]; ep != nil {
		ep.mu.Lock()
		for c := range ep.ends {
			if c.other.ep != nil && c.other.ep.addr == b {
				out = append(out, c, c.other)
			}
		}
		ep.mu.Unlock()
	}
	return out
}

func (c *Conn) setFrozen(on bool) {
	c.mu.Lock()
	c.frozen = on
	c.mu.Unlock()
	c.signal()
	c.other.signal()
}

func pairKey(a, b string) [2]string {
	if cmp.Less(b, a) {
		a, b = b, a
	}
	return [2]string{a, b}
}
