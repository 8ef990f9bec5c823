package node

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/mailbox"
)

// Process is a running process as its own code sees it. Its methods are
// meant for the process's own goroutine (the function the process runs);
// Self is safe from any goroutine.
//
// Locking: p.mu guards the link and monitor sets and the dead flag. A
// goroutine holds at most one process's mu at a time, except linkLocal, which
// takes two in PID.ID order. No I/O and no mailbox wait happens under mu.
type Process struct {
	node *Node
	pid  PID
	// mb is held in the process, not pointed to: a spawn allocates one
	// object for both (288 bytes, a malloc size class, against 160 and 144
	// apart; TestProcessSize). Its inline reader is the process itself, so
	// neither outlives the other's last reference anyway.
	mb mailbox.Mailbox
	// task is what the process runs: set before its goroutine starts;
	// main takes fn, runActor takes args (def stays, for crash reports).
	task
	// lastDst is the last local send target (see Send). Atomic: Send is
	// safe from any goroutine; a stale value is only a cache miss.
	lastDst atomic.Pointer[Process]
	// remote caches the last peer sent to and an encoding buffer (see
	// Send); nil until the first remote send.
	remote atomic.Pointer[remoteSender]
	// waitOn is the link the process's last request went out on: its next
	// wait may read it (replywait.go). Set by any goroutine that sends for
	// the process, read by its own.
	waitOn atomic.Pointer[peerHandle]
	// inlineConn is the link the process reads inline now (WaitInline),
	// for a waker's KickInline; nil while it does not. Set by its own
	// goroutine, read by wakers.
	inlineConn atomic.Pointer[loop.Conn]

	// trap sits beside the bools, in what would be padding after them:
	// the struct stays at 288 bytes with its mailbox, a malloc size class
	// (TestProcessSize).
	mu    sync.Mutex
	trap  atomic.Bool // trapping exits; set by the owner, read by signal senders
	dead  bool        // guarded by mu; set once, by die
	named bool        // guarded by mu; the registry asked about it (see markNamed)
	// grouped: guarded by mu; the groups asked about it (see markGrouped)
	grouped bool
	rel     *relations // guarded by mu; nil until the first link or monitor
	// spawner is the count of the peer node that spawned the process, in
	// which the process holds one (peerlimits.go, spawnCount); nil for
	// none. Set before the process is shared, read by die.
	spawner *spawnCount
}

// task is what a process runs: fn; for a defined actor, runActor, which
// calls def with args. Held in the process itself rather than in a
// closure, which would be one more allocation a spawn.
type task struct {
	fn   func(*Process) error
	def  *actorDef // the defined actor, nil for none
	args []any     // def's arguments
}

// actorTask is the task of running def with args.
func actorTask(def *actorDef, args []any) task {
	return task{fn: runActor, def: def, args: args}
}

// runActor is a defined actor's process function: a function, not a
// closure, so that it costs no allocation. On the process's goroutine.
func runActor(p *Process) error {
	args := p.args
	p.args = nil
	return p.def.fn(p, args)
}

// relations are a process's links and monitors, allocated on first use so
// that a process that has none stays small (an idle process must fit in
// 3 KiB with its goroutine).
type relations struct {
	// links are the linked processes; true for a link a peer's process
	// asked for (Link frame, linked spawn request), which counts against
	// that peer's bound (peerlimits.go), false for one made here.
	links    map[PID]bool
	monitors map[Ref]PID // monitors held on this process: ref → watcher
	watching map[Ref]PID // monitors this process holds: ref → target
}

// watchingRef returns the target of the monitor ref this process holds.
// Safe on a nil r.
func (r *relations) watchingRef(ref Ref) (PID, bool) {
	if r == nil {
		return PID{}, false
	}
	pid, ok := r.watching[ref]
	return pid, ok
}

// relLocked returns p's relations, allocating them. p.mu must be held.
func (p *Process) relLocked() *relations {
	if p.rel == nil {
		p.rel = new(relations)
	}
	return p.rel
}

// Self returns the process's PID. Safe from any goroutine.
func (p *Process) Self() PID { return p.pid }

