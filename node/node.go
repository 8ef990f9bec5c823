package node

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
	"github.com/meshrt/mesh/internal/groups"
	"github.com/meshrt/mesh/internal/handshake"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/mailbox"
)

// ActorFunc is the body of a defined actor: it runs as a process, with the
// arguments given to Spawn. Returning nil ends the process normally; returning
// an error ends it with that error as the exit reason.
type ActorFunc func(p *Process, args []any) error

// Node is a running Mesh node. Every method is safe to call from any
// goroutine.
type Node struct {
	name        nodeName
	self        string // canonical name, as peers know it
	incarnation uint64
	opts        options
	log         *slog.Logger

	nextID  atomic.Uint64 // last process serial handed out
	nextRef atomic.Uint64 // last reference serial handed out
	procs   procTable

	actorsMu sync.RWMutex
	actors   map[string]*actorDef // guarded by actorsMu
	// actorsGen counts the changes of actors: added to under actorsMu
	// after each, read without it by a link's reader to check the actor it
	// kept from its last spawn request (rx.actorFor).
	actorsGen atomic.Uint64

	// Lifecycle. running counts process goroutines started by the node;
	// once stopped is set, the last one to finish signals idle. bg counts
	// the runtime's own goroutines (peer cleanup, mesh connects); life ends
	// when Stop begins.
	stopped  atomic.Bool
	running  atomic.Int64
	idle     chan struct{} // capacity 1
	bg       sync.WaitGroup
	life     context.Context
	endLife  context.CancelFunc
	stopOnce sync.Once
	ready    chan struct{} // closed when Start has built the node

	// Distribution (admit.go, membership.go, peer.go).
	cookie        string
	hs            handshake.Config
	engine        *loop.Engine // nil on an in-memory network (memnet.go)
	links         linker       // where links come from (link.go)
	limits        codec.Limits
	decoder       mailbox.Decoder // decodes received messages on the receiving process
	decodeWarned  atomic.Bool     // an undecodable message was logged
	fragmentAbove int
	metrics       *metrics
	global        *global.Replica
	groups        *groups.Replica // process groups (groups.go)

	peersMu sync.Mutex
	peers   map[string]*peer     // guarded by peersMu; see membership.go invariant 1
	dialing map[string]*dialCall // guarded by peersMu
	// peerView is a read-only copy of peers for the send path, replaced
	// (under peersMu) whenever peers changes.
	peerView atomic.Pointer[map[string]*peer]
	// peersChanged is closed, and replaced, whenever peers changes
	// (guarded by peersMu; nil until someone waits, see awaitPeer).
	peersChanged chan struct{}

	dials *dialer // the dial worker (redial.go); set by Start

	nodeMonMu sync.Mutex
	nodeMons  map[string][]PID // guarded by nodeMonMu: MonitorNode watchers by node
	// allNodeMons are the MonitorNodes watchers (events.go); guarded by
	// nodeMonMu. Exited ones are dropped at the next event.
	allNodeMons map[PID]struct{}

	svc services // calls, local names, timers, crash reports (call.go)

	nextReq atomic.Uint64
	// spawned counts, by peer node name, the processes that peer spawned
	// here and that are alive (peerlimits.go, spawnCount).
	spawnedMu sync.Mutex
	spawned   map[string]*spawnCount // guarded by spawnedMu

	starters starterPool // idle goroutines for the processes peers spawn (spawn_start.go)
}

// Start starts a node named name (name@host:port) whose peers must prove
// knowledge of cookie. A port of 0 binds a free port, and [Node.Self] then
// reports the port actually bound. An invalid option value fails with
// [ErrBadOption].
func Start(name, cookie string, opts ...Option) (*Node, error) {
	nn, err := parseName(name)
	if err != nil {
		return nil, err
	}
	if cookie == "" {
		return nil, fmt.Errorf("node: empty cookie")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		name:          nn,
		self:          nn.String(),
		incarnation:   newIncarnation(),
		opts:          o,
		log:           o.logger,
		actors:        make(map[string]*actorDef),
		idle:          make(chan struct{}, 1),
		cookie:        cookie,
		limits:        codec.DefaultLimits(),
		fragmentAbove: wire.DefaultFragmentSize,
		peers:         make(map[string]*peer),
		dialing:       make(map[string]*dialCall),
		nodeMons:      make(map[string][]PID),
		ready:         make(chan struct{}),
	}
	if o.maxMessage > 0 {
		n.limits.MaxMessage = o.maxMessage
	}
	n.decoder = mailbox.Decoder{
		Decode:     func(b []byte) (any, error) { return wire.Message{Term: b}.Decode(&n.limits) },
		DecodeSlab: n.decodeStreamed,
		Dropped:    n.undecodable,
		Release:    wire.ReleaseBuffer, // a reassembled message's buffer (pushLarge)
	}
	n.life, n.endLife = context.WithCancel(context.Background())
	if err := n.startNet(); err != nil {
		n.endLife()
		return nil, err
	}
	n.log = n.log.With("node", n.self)
	m, err := newMetrics(o.registerer, n)
	if err != nil {
		n.endLife()
		_ = n.links.close()
		return nil, err
	}
	n.metrics = m
	n.global = global.New(registryHost{n}, global.WithLogger(n.log), global.WithMaxNamesPerPeer(o.registryNames))
	n.groups = groups.New(groupsHost{n}, o.membership.maxPeerMembers)
	n.startMembership()
	n.bg.Add(1)
	go n.tickLoop()
	close(n.ready)
	return n, nil
}

