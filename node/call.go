package node

// Request and reply: Call, CallNamed and Reply.
//
// A call monitors its target for as long as it waits, so a target that does
// not exist, exits, or whose node is lost ends the call at once with the
// reason. The monitor's reference doubles as the request's reference and as
// the caller's alias: while the call waits, the node's alias table maps the
// reference to the calling process, and a reply is delivered only through
// that table. A reply that arrives once the call has returned finds no
// alias and is dropped where it arrives, never queued.
//
// Invariants.
//
//  1. A reply is pushed into the caller's mailbox only under the alias
//     table's shard lock, while the alias is present. The caller removes the
//     alias under that lock before it returns, so no reply can be pushed
//     afterwards. A reply pushed just before the removal, which the call did
//     not take (its context ended at that moment), is dropped by the
//     caller's next receive (dropStale): no user receive ever sees one.
//  2. The replier that holds the call's monitor releases it when it
//     replies, and says so in the reply (callReply.released): the caller then
//     drops its half of the monitor locally, and a remote call costs no
//     demonitor frame. Any other outcome (another process replied, the
//     context ended) demonitors normally.
//  3. Down for a call's monitor is pushed only by whoever removes the
//     caller's watching entry, under the caller's lock (process.go die,
//     remote.go remoteDown and peerGone): once demonitor has removed the
//     entry, no Down for it can arrive, and if demonitor finds the entry
//     gone, its Down is already queued and the call takes it out.

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/meshrt/mesh/codec"
)

// ErrNoProc reports a call to a process that does not exist (reason
// [NoProc]); it is matched by a [*ExitError] with that reason.
var ErrNoProc = errors.New("node: no such process")

// Request is what a process receives for each [Process.Call] made to it.
// Answer it with [Process.Reply]; Body is what the caller passed.
type Request struct {
	From PID // the calling process
	Ref  Ref // the call's reference; the reply must carry it
	Body any
}

func init() {
	codec.MustRegister("mesh.Request", Request{})
}

// ExitError reports a call whose target did not exist or exited before it
// replied. errors.Is(err, [ErrNoProc]) holds when Reason is [NoProc], and
// errors.Is(err, [ErrNotConnected]) when it is [NoConnection] (the
// connection to the target's node was lost or could not be made). When the
// reason is an error (a local process that returned one, or panicked), it is
// what Unwrap returns, so errors.As reaches a [*PanicError].
type ExitError struct {
	PID    PID
	Reason any
}

// Error describes the exit.
func (e *ExitError) Error() string {
	return fmt.Sprintf("node: %v exited: %v", e.PID, e.Reason)
}

// Is makes errors.Is(err, ErrNoProc) and errors.Is(err, ErrNotConnected)
// match the standard reasons.
func (e *ExitError) Is(target error) bool {
	switch target {
	case ErrNoProc:
		return e.Reason == any(NoProc)
	case ErrNotConnected:
		return e.Reason == any(NoConnection)
	}
	return false
}

// Unwrap returns the reason when it is an error.
func (e *ExitError) Unwrap() error {
	err, _ := e.Reason.(error)
	return err
}

// services is the node's state for calls, local names, timers and crash
// reports.
type services struct {
	aliases aliasTable
	names   nameTable
	timers  timerSet
	crash   crashLog
}

// processExited releases what p held here. Called by die, once p is dead.
func (s *services) processExited(p *Process) {
	s.names.processExited(p)
	s.timers.cancelTarget(p.pid.ID)
}

// down delivers the Down of the monitor ref that p holds on pid, if p still
// holds it: checked and pushed under p's lock (invariant 3).
func (p *Process) down(ref Ref, pid PID, reason any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.rel.watchingRef(ref); !ok {
		return
	}
	delete(p.rel.watching, ref)
	p.mb.Push(Down{Ref: ref, PID: pid, Reason: reason})
}

// callReply is a reply as the caller's mailbox holds it. Pooled: the call
// that takes one from its mailbox frees it; one dropped unread (a late
// reply) is left to the garbage collector.
type callReply struct {
	ref      Ref
	value    any
	enc      []byte // a large remote reply, still encoded: the caller decodes it
	err      error  // the reply could not be decoded
	released bool   // the replier dropped its end of the call's monitor
}

var callReplies = sync.Pool{New: func() any { return new(callReply) }}

func newCallReply(ref Ref, v any, released bool) *callReply {
	r := callReplies.Get().(*callReply)
	r.ref, r.value, r.released = ref, v, released
	return r
}

// free returns r to the pool; r must not be used afterwards.
func (r *callReply) free() {
	*r = callReply{}
	callReplies.Put(r)
}