// Node returns the node the process runs on.
func (p *Process) Node() *Node { return p.node }

// start runs a prepared process's goroutine.
func (p *Process) start() { go p.main() }

// main is the body of every spawned process goroutine. Taking the function
// from p.fn rather than as an argument keeps the goroutine's start closure
// at one word. main and run handle fn alone, not the whole task: an idle
// process waits below their frames, and the runtime sizes new goroutines'
// stacks from the average use (the task passed by value through run cost
// about 300 bytes an idle process in bench's BenchmarkIdleProcess).
func (p *Process) main() {
	defer p.node.procDone()
	fn := p.fn
	p.fn = nil
	reason := exitReason(run(p, fn))
	if p.die(reason) {
		p.node.crashReport(p, reason) // crash.go
	}
}

// run calls fn, turning a panic into a *PanicError.
func run(p *Process, fn func(*Process) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn(p)
}

// exitReason maps what a process function returned to its exit reason.
func exitReason(err error) any {
	if err == nil {
		return Normal
	}
	return err
}

// Receive returns the next message, waiting until one arrives or ctx ends.
// It returns [ErrExited] once the process has been killed or its node
// stopped.
func (p *Process) Receive(ctx context.Context) (any, error) {
	for {
		m, err := p.mb.Receive(ctx)
		if err != nil {
			return nil, p.receiveErr(err)
		}
		if !dropStale(m) { // a late call reply (call.go)
			return m, nil
		}
	}
}

// ReceiveMatch returns the first queued message for which match returns
// true, waiting for one until ctx ends. Messages it passes over stay queued
// in their order for later receives (selective receive).
func (p *Process) ReceiveMatch(ctx context.Context, match func(any) bool) (any, error) {
	if match == nil {
		return p.Receive(ctx)
	}
	for {
		m, err := p.mb.ReceiveMatch(ctx, func(m any) bool { return dropStale(m) || match(m) })
		if err != nil {
			return nil, p.receiveErr(err)
		}
		if !dropStale(m) { // a late call reply (call.go)
			return m, nil
		}
	}
}

// receiveErr maps a mailbox error to the runtime's. It allocates nothing:
// a killed process unwinds through here, and every goroutine's stack use
// feeds the runtime's choice of initial stack size for new ones.
func (p *Process) receiveErr(err error) error {
	if errors.Is(err, mailbox.ErrClosed) {
		return ErrExited
	}
	return err
}

// Send sends msg to the process to, on this node or another. Local sends
// hand over the value itself; remote sends encode it, and a value that
// cannot be encoded is an error here. Sending to a process that has exited is
// not an error.
//
// A remote send may wait: to a node this node is not connected to, Send
// dials it first (bounded by the handshake timeout; [ErrNotConnected] if that
// fails), and while the link's send queue is full it waits for the peer to
// take more (backpressure: a slow peer slows the processes that send to it,
// and nothing else).
func (p *Process) Send(to PID, msg any) error {
	n := p.node
	if to.Node == n.self && to.Incarnation == n.incarnation {
		// Local: the last target is cached, so a stream to one process
		// skips the table. A cached process that has died refuses the push
		// (its mailbox is closed): what a table miss would have given.
		t := p.lastDst.Load()
		if t == nil || t.pid.ID != to.ID {
			t = n.procs.get(to.ID)
			p.lastDst.Store(t)
		}
		if t != nil {
			t.mb.Push(msg)
		}
		return nil
	}
	if to.Node == n.self || to.Node == "" {
		return n.send(p.pid.ID, to, msg) // an earlier incarnation, or a bad PID
	}
	// Remote: the last peer is cached, and the message is encoded into a
	// buffer the process keeps, so a stream to one node skips the peer
	// table and the buffer pool. Goroutines of one process may send at
	// once: the peer handle is an atomic, and the buffer goes to whoever
	// takes it first; the others use a pooled one.
	rs := p.remote.Load()
	if rs == nil {
		rs = new(remoteSender)
		if !p.remote.CompareAndSwap(nil, rs) {
			rs = p.remote.Load()
		}
	}
	var pe *peer
	if h := rs.peer.Load(); h != nil {
		pe = h.p.Load()
	}
	if pe == nil || pe.name != to.Node || pe.incarnation != to.Incarnation || !pe.isUp() {
		// A PID of another incarnation than the cached connection's may
		// belong to a newer connection already admitted: ask the table.
		var err error
		if pe, err = n.peerFor(to.Node); err != nil {
			rs.peer.Store(nil)
			return fmt.Errorf("send to %v: %w", to, err)
		}
		rs.peer.Store(pe.handle)
	}
	if lc, ok := pe.conn.(*loop.Conn); ok && pe.urgent(p.pid.ID) {
		if bound := directBound(msg); bound >= 0 && n.directFits(bound) {
			if err := n.sendDirect(pe, lc, bound, p.pid.ID, to, msg); err != nil {
				return err
			}
			p.parkNextOn(pe)
			return nil
		}
	}
	if rs.busy.CompareAndSwap(false, true) {
		err := n.sendRemote(pe, &rs.buf, p.pid.ID, to, msg)
		rs.busy.Store(false)
		if err != nil {
			return err
		}
	} else if err := n.send(p.pid.ID, to, msg); err != nil {
		return err
	}
	// A process that sends across the network and then waits is most
	// often waiting for the answer, which the peer's event loop delivers:
	// its thread readies this process and then runs it. Spinning first
	// (the mailbox's yields, or a poll) only takes a core from that thread
	// and from the far side's; and the reply comes on pe's link, which
	// the process may then read itself (replywait.go). docs/latency.md
	// has the measurements.
	p.parkNextOn(pe)
	return nil
}