// newIncarnation picks the random, non-zero number that tells this run of a
// node from earlier runs under the same name.
func newIncarnation() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// Self returns the node's name, name@host:port, with the port actually bound.
func (n *Node) Self() string { return n.self }

// Define makes actor spawnable by name on this node, locally and from other
// nodes, replacing an earlier definition; a nil fn removes it. The set of
// defined names is the node's allow-list for remote spawns: a spawn request
// read after Define returns sees its change. Define may be called at any
// time, from any goroutine.
func (n *Node) Define(actor string, fn ActorFunc) {
	n.actorsMu.Lock()
	if fn == nil {
		delete(n.actors, actor)
	} else {
		n.actors[actor] = &actorDef{name: actor, fn: fn}
	}
	n.actorsGen.Add(1) // before the unlock: a kept definition is stale from here on
	n.actorsMu.Unlock()
}

// actorDef is a defined actor: a process running it points to it (a
// redefinition makes a new one), and its name is the one string all of
// them share.
type actorDef struct {
	name string
	fn   ActorFunc
	// quickRuns is how many of the last runs of the actor's processes on
	// a starter, in a row, ran for less than the starters' quick bound,
	// capped at actorQuickRuns (rule 4a, spawn_start.go): a new def, as a
	// redefinition makes, starts with none. Written by the starters after
	// each run, read by takeOwn.
	quickRuns atomic.Int32
}

// actorQuickRuns is how many quick runs in a row make an actor quick
// (rule 4a, spawn_start.go): two, so that an actor whose runs alternate
// between quick and blocking (a cache hit, then a miss that waits on a
// database) is not predicted quick before each of its blocking runs, at
// the cost of one more spawn with the duty home after a slow run.
const actorQuickRuns = 2

// ran records a run of a process of d on a starter: quick when it ran for
// less than the starters' quick bound. A run that was not resets the
// streak; one that was adds to it with one compare-and-swap, and adds
// nothing when that loses to a concurrent run's record (two starters
// running d at once), which can only make d count as quick later. Nothing
// is written once the streak is full and the runs stay quick. On the
// starter's goroutine.
func (d *actorDef) ran(quick bool) {
	k := d.quickRuns.Load()
	switch {
	case !quick:
		if k != 0 {
			d.quickRuns.Store(0)
		}
	case k < actorQuickRuns:
		d.quickRuns.CompareAndSwap(k, k+1)
	}
}

// quick reports whether d's last actorQuickRuns runs on starters were
// quick (rule 4a). Any goroutine.
func (d *actorDef) quick() bool { return d.quickRuns.Load() >= actorQuickRuns }

// actor returns the actor defined as name, nil for none.
func (n *Node) actor(name string) *actorDef {
	n.actorsMu.RLock()
	def := n.actors[name]
	n.actorsMu.RUnlock()
	return def
}

// actorNamed is actor for a name in bytes (a spawn request's, aliasing its
// frame), looked up without making a string of it, with the count of
// definitions (n.actorsGen) it was found at.
func (n *Node) actorNamed(name []byte) (*actorDef, uint64) {
	n.actorsMu.RLock()
	def := n.actors[string(name)]
	gen := n.actorsGen.Load() // changed only under the write lock
	n.actorsMu.RUnlock()
	return def, gen
}

// SpawnFunc starts fn as a new process of this node and returns its PID. It
// returns the zero PID if the node has stopped.
func (n *Node) SpawnFunc(fn func(p *Process) error) PID {
	p, err := n.spawnLocal(task{fn: fn}, nil)
	if err != nil {
		return PID{}
	}
	return p
}