// Call sends req to the process to and waits for its reply (see
// [Process.Reply]). The target receives a [Request]. Call returns the reply;
// a [*ExitError] when the target does not exist, exits or its node is lost
// before it replies (errors.Is(err, [ErrNoProc]) / [ErrNotConnected]); an
// error wrapping the codec's (codec.ErrCorrupt, codec.ErrLimit) for a reply
// this node cannot decode; or an error wrapping ctx.Err() when ctx ends
// first. A reply that comes after
// Call returned is dropped. Call is for the process's own goroutine, one
// call at a time.
func (p *Process) Call(ctx context.Context, to PID, req any) (any, error) {
	if to.Node == "" {
		return nil, fmt.Errorf("call %v: %w", to, ErrBadPID)
	}
	n := p.node
	if to.Node != n.self {
		// One record carries the request and sets the monitor where it
		// arrives (addressed.go): a remote call costs one frame each way.
		ref, pe := n.monitorForCall(p, to)
		return p.call(ctx, to, "", ref, func() error {
			return n.sendPIDRequest(p, pe, to, ref, req)
		})
	}
	ref := p.Monitor(to)
	return p.call(ctx, to, "", ref, func() error {
		return p.Send(to, Request{From: p.pid, Ref: ref, Body: req})
	})
}

// CallNamed is [Process.Call] to the process registered as name on node
// (see [Node.Register]), with no lookup round trip: the request goes to the
// name and the target's node resolves it. A name not registered there ends
// the call with a [*ExitError] of reason [NoProc]. Owner only, like Call.
func (p *Process) CallNamed(ctx context.Context, node, name string, req any) (any, error) {
	n := p.node
	if node != n.self {
		nn, err := parseName(node)
		if err != nil {
			return nil, fmt.Errorf("call %s on %s: %w", name, node, err)
		}
		node = nn.String()
	}
	if node == n.self {
		to, ok := n.Whereis(name)
		if !ok {
			return nil, &ExitError{PID: PID{Node: node}, Reason: NoProc}
		}
		return p.Call(ctx, to, req)
	}
	ref, target := n.monitorName(p, node)
	return p.call(ctx, target, name, ref, func() error {
		return n.sendNamedRequest(p, target, name, ref, req)
	})
}

// call waits for the reply to the request send sends, under the monitor
// ref on target (named: a remote name, and target stands for its node).
func (p *Process) call(ctx context.Context, target PID, name string, ref Ref, send func() error) (any, error) {
	n := p.node
	if !n.svc.aliases.add(ref.ID, p) {
		p.endMonitor(ref, target, name)
		return nil, ErrExited
	}
	if err := send(); err != nil {
		n.svc.aliases.remove(ref.ID)
		p.endMonitor(ref, target, name)
		return nil, fmt.Errorf("call %v: %w", target, err)
	}
	var m any
	var err error
	for {
		// Any reply matches: one of an earlier call's (invariant 1) is
		// dropped here rather than left on the save list.
		m, err = p.mb.ReceiveMatch(ctx, func(m any) bool {
			switch m := m.(type) {
			case *callReply:
				return true
			case Down:
				return m.Ref == ref
			}
			return false
		})
		r, ok := m.(*callReply)
		if !ok || r.ref == ref {
			break
		}
		r.free()
	}
	n.svc.aliases.remove(ref.ID)
	if err != nil {
		p.endMonitor(ref, target, name)
		if err = p.receiveErr(err); err == ErrExited {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("call %v: %w", target, ctx.Err())
		}
		return nil, fmt.Errorf("call %v: %w", target, err)
	}
	switch m := m.(type) {
	case *callReply:
		released, value, enc := m.released, m.value, m.enc
		err = m.err // a small remote reply this node could not decode
		m.free()
		if released {
			p.dropWatching(ref)
		} else {
			p.endMonitor(ref, target, name)
		}
		if enc != nil {
			value, err = n.decoder.Decode(enc)
		}
		if err != nil {
			n.undecodable(err)
			return nil, fmt.Errorf("call %v: reply: %w", target, err)
		}
		return value, nil
	default:
		d := m.(Down)
		return nil, &ExitError{PID: d.PID, Reason: d.Reason}
	}
}

// endMonitor ends a call's monitor and takes its Down out of the mailbox if
// one was queued first (invariant 3).
func (p *Process) endMonitor(ref Ref, target PID, name string) {
	if name == "" {
		if p.demonitor(ref) {
			return
		}
	} else if p.dropWatching(ref) {
		p.node.demonitorName(p, target.Node, name, ref)
		return
	}
	if p.mb.Closed() {
		return
	}
	_, _ = p.mb.ReceiveMatch(context.Background(), func(m any) bool {
		d, ok := m.(Down)
		return ok && d.Ref == ref
	})
}

// dropWatching removes this process's record of the monitor ref, without
// telling the target; false if it was gone already (its Down is queued).
func (p *Process) dropWatching(ref Ref) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rel == nil {
		return false
	}
	if _, ok := p.rel.watching[ref]; !ok {
		return false
	}
	delete(p.rel.watching, ref)
	return true
}

