package node

// Local names: Register, Whereis, Unregister, Registered, and SendNamed.
//
// Names are local to one node (the cluster-wide registry is Global). A name
// binds one live local process; a process may hold several names. A name
// goes when its process exits: die calls processExited, which skips the
// table's lock while no name is bound at all.
//
// Invariant: a name is bound only to a process that is alive at the moment
// of binding, checked under the process's lock after the binding is made
// visible (bind, then check; die marks dead, then clears): either the bind
// sees the process dead and undoes itself, or die's cleanup, which runs
// after dead is set, sees the binding and removes it.

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/meshrt/mesh/internal/wire"
)

// ErrNameTaken reports a [Node.Register] of a name that is already bound.
var ErrNameTaken = errors.New("node: name taken")

// errNotRegistered reports an Unregister of a name that is not bound.
var errNotRegistered = errors.New("node: name not registered")

// nameTable is the node's local names.
type nameTable struct {
	mu    sync.RWMutex
	names map[string]*Process // guarded by mu
	byID  map[uint64][]string // guarded by mu: the names each process holds
	count atomic.Int64        // len(names), read without the lock by processExited
}

// maxLocalName bounds a local name (it travels in SendNamed records).
const maxLocalName = wire.MaxAddrName

// Register binds name to the local process pid, until Unregister or the
// process's exit. It fails with [ErrNameTaken] when name is bound already,
// and with [ErrNoProc] when pid is not a live process of this node. Safe
// from any goroutine.
func (n *Node) Register(name string, pid PID) error {
	if name == "" || len(name) > maxLocalName {
		return fmt.Errorf("register %q: name must be 1..%d bytes: %w", name, maxLocalName, ErrBadName)
	}
	p := n.local(pid)
	if p == nil {
		return fmt.Errorf("register %q: %v: %w", name, pid, ErrNoProc)
	}
	t := &n.svc.names
	t.mu.Lock()
	if _, ok := t.names[name]; ok {
		t.mu.Unlock()
		return fmt.Errorf("register %q: %w", name, ErrNameTaken)
	}
	if t.names == nil {
		t.names = make(map[string]*Process)
		t.byID = make(map[uint64][]string)
	}
	t.names[name] = p
	t.byID[p.pid.ID] = append(t.byID[p.pid.ID], name)
	t.count.Add(1)
	t.mu.Unlock()
	if !p.isAlive() {
		// It died meanwhile; its cleanup may have run before the bind.
		n.svc.names.processExited(p)
		return fmt.Errorf("register %q: %v: %w", name, pid, ErrNoProc)
	}
	return nil
}

// Whereis returns the local process registered as name. Safe from any
// goroutine; it never touches the network.
func (n *Node) Whereis(name string) (PID, bool) {
	if p := n.svc.names.lookup(name); p != nil {
		return p.pid, true
	}
	return PID{}, false
}

// Unregister removes the local name. It fails (wrapping [ErrNoProc]) when
// the name is not registered. Safe from any goroutine.
func (n *Node) Unregister(name string) error {
	t := &n.svc.names
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.names[name]
	if !ok {
		return fmt.Errorf("unregister %q: %w: %w", name, errNotRegistered, ErrNoProc)
	}
	delete(t.names, name)
	t.count.Add(-1)
	held := slices.DeleteFunc(t.byID[p.pid.ID], func(s string) bool { return s == name })
	if len(held) == 0 {
		delete(t.byID, p.pid.ID)
	} else {
		t.byID[p.pid.ID] = held
	}
	return nil
}

// Registered returns the local names, sorted. Safe from any goroutine.
func (n *Node) Registered() []string {
	t := &n.svc.names
	t.mu.RLock()
	out := make([]string, 0, len(t.names))
	for name := range t.names {
		out = append(out, name)
	}
	t.mu.RUnlock()
	slices.Sort(out)
	return out
}

// lookup returns the live process bound to name, or nil.
func (t *nameTable) lookup(name string) *Process {
	t.mu.RLock()
	p := t.names[name]
	t.mu.RUnlock()
	return p
}

// processExited drops the names p holds. Called once p is marked dead.
func (t *nameTable) processExited(p *Process) {
	if t.count.Load() == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, name := range t.byID[p.pid.ID] {
		if t.names[name] == p {
			delete(t.names, name)
			t.count.Add(-1)
		}
	}
	delete(t.byID, p.pid.ID)
}

// SendNamed sends msg to the process registered as name on node (this
// node's name or another's; see [Node.Register]). There is no lookup round
// trip: the message goes to the name, and the node that holds it resolves
// it on arrival. A name not registered there drops the message, as a send
// to an exited process does. Safe from any goroutine.
func (p *Process) SendNamed(node, name string, msg any) error {
	return p.node.sendNamed(p.pid.ID, node, name, msg)
}

// SendNamed is [Process.SendNamed] from outside any process. Safe from any
// goroutine.
func (n *Node) SendNamed(node, name string, msg any) error {
	return n.sendNamed(0, node, name, msg)
}

func (n *Node) sendNamed(from uint64, node, name string, msg any) error {
	if node != n.self {
		nn, err := parseName(node)
		if err != nil {
			return fmt.Errorf("send to %s on %s: %w", name, node, err)
		}
		node = nn.String()
	}
	if node == n.self {
		if t := n.svc.names.lookup(name); t != nil {
			t.mb.Push(msg)
		}
		return nil
	}
	if name == "" || len(name) > maxLocalName {
		return fmt.Errorf("send to %q on %s: name must be 1..%d bytes: %w", name, node, maxLocalName, ErrBadName)
	}
	pe, err := n.peerFor(node)
	if err != nil {
		return fmt.Errorf("send to %s on %s: %w", name, node, err)
	}
	bp := getBuf()
	item, err := wire.AppendAddressed((*bp)[:0], from, wire.AddrName, name, 0, 0, msg)
	if err == nil {
		err = n.sendItem(pe, from, item)
	}
	putBuf(bp, item)
	if err != nil {
		return fmt.Errorf("send to %s on %s: %w", name, node, err)
	}
	return nil
}