// Spawn starts the defined actor on node (this node's name or another's)
// with args, from outside any process. It fails with [ErrUnknownActor] when
// the target node has no such actor.
func (n *Node) Spawn(node, actor string, args ...any) (PID, error) {
	return n.spawn(nil, node, actor, args, false)
}

// spawn starts actor on node for parent (nil outside a process), linking
// the two first when link is set.
func (n *Node) spawn(parent *Process, node, actor string, args []any, link bool) (PID, error) {
	if node != n.self {
		if view := n.peerView.Load(); view != nil {
			if pe := (*view)[node]; pe != nil {
				// A connected node's name is already in its canonical
				// form. Handed on: a second look-up by name was about
				// 180 instructions a spawn.
				return n.requestSpawn(parent, pe, node, actor, args, link)
			}
		}
		nn, err := parseName(node)
		if err != nil {
			return PID{}, err
		}
		if node = nn.String(); node != n.self {
			return n.requestSpawn(parent, nil, node, actor, args, link)
		}
	}
	def := n.actor(actor)
	if def == nil {
		return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, ErrUnknownActor)
	}
	return n.spawnLocal(actorTask(def, args), linkTo(parent, link))
}

func linkTo(parent *Process, link bool) *Process {
	if link {
		return parent
	}
	return nil
}

// spawnLocal starts t as a process; when linkWith is set, the new process
// is linked to it before t runs, so even an immediate crash reaches it.
func (n *Node) spawnLocal(t task, linkWith *Process) (PID, error) {
	var link PID
	if linkWith != nil {
		link = linkWith.pid
	}
	p, err := n.prepareSpawn(t, link)
	if err != nil {
		return PID{}, err
	}
	if linkWith != nil && !linkWith.addLink(p.pid) {
		p.die(ErrExited.Error()) // the parent died meanwhile: so does the child
	}
	p.start()
	return p.pid, nil
}

// prepareSpawn makes a process for t, in the table and linked to link (a
// local or remote PID, or zero), without starting its goroutine (that is
// Process.start). Between the two, the caller may tell others of the new
// PID.
func (n *Node) prepareSpawn(t task, link PID) (*Process, error) {
	return n.prepareSpawnBy(t, link, nil)
}

// prepareSpawnBy is prepareSpawn for a process a peer asked for, charged in
// spawner by chargeSpawn (nil for none): its exit releases that count
// (peerlimits.go).
func (n *Node) prepareSpawnBy(t task, link PID, spawner *spawnCount) (*Process, error) {
	if n.stopped.Load() {
		return nil, ErrStopped
	}
	n.running.Add(1)
	p := n.newProcess()
	p.spawner = spawner
	if !link.IsZero() {
		p.addLinkByLocked(link, spawner != nil) // p is not shared yet: no lock needed
	}
	n.procs.add(p)
	if n.stopped.Load() {
		// Stop may have walked the table before the add: end the process
		// here so that Stop's wait is not left hanging on it.
		p.die(Shutdown)
	}
	p.task = t
	return p, nil
}

func (n *Node) newProcess() *Process {
	p := &Process{
		node: n,
		pid:  PID{Node: n.self, Incarnation: n.incarnation, ID: n.nextID.Add(1)},
	}
	// p.mb needs nothing more: the zero Mailbox is ready.
	p.mb.SetInlineReader((*inlineReader)(p))
	return p
}

// procDone records the end of a process goroutine.
func (n *Node) procDone() {
	if n.running.Add(-1) == 0 && n.stopped.Load() {
		select {
		case n.idle <- struct{}{}:
		default:
		}
	}
}

// Run runs fn as a process of this node on the calling goroutine, so that
// Self, links, monitors and MonitorNode work from a program's main. When ctx
// ends, the process is ended with reason [Shutdown] (its Receive calls return
// [ErrExited]). Run returns what fn returned; a panic in fn is returned as a
// *[PanicError].
func (n *Node) Run(ctx context.Context, fn func(p *Process) error) error {
	if n.stopped.Load() {
		return ErrStopped
	}
	p := n.newProcess()
	n.procs.add(p)
	if n.stopped.Load() {
		p.die(Shutdown)
	}
	stop := context.AfterFunc(ctx, func() { p.die(Shutdown) })
	defer stop()
	err := run(p, fn)
	p.die(exitReason(err))
	return err
}