// demonitor is Demonitor that reports whether the monitor was still active
// (false: its Down is queued already, or it never existed).
func (p *Process) demonitor(ref Ref) bool {
	p.mu.Lock()
	target, ok := p.rel.watchingRef(ref)
	if ok {
		delete(p.rel.watching, ref)
	}
	p.mu.Unlock()
	if !ok {
		return false
	}
	n := p.node
	if target.Node != n.self {
		if pe := n.peerIfUp(target.Node); pe != nil {
			sendDemonitor(pe, p.pid, target, ref)
		}
	} else if t := n.local(target); t != nil {
		t.removeMonitor(ref)
	}
	return true
}

// Reply answers req, the [Request] a caller sent with [Process.Call]. The
// reply reaches the caller only while its call still waits; afterwards it is
// dropped. Replying to a caller that has gone is not an error. Any process
// may reply (a server may hand the request to a worker). Safe from any
// goroutine of the process.
func (p *Process) Reply(req Request, v any) error {
	n := p.node
	released := p.releaseCallMonitor(req)
	if req.From.Node == n.self {
		if req.From.Incarnation == n.incarnation && req.Ref.Node == n.self && req.Ref.Incarnation == n.incarnation {
			n.svc.aliases.deliver(req.Ref.ID, req.From.ID, newCallReply(req.Ref, v, released))
		}
		return nil
	}
	if req.From.Node == "" {
		return fmt.Errorf("reply to %v: %w", req.From, ErrBadPID)
	}
	return n.sendReply(p, req, v, released)
}

// releaseCallMonitor removes the monitor the caller of req holds on p, if
// it holds one: the reply ends the call (invariant 2).
func (p *Process) releaseCallMonitor(req Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rel == nil {
		return false
	}
	if w, ok := p.rel.monitors[req.Ref]; ok && w == req.From {
		delete(p.rel.monitors, req.Ref)
		return true
	}
	return false
}

// Call is [Process.Call] from outside any process (an HTTP handler, a
// test): it runs the call as a short-lived process of this node. Safe from
// any goroutine, and many at once.
func (n *Node) Call(ctx context.Context, to PID, req any) (any, error) {
	p, err := n.transient()
	if err != nil {
		return nil, err
	}
	defer p.die(Normal)
	return p.Call(ctx, to, req)
}

// CallNamed is [Process.CallNamed] from outside any process. Safe from any
// goroutine.
func (n *Node) CallNamed(ctx context.Context, node, name string, req any) (any, error) {
	p, err := n.transient()
	if err != nil {
		return nil, err
	}
	defer p.die(Normal)
	return p.CallNamed(ctx, node, name, req)
}

// transient makes a process that runs on the calling goroutine; the caller
// ends it with die.
func (n *Node) transient() (*Process, error) {
	if n.stopped.Load() {
		return nil, ErrStopped
	}
	p := n.newProcess()
	n.procs.add(p)
	if n.stopped.Load() {
		p.die(Shutdown)
	}
	return p, nil
}

// dropStale reports whether m is a reply that must not reach the user: a
// receive outside Call only ever meets late replies (invariant 1).
func dropStale(m any) bool {
	_, ok := m.(*callReply)
	return ok
}

// aliasTable maps the reference of each waiting call to its caller. Sharded
// like procTable; a shard's lock is held while a reply is pushed
// (invariant 1), which never blocks.
type aliasTable struct {
	shards [tableShards]aliasShard
}

type aliasShard struct {
	mu sync.Mutex
	m  map[uint64]*Process // guarded by mu: ref ID → waiting caller
	_  [48]byte
}

func (t *aliasTable) shard(id uint64) *aliasShard { return &t.shards[id&(tableShards-1)] }

// add records the alias; false if p has exited (it will never receive).
func (t *aliasTable) add(ref uint64, p *Process) bool {
	if p.mb.Closed() {
		return false
	}
	s := t.shard(ref)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[uint64]*Process)
	}
	s.m[ref] = p
	s.mu.Unlock()
	return true
}

func (t *aliasTable) remove(ref uint64) {
	s := t.shard(ref)
	s.mu.Lock()
	delete(s.m, ref)
	s.mu.Unlock()
}

// deliver pushes r to the caller waiting under ref, if it still waits and
// is the process callerID; reports whether it did.
func (t *aliasTable) deliver(ref, callerID uint64, r *callReply) bool {
	s := t.shard(ref)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.m[ref]
	if p == nil || p.pid.ID != callerID {
		return false
	}
	return p.mb.Push(r)
}

// deliverRef pushes r to the caller waiting under ref, if it still waits.
func (t *aliasTable) deliverRef(ref uint64, r *callReply) bool {
	s := t.shard(ref)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.m[ref]
	if p == nil {
		return false
	}
	return p.mb.Push(r)
}

// waiting reports whether a call waits under ref (without holding the lock
// across anything: a hint to skip a decode).
func (t *aliasTable) waiting(ref uint64) bool {
	s := t.shard(ref)
	s.mu.Lock()
	_, ok := s.m[ref]
	s.mu.Unlock()
	return ok
}