// remoteSender is what a process keeps between its remote sends.
// The peer is held through its handle: a process that sent once and then
// idles must not keep a dead connection (its buffers, TLS state,
// reassembler) alive.
type remoteSender struct {
	peer atomic.Pointer[peerHandle] // the last peer sent to; checked up before each use
	busy atomic.Bool                // buf is in use by a send
	buf  []byte                     // encoding scratch, at most maxKeptScratch; owned while busy
}

// Spawn starts the defined actor on node with args and returns its PID. It
// fails with [ErrUnknownActor] when the node has no such actor.
func (p *Process) Spawn(node, actor string, args ...any) (PID, error) {
	return p.node.spawn(p, node, actor, args, false)
}

// SpawnLink is Spawn that links the new process to this one before the actor
// runs, so that even an immediate crash reaches this process.
func (p *Process) SpawnLink(node, actor string, args ...any) (PID, error) {
	return p.node.spawn(p, node, actor, args, true)
}

// SpawnLinkFunc starts fn as a new process of this node, linked to this
// process before fn runs.
func (p *Process) SpawnLinkFunc(fn func(p *Process) error) (PID, error) {
	return p.node.spawnLocal(task{fn: fn}, p)
}

// TrapExit sets whether exit signals from linked processes (and from
// [Process.Exit]) arrive as [Exit] messages instead of killing this process.
// Reason [Kill] sent with Exit kills regardless.
func (p *Process) TrapExit(on bool) { p.trap.Store(on) }

// Link links this process with pid: when either exits abnormally, the other
// receives an exit signal. Linking to a process that does not exist sends
// this process an exit signal with reason [NoProc].
func (p *Process) Link(pid PID) error {
	if pid == p.pid {
		return nil
	}
	if pid.Node != p.node.self {
		if pid.Node == "" {
			return fmt.Errorf("link %v: %w", pid, ErrBadPID)
		}
		return p.node.sendLink(p, pid)
	}
	t := p.node.local(pid)
	if t == nil {
		if !p.isAlive() {
			return ErrExited
		}
		p.node.exitSignal(pid, p.pid, NoProc, false)
		return nil
	}
	switch linkLocal(p, t) {
	case linkSelfDead:
		return ErrExited
	case linkOtherDead:
		p.node.exitSignal(pid, p.pid, NoProc, false)
	}
	return nil
}

type linkResult int

const (
	linked linkResult = iota
	linkSelfDead
	linkOtherDead
)