// Send sends msg to the process to, from outside any process. Sending to a
// process that has exited is not an error: the message is dropped, as
// Erlang does (monitor the process to learn that it is gone). Like
// [Process.Send], a remote send may dial and may wait on the link's
// backpressure.
func (n *Node) Send(to PID, msg any) error {
	return n.send(0, to, msg)
}

// send delivers msg to to; from is the sending process's serial, or 0.
func (n *Node) send(from uint64, to PID, msg any) error {
	if to.Node != n.self {
		if to.Node == "" {
			return fmt.Errorf("send to %v: %w", to, ErrBadPID)
		}
		pe, err := n.peerFor(to.Node)
		if err != nil {
			return fmt.Errorf("send to %v: %w", to, err)
		}
		bp := getBuf()
		err = n.sendRemote(pe, bp, from, to, msg)
		putBuf(bp, *bp)
		return err
	}
	if to.Incarnation != n.incarnation {
		return nil // a process of an earlier run of this node: long gone
	}
	if p := n.procs.get(to.ID); p != nil {
		p.mb.Push(msg)
	}
	return nil
}

// exitSignal delivers an exit signal from → to. A link signal is honoured
// only while the link exists (and removes it); an [Exit] call's signal
// always applies.
func (n *Node) exitSignal(from, to PID, reason any, viaLink bool) {
	if to.Node != n.self {
		n.sendExit(from, to, reason, viaLink)
		return
	}
	t := n.local(to)
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.dead {
		t.mu.Unlock()
		return
	}
	if viaLink {
		if t.rel == nil {
			t.mu.Unlock()
			return
		}
		if _, ok := t.rel.links[from]; !ok {
			t.mu.Unlock()
			return
		}
		delete(t.rel.links, from)
	}
	t.mu.Unlock()

	if a, ok := reason.(codec.Atom); ok && a == Kill {
		if !viaLink {
			t.die(Killed)
			return
		}
		reason = Killed // a process that exited with reason kill: links see killed
	}
	switch {
	case t.trap.Load():
		t.mb.Push(Exit{From: from, Reason: reason})
	case isNormal(reason) && from != to:
		// a normal exit signal does not kill
	default:
		t.die(reason)
	}
}

// local returns the live-table entry for a PID of this node incarnation.
func (n *Node) local(pid PID) *Process {
	if pid.Node != n.self || pid.Incarnation != n.incarnation {
		return nil
	}
	return n.procs.get(pid.ID)
}

func (n *Node) makeRef() Ref {
	return Ref{Node: n.self, Incarnation: n.incarnation, ID: n.nextRef.Add(1)}
}

// Stop ends the node gracefully: every process ends with reason
// [Shutdown] (remote links and monitors hear of it), every connection is
// closed with a TLS close_notify (peers see NodeDown at once), the node's
// global names go with its processes, and Stop waits until every goroutine
// the node started has returned or ctx ends. It is safe to call more than
// once.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.peersMu.Lock()
		n.stopped.Store(true)
		n.peersMu.Unlock()
		n.starters.stop()
		n.endLife()
		for _, p := range n.procs.snapshot() {
			p.die(Shutdown)
		}
		// A graceful close per peer (loop.Conn.Shutdown): everything
		// queued before it (messages whose Send returned, the exit signals
		// of the deaths above) reaches a peer that keeps reading, within
		// ctx and at most a tick timeout; a peer that reads nothing is cut
		// then. Closing the engine after that flushes nothing more.
		sctx, cancel := context.WithTimeout(ctx, n.opts.tickTimeout)
		var drains sync.WaitGroup
		// A peer admitted or dialled but not attached yet is waited for:
		// its other side may already count it up, and must hear the
		// goodbye too rather than see a bare close.
		for _, pe := range n.tablePeers() {
			drains.Add(1)
			go func() {
				defer drains.Done()
				pe.closeWithGoodbye(sctx, Shutdown, ErrStopped)
			}()
		}
		drains.Wait()
		cancel()
		_ = n.links.close()
		n.metrics.unregister()
	})
	for n.running.Load() != 0 {
		select {
		case <-n.idle:
			// Stop may run on several goroutines at once (a process may
			// stop its own node): the last process signals idle once, so
			// pass the signal on to the next waiter.
			if n.running.Load() == 0 {
				select {
				case n.idle <- struct{}{}:
				default:
				}
			}
		case <-ctx.Done():
			return fmt.Errorf("node: stop: %d processes still running: %w", n.running.Load(), ctx.Err())
		}
	}
	done := make(chan struct{})
	go func() { n.bg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node: stop: runtime goroutines still running: %w", ctx.Err())
	}
}