// linkLocal records the link in both processes atomically with respect to
// their deaths: it holds both locks, taken in ID order.
func linkLocal(a, b *Process) linkResult {
	first, second := a, b
	if b.pid.ID < a.pid.ID {
		first, second = b, a
	}
	first.mu.Lock()
	second.mu.Lock()
	defer first.mu.Unlock()
	defer second.mu.Unlock()
	if a.dead {
		return linkSelfDead
	}
	if b.dead {
		return linkOtherDead
	}
	a.addLinkLocked(b.pid)
	b.addLinkLocked(a.pid)
	return linked
}

func (p *Process) addLinkLocked(pid PID) { p.addLinkByLocked(pid, false) }

// addLinkByLocked records a link to pid, one that pid's peer asked for if
// byPeer (it stays so if it was). p.mu must be held, or p not shared yet.
func (p *Process) addLinkByLocked(pid PID, byPeer bool) {
	r := p.relLocked()
	if r.links == nil {
		r.links = make(map[PID]bool, 1)
	}
	r.links[pid] = r.links[pid] || byPeer
}

// addLink records a link to pid on p alone; false if p is dead.
func (p *Process) addLink(pid PID) bool { return p.addLinkBy(pid, false) }

// addLinkBy is addLink for a link pid's peer asked for if byPeer.
func (p *Process) addLinkBy(pid PID, byPeer bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return false
	}
	p.addLinkByLocked(pid, byPeer)
	return true
}

// Unlink removes the link between this process and pid, if any.
func (p *Process) Unlink(pid PID) error {
	p.mu.Lock()
	if p.rel != nil {
		delete(p.rel.links, pid)
	}
	p.mu.Unlock()
	if pid.Node != p.node.self {
		if pe := p.node.peerIfUp(pid.Node); pe != nil {
			sendUnlink(pe, p.pid, pid)
		}
		return nil
	}
	if t := p.node.local(pid); t != nil {
		t.mu.Lock()
		if t.rel != nil {
			delete(t.rel.links, p.pid)
		}
		t.mu.Unlock()
	}
	return nil
}

// Monitor starts monitoring pid and returns the monitor's reference. When
// pid exits, this process receives a [Down] with that reference; if pid does
// not exist, the Down (reason [NoProc]) comes at once.
func (p *Process) Monitor(pid PID) Ref {
	ref := p.node.makeRef()
	if pid.Node != p.node.self && pid.Node != "" {
		p.node.sendMonitor(p, ref, pid)
		return ref
	}
	if !p.addWatching(ref, pid) {
		return ref // this process is dead: nothing will ever be delivered
	}
	if t := p.node.local(pid); t != nil && t.addMonitor(ref, p.pid) {
		return ref
	}
	p.mu.Lock()
	if p.rel != nil {
		delete(p.rel.watching, ref)
	}
	p.mu.Unlock()
	p.mb.Push(Down{Ref: ref, PID: pid, Reason: NoProc})
	return ref
}

func (p *Process) addWatching(ref Ref, target PID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return false
	}
	r := p.relLocked()
	if r.watching == nil {
		r.watching = make(map[Ref]PID, 1)
	}
	r.watching[ref] = target
	return true
}

// addMonitor records that watcher monitors p under ref; false if p is dead.
func (p *Process) addMonitor(ref Ref, watcher PID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return false
	}
	r := p.relLocked()
	if r.monitors == nil {
		r.monitors = make(map[Ref]PID, 1)
	}
	r.monitors[ref] = watcher
	return true
}

// Demonitor removes the monitor named by ref. A Down already queued for it
// stays queued.
func (p *Process) Demonitor(ref Ref) {
	p.mu.Lock()
	var target PID
	ok := false
	if p.rel != nil {
		target, ok = p.rel.watching[ref]
		delete(p.rel.watching, ref)
	}
	p.mu.Unlock()
	if !ok {
		return
	}
	if target.Node != p.node.self {
		if pe := p.node.peerIfUp(target.Node); pe != nil {
			sendDemonitor(pe, p.pid, target, ref)
		}
		return
	}
	if t := p.node.local(target); t != nil {
		t.removeMonitor(ref)
	}
}

// removeMonitor forgets the monitor ref held on p.
func (p *Process) removeMonitor(ref Ref) {
	p.mu.Lock()
	if p.rel != nil {
		delete(p.rel.monitors, ref)
	}
	p.mu.Unlock()
}

// Exit sends an exit signal with reason to pid. If pid traps exits it
// receives an [Exit] message; otherwise it dies with reason, unless reason
// is [Normal]. Reason [Kill] cannot be trapped: the target dies with reason
// [Killed]. Exit to this process's own PID applies to itself.
func (p *Process) Exit(pid PID, reason any) error {
	if pid.Node != p.node.self {
		if pid.Node == "" {
			return fmt.Errorf("exit %v: %w", pid, ErrBadPID)
		}
		pe, err := p.node.peerFor(pid.Node)
		if err != nil {
			return fmt.Errorf("exit %v: %w", pid, err)
		}
		if pe.incarnation == pid.Incarnation {
			p.node.sendExit(p.pid, pid, reason, false)
		}
		return nil
	}
	p.node.exitSignal(p.pid, pid, reason, false)
	return nil
}

// MonitorNode makes this process receive [NodeDown] once when node
// disconnects; at once if it is not connected now. Each call is one monitor.
func (p *Process) MonitorNode(node string) error {
	nn, err := parseName(node)
	if err != nil {
		return err
	}
	node = nn.String()
	n := p.node
	if node == n.self {
		return nil // this node's own end is the process's end too
	}
	n.peersMu.Lock()
	n.nodeMonMu.Lock()
	pe := n.peers[node]
	up := pe != nil && pe.isUp()
	if up {
		n.nodeMons[node] = append(n.nodeMons[node], p.pid)
	}
	n.nodeMonMu.Unlock()
	n.peersMu.Unlock()
	if !up {
		p.mb.Push(NodeDown{Node: node, Reason: NoConnection})
	}
	return nil
}

// markNamed reports whether p is alive and, if so, records that the
// registry may hold a name for it, so that its death is reported to the
// registry. The registry asks (Host.Alive) before it binds a name to a
// local process; both that question and die's read of the mark happen under
// p.mu, so either the name is bound before p dies and ProcessExited drops
// it, or the registry hears that p is dead. Processes that never had a name
// skip the registry's lock when they exit.
func (p *Process) markNamed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return false
	}
	p.named = true
	return true
}

// markGrouped is markNamed for process groups (groups.go).
func (p *Process) markGrouped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return false
	}
	p.grouped = true
	return true
}

// isAlive reports whether p has not died yet.
func (p *Process) isAlive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.dead
}

// die ends p with reason, once: it leaves the table, its mailbox closes (a
// blocked Receive returns ErrExited), monitors fire and linked processes get
// exit signals. Later calls do nothing and return false.
func (p *Process) die(reason any) bool {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return false
	}
	p.dead = true
	rel, named, grouped := p.rel, p.named, p.grouped
	p.rel = nil
	p.mu.Unlock()

	n := p.node
	p.mb.Close()
	// Its names (global, local) and groups go before it leaves the table:
	// whoever sees it gone from the table sees them gone too.
	if named {
		n.global.ProcessExited(p.pid)
	}
	if grouped {
		n.groups.ProcessExited(p.pid)
	}
	n.svc.processExited(p)
	n.procs.remove(p.pid.ID)
	if p.spawner != nil {
		n.releaseSpawn(p.spawner)
	}
	if rel == nil {
		return true
	}
	for ref, target := range rel.watching {
		if target.Node != n.self {
			if pe := n.peerIfUp(target.Node); pe != nil {
				sendDemonitor(pe, p.pid, target, ref)
			}
		} else if t := n.local(target); t != nil {
			t.removeMonitor(ref)
		}
	}
	for ref, watcher := range rel.monitors {
		if watcher.Node != n.self {
			n.sendDown(ref, watcher, p.pid, reason)
		} else if w := n.local(watcher); w != nil {
			w.down(ref, p.pid, reason)
		}
	}
	for pid := range rel.links {
		n.exitSignal(p.pid, pid, reason, true)
	}
	return true
}
