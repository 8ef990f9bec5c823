package global

// Invariants of the write side, all guarded by Registry.mu:
//   - own is this node's table: the entries whose process lives on this node,
//     at most one per name. Only this node changes it, and every change is
//     broadcast (an add or a remove op) in the order made, while mu is held,
//     so each peer sees the changes of own in order.
//   - mirrors[p] is an exact copy of node p's own table as of the last op
//     from p handled here: made by Merge, kept by p's add and remove ops,
//     deleted by NodeDown(p). Ops from p while there is no mirror are
//     ignored: the snapshot that follows already holds their effect.
//   - pending[name] is a registration made here for a process of another
//     node, sent to that node (its owner) as a request and not yet answered.
//     It is visible here (a caller reads its own writes) until the owner's add
//     or remove of that very entry arrives, or the owner goes down. Every
//     request is answered by an add or a remove of the entry.
//   - announced[p] is the highest version among the entries p stamped
//     itself (Origin p) that p has sent on this connection, in its snapshot
//     or its ops. p's Lamport clock only grows, so every registration p
//     makes later carries a higher version: an add from p, of its own
//     making, at or below announced[p] is a forgery (a peer claiming an
//     earlier registration than it could have made, to win conflicts) and
//     is refused and counted. Set by Merge, dropped by NodeDown.
//   - No mirror holds more than maxPerPeer names: a frame that would take a
//     mirror past it is refused whole (ErrLimit), and node cuts the link.
//   - hidden holds entries of other owners that this node asked to
//     unregister. They stay invisible here until the owner's remove arrives
//     or the owner goes down.
//   - The view maps each name to the winner (by Wins) among own, pending and
//     the not hidden mirror entries, and is brought up to date before mu is
//     released: a caller that returns from a write reads what it wrote.
//   - An own entry never stays beside a better, not hidden mirror entry for
//     the same name: it is dropped, broadcast as removed, and its process is
//     sent a Conflict. That is the only place a Conflict is sent, so the
//     losing process is told once, by its own node.

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/meshrt/mesh/codec"
)

// Errors returned by the registry, each testable with errors.Is.
var (
	// ErrNameTaken: the name is registered somewhere this node knows of.
	ErrNameTaken = errors.New("global: name taken")
	// ErrNotRegistered: Unregister of a name this node does not know.
	ErrNotRegistered = errors.New("global: name not registered")
	// ErrInvalidName: the name is empty or longer than the limit.
	ErrInvalidName = errors.New("global: invalid name")
	// ErrInvalidPID: the zero PID.
	ErrInvalidPID = errors.New("global: invalid pid")
	// ErrNoProcess: a local PID whose process is not alive.
	ErrNoProcess = errors.New("global: no such process")
	// ErrNodeDown: a PID of a node that is not connected.
	ErrNodeDown = errors.New("global: node not connected")
	// ErrLimit: a peer's frame would take its table past the names a peer
	// may hold here (WithMaxNamesPerPeer). Handle and Merge refuse the
	// frame whole.
	ErrLimit = errors.New("global: peer over its limit of names")
)

// Host is how the node plugs the registry into the cluster. The registry
// calls every method except Notify while holding its write lock, so no
// method may call back into the Registry; all may be called from any of the
// goroutines that call the Registry.
type Host interface {
	// Self is this node's name. It must not change.
	Self() string
	// Broadcast sends an ops frame to every connected node, in call order per
	// peer, as one message that the peer passes to Handle. The registry never
	// touches frame again. Broadcast may block for backpressure; that stalls
	// only registry writers, never Whereis.
	//
	// On connect the node must add the peer to its broadcast set first and
	// take Snapshot after, so that every op is either in the snapshot or sent
	// after it; and it must pass the peer's snapshot to Merge before any of
	// the peer's ops frames to Handle.
	Broadcast(frame []byte)
	// Connected reports whether node is connected now (for Register's check
	// of a remote PID).
	Connected(node string) bool
	// Alive reports whether a PID of this node names a live process of the
	// current incarnation. It must report false for a process before
	// ProcessExited is called for it.
	Alive(pid codec.PID) bool
	// Notify delivers msg (a Conflict) to a local process. It is called after
	// the registry's lock is released and may block briefly.
	Notify(loser codec.PID, msg any)
}

// Conflict is the message a process receives when a registration of its own
// lost a conflict to another registration of the same name (see Wins). The
// process keeps running; it just no longer holds the name.
type Conflict struct {
	Name   string
	Winner codec.PID
}

// Option configures a Registry.
type Option func(*config)

type config struct {
	maxName    int
	maxPerPeer int
	log        *slog.Logger
}

// DefaultMaxNamesPerPeer is how many names one peer's table may hold in
// this replica unless WithMaxNamesPerPeer says otherwise.
const DefaultMaxNamesPerPeer = 1 << 20

// WithMaxNamesPerPeer bounds the names one peer's table may hold in this
// replica (default DefaultMaxNamesPerPeer): a snapshot or ops frame that
// would go past it is refused with ErrLimit. Values below 1 are ignored.
func WithMaxNamesPerPeer(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.maxPerPeer = n
		}
	}
}

// WithMaxNameLen sets the longest name accepted, in bytes (default
// MaxNameLen). Every node of a cluster should use the same limit: frames with
// longer names are refused as malformed. Values outside 1..65536 are ignored.
func WithMaxNameLen(n int) Option {
	return func(c *config) {
		if n >= 1 && n <= maxNameLimit {
			c.maxName = n
		}
	}
}

// WithLogger sets the logger for conflicts and refused frames (default:
// discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// Registry is what a user of a node's replica may call: Register,
// Unregister, Whereis, Names and counters. Nothing reachable from it can
// make the replica disagree with its peers; the calls that drive the
// replica from the network are on [Replica], which only the node holds. All
// methods are safe for concurrent use from any goroutine. Whereis takes no
// lock and does not allocate; the writers serialize on one lock.
type Registry struct {
	host    Host
	self    string
	maxName int
	log     *slog.Logger

	view      view // lock-free read side, see view.go
	size      atomic.Int64
	conflicts atomic.Uint64
	forged    atomic.Uint64
	maxPeer   int

	mu        sync.Mutex // guards everything below
	clock     uint64     // Lamport clock
	own       map[string]Entry
	byPID     map[codec.PID][]string // names in own, per local process
	mirrors   map[string]map[string]Entry
	announced map[string]uint64 // per peer: see the invariants
	pending   map[string]Entry
	hidden    map[Entry]struct{}
	dirty     map[string]struct{} // names changed by the current operation
	changes   []change            // scratch for the view batch
	out       frameWriter         // ops frame of the current operation
	notes     []note              // conflicts to tell once mu is released
}

// Replica is one node's full replica of the cluster-wide name table, as the
// node drives it: the [Registry] a user calls, plus Merge, Handle, Snapshot,
// SnapshotTo, ProcessExited and NodeDown, which apply what peers and the
// node's own processes do. Hand users &x.Registry, never the Replica: a
// NodeDown or Merge called out of turn makes this replica disagree with the
// cluster. All methods are safe for concurrent use from any goroutine.
type Replica struct {
	Registry
}

type note struct {
	pid codec.PID
	msg Conflict
}

// New returns an empty replica for the node h. Safe to call from any
// goroutine.
func New(h Host, opts ...Option) *Replica {
	c := config{maxName: MaxNameLen, maxPerPeer: DefaultMaxNamesPerPeer, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&c)
	}
	x := &Replica{Registry{
		host:      h,
		self:      h.Self(),
		maxName:   c.maxName,
		maxPeer:   c.maxPerPeer,
		log:       c.log,
		own:       make(map[string]Entry),
		byPID:     make(map[codec.PID][]string),
		mirrors:   make(map[string]map[string]Entry),
		announced: make(map[string]uint64),
		pending:   make(map[string]Entry),
		hidden:    make(map[Entry]struct{}),
		dirty:     make(map[string]struct{}),
	}}
	x.view.init()
	return x
}

// Whereis returns the process registered under name, as this node's replica
// knows it. It never touches the network, takes no lock and does not
// allocate; it may run in parallel with any writer and then sees the table
// either before or after each write. Safe from any goroutine.
func (r *Registry) Whereis(name string) (codec.PID, bool) {
	return r.view.lookup(name)
}

// Names returns the names visible in this replica, sorted. Like Whereis it
// reads the local replica only, without the writers' lock, so a write that
// runs meanwhile and changes several names may show in part. It copies the
// whole table: O(Len); call Whereis for one name. Safe from any goroutine.
func (r *Registry) Names() []string {
	all := r.view.all()
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Len returns the number of names visible in this replica. Safe from any
// goroutine.
func (r *Registry) Len() int { return int(r.size.Load()) }

// Conflicts returns how many registrations of this node's processes lost a
// conflict (each one was sent a Conflict). Safe from any goroutine.
func (r *Registry) Conflicts() uint64 { return r.conflicts.Load() }

// Forged returns how many adds peers sent with a version at or below one
// they had already announced for a registration of their own (refused:
// see Replica.Handle). Safe from any goroutine.
func (r *Registry) Forged() uint64 { return r.forged.Load() }

func (r *Registry) checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > r.maxName {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrInvalidName, len(name), r.maxName)
	}
	return nil
}

// Register binds name to pid on every node. It checks against this node's
// replica only: ErrNameTaken if the name is known here. The PID may be of
// this node (its process must be alive: ErrNoProcess) or of a connected node
// (ErrNodeDown otherwise). A registration for another node's process is sent
// to that node, which owns it from then on; it is visible here at once.
//
// Two nodes may accept the same name at the same moment (or on both sides of
// a partition); the conflict is settled everywhere by Wins, and the losing
// process receives a Conflict. Safe from any goroutine.
func (r *Registry) Register(name string, pid codec.PID) error {
	if err := r.checkName(name); err != nil {
		return err
	}
	if pid.IsZero() {
		return fmt.Errorf("%w: zero pid", ErrInvalidPID)
	}
	r.mu.Lock()
	local := pid.Node == r.self
	var err error
	switch {
	case local && !r.host.Alive(pid):
		err = fmt.Errorf("%w: %v", ErrNoProcess, pid)
	case !local && !r.host.Connected(pid.Node):
		err = fmt.Errorf("%w: %q (pid %v)", ErrNodeDown, pid.Node, pid)
	default:
		if _, taken := r.view.lookup(name); taken {
			err = fmt.Errorf("%w: %q", ErrNameTaken, name)
		}
	}
	if err != nil {
		r.mu.Unlock()
		return err
	}
	r.clock++
	e := Entry{Name: name, PID: pid, Version: r.clock, Origin: r.self}
	if local {
		r.addOwnLocked(e)
	} else {
		r.pending[name] = e
		r.out.add(opRegisterReq, &e)
	}
	r.dirty[name] = struct{}{}
	r.commitAndUnlock()
	return nil
}

// Unregister removes name on every node, whichever node registered it.
// ErrNotRegistered if this node does not know the name. A name owned by
// another node's process is hidden here at once and removed by its owner.
// Safe from any goroutine.
func (r *Registry) Unregister(name string) error {
	if err := r.checkName(name); err != nil {
		return err
	}
	r.mu.Lock()
	found := false
	if o, ok := r.own[name]; ok {
		r.dropOwnLocked(o)
		found = true
	}
	if p, ok := r.pending[name]; ok {
		delete(r.pending, name)
		r.hidden[p] = struct{}{}
		r.out.add(opUnregisterReq, &p)
		found = true
	}
	for _, m := range r.mirrors {
		e, ok := m[name]
		if !ok {
			continue
		}
		if _, h := r.hidden[e]; h {
			continue
		}
		r.hidden[e] = struct{}{}
		r.out.add(opUnregisterReq, &e)
		found = true
	}
	if !found {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	r.dirty[name] = struct{}{}
	r.commitAndUnlock()
	return nil
}

// Handle applies an ops frame that node from broadcast. A frame that does
// not decode, or that breaks the protocol, is refused whole with an error
// wrapping ErrMalformed; no input panics. Ops from a node whose snapshot has
// not been merged (or that was declared down since) are ignored. Safe from
// any goroutine, but frames of one peer must be handled in the order sent.
func (r *Replica) Handle(from string, frame []byte) error {
	if from == r.self || from == "" {
		return fmt.Errorf("%w: frame from %q", ErrMalformed, from)
	}
	ops, err := decodeOps(frame, from, r.maxName)
	if err != nil {
		r.log.Debug("global: refused ops frame", "from", from, "err", err)
		return err
	}
	for _, o := range ops {
		if (o.kind == opAdd || o.kind == opRemove) && o.e.PID.Node != from {
			return fmt.Errorf("%w: %v of %q from %q, owned by %q", ErrMalformed, o.kind, o.e.Name, from, o.e.PID.Node)
		}
	}
	r.mu.Lock()
	m := r.mirrors[from]
	if m != nil {
		adds := 0
		for _, o := range ops {
			if o.kind == opAdd {
				if _, had := m[o.e.Name]; !had {
					adds++
				}
			}
		}
		if len(m)+adds > r.maxPeer {
			r.mu.Unlock()
			return fmt.Errorf("%w: %q would hold %d names, over %d", ErrLimit, from, len(m)+adds, r.maxPeer)
		}
	}
	for _, o := range ops {
		e := o.e
		if e.Origin == from && (o.kind == opAdd || o.kind == opRegisterReq) && m != nil {
			if o.kind == opAdd && e.Version <= r.announced[from] && m[e.Name] != e {
				r.forged.Add(1)
				r.log.Warn("global: refused an add below a version its node already announced",
					"from", from, "name", e.Name, "version", e.Version, "announced", r.announced[from])
				continue
			}
			r.announced[from] = max(r.announced[from], e.Version)
		}
		r.clock = max(r.clock, e.Version)
		switch o.kind {
		case opAdd:
			if m == nil {
				continue
			}
			m[e.Name] = e
			if p, ok := r.pending[e.Name]; ok && p == e {
				delete(r.pending, e.Name)
			}
		case opRemove:
			if m != nil && m[e.Name] == e {
				delete(m, e.Name)
			}
			if p, ok := r.pending[e.Name]; ok && p == e {
				delete(r.pending, e.Name)
			}
			delete(r.hidden, e)
		case opRegisterReq:
			if e.PID.Node != r.self {
				continue
			}
			r.registerRequestLocked(e)
		case opUnregisterReq:
			if e.PID.Node != r.self {
				continue
			}
			if o, ok := r.own[e.Name]; ok && o == e {
				r.dropOwnLocked(o)
			}
		}
		r.dirty[e.Name] = struct{}{}
	}
	r.commitAndUnlock()
	return nil
}

// registerRequestLocked acts on another node's request to register one of
// this node's processes. The requester holds e as pending: every path answers
// it with an add or a remove of e.
func (r *Registry) registerRequestLocked(e Entry) {
	o, had := r.own[e.Name]
	if had && o == e {
		return
	}
	if !r.host.Alive(e.PID) {
		r.out.add(opRemove, &e)
		return
	}
	if had {
		if Wins(o, e) {
			r.out.add(opRemove, &e)
			r.loseLocked(e, o)
			return
		}
		r.dropOwnLocked(o)
		r.loseLocked(o, e)
	}
	r.addOwnLocked(e)
}

// Snapshot returns this node's own table (the names of its processes) as a
// snapshot frame for a peer's Merge. Take it after adding the peer to the
// broadcast set (see Host). Safe from any goroutine.
func (r *Replica) Snapshot() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return encodeSnapshot(r.own)
}

// Merge installs node from's snapshot as this node's copy of from's table,
// replacing any earlier copy, and settles conflicts with it. Like NodeDown,
// it first drops this node's unanswered requests to from (see the order of
// calls in the package doc). A snapshot that
// does not decode, or that holds a name of another node's process, is refused
// whole with an error wrapping ErrMalformed. Safe from any goroutine.
func (r *Replica) Merge(from string, snapshot []byte) error {
	if from == r.self || from == "" {
		return fmt.Errorf("%w: snapshot from %q", ErrMalformed, from)
	}
	m, err := decodeSnapshot(snapshot, from, r.maxName)
	if err != nil {
		r.log.Debug("global: refused snapshot", "from", from, "err", err)
		return err
	}
	if len(m) > r.maxPeer {
		return fmt.Errorf("%w: %q sent a snapshot of %d names, over %d", ErrLimit, from, len(m), r.maxPeer)
	}
	var announced uint64
	for _, e := range m {
		if e.Origin == from {
			announced = max(announced, e.Version)
		}
	}
	r.mu.Lock()
	// A snapshot starts a new connection with from: whatever this node had
	// from or sent to it over an earlier one is void, as after NodeDown.
	// Requests lost with that connection would otherwise stay pending, and
	// unregister requests hidden, for ever. A request made on the new
	// connection before its snapshot arrived is answered after it (the peer
	// took the snapshot before reading anything), so dropping it here only
	// hides it until the owner's add.
	r.forgetLocked(from)
	r.mirrors[from] = m
	r.announced[from] = announced
	for name, e := range m {
		r.clock = max(r.clock, e.Version)
		if p, ok := r.pending[name]; ok && p == e {
			delete(r.pending, name)
		}
		r.dirty[name] = struct{}{}
	}
	r.commitAndUnlock()
	return nil
}

// ProcessExited drops every name held by pid, a process of this node, on
// every node. PIDs of other nodes are ignored (their own node drops them).
// Safe from any goroutine.
func (r *Replica) ProcessExited(pid codec.PID) {
	if pid.Node != r.self {
		return
	}
	r.mu.Lock()
	// All of pid's names go at once: dropOwnLocked one by one would search
	// pid's list each time (quadratic: 20 000 names held by one process
	// took seconds).
	names := r.byPID[pid]
	delete(r.byPID, pid)
	for _, name := range names {
		e := r.own[name]
		delete(r.own, name)
		r.out.add(opRemove, &e)
		r.dirty[name] = struct{}{}
	}
	r.commitAndUnlock()
}

// NodeDown forgets node's table and this node's requests to it: every name
// held by a process of node disappears here. Safe from any goroutine.
func (r *Replica) NodeDown(node string) {
	if node == r.self {
		return
	}
	r.mu.Lock()
	r.forgetLocked(node)
	r.commitAndUnlock()
}

// forgetLocked drops node's table and this node's requests to it.
func (r *Registry) forgetLocked(node string) {
	for name := range r.mirrors[node] {
		r.dirty[name] = struct{}{}
	}
	delete(r.mirrors, node)
	delete(r.announced, node)
	for name, p := range r.pending {
		if p.PID.Node == node {
			delete(r.pending, name)
			r.dirty[name] = struct{}{}
		}
	}
	for e := range r.hidden {
		if e.PID.Node == node {
			delete(r.hidden, e)
			r.dirty[e.Name] = struct{}{}
		}
	}
}

func (r *Registry) addOwnLocked(e Entry) {
	r.own[e.Name] = e
	r.byPID[e.PID] = append(r.byPID[e.PID], e.Name)
	r.out.add(opAdd, &e)
}

func (r *Registry) dropOwnLocked(e Entry) {
	delete(r.own, e.Name)
	names := r.byPID[e.PID]
	if i := slices.Index(names, e.Name); i >= 0 {
		names[i] = names[len(names)-1]
		names = names[:len(names)-1]
	}
	if len(names) == 0 {
		delete(r.byPID, e.PID)
	} else {
		r.byPID[e.PID] = names
	}
	r.out.add(opRemove, &e)
}

// loseLocked records that registration loser, of a process of this node,
// gave way to winner, and queues the Conflict for its process. Two
// registrations of one name for the same process (made on two nodes at once)
// are not a conflict: the process keeps the name, so it is not told it lost.
func (r *Registry) loseLocked(loser, winner Entry) {
	if loser.PID == winner.PID {
		return
	}
	r.conflicts.Add(1)
	r.notes = append(r.notes, note{pid: loser.PID, msg: Conflict{Name: loser.Name, Winner: winner.PID}})
	r.log.Debug("global: registration lost a conflict", "name", loser.Name, "loser", loser.PID, "winner", winner.PID)
}

// bestMirrorLocked is the best not hidden entry for name in any mirror.
func (r *Registry) bestMirrorLocked(name string) (best Entry, ok bool) {
	for _, m := range r.mirrors {
		e, has := m[name]
		if !has {
			continue
		}
		if _, h := r.hidden[e]; h {
			continue
		}
		if !ok || Wins(e, best) {
			best, ok = e, true
		}
	}
	return best, ok
}

// winnerLocked is the entry the view shows for name.
func (r *Registry) winnerLocked(name string) (Entry, bool) {
	best, ok := r.bestMirrorLocked(name)
	if o, has := r.own[name]; has && (!ok || Wins(o, best)) {
		best, ok = o, true
	}
	if p, has := r.pending[name]; has && (!ok || Wins(p, best)) {
		best, ok = p, true
	}
	return best, ok
}

// commitAndUnlock settles the names the operation touched (own entries that
// lost are dropped), publishes the view, broadcasts the operation's ops
// frame, releases mu and then tells the losers.
func (r *Registry) commitAndUnlock() {
	for name := range r.dirty {
		if o, ok := r.own[name]; ok {
			if b, ok := r.bestMirrorLocked(name); ok && Wins(b, o) {
				r.dropOwnLocked(o)
				r.loseLocked(o, b)
			}
		}
		w, ok := r.winnerLocked(name)
		cur, had := r.view.lookup(name)
		switch {
		case ok && (!had || cur != w.PID):
			r.changes = append(r.changes, r.view.set(name, w.PID))
		case !ok && had:
			r.changes = append(r.changes, r.view.del(name))
		}
	}
	clear(r.dirty)
	if len(r.changes) > 0 {
		r.size.Add(int64(r.view.apply(r.changes)))
		clear(r.changes)
		r.changes = r.changes[:0]
	}
	if f := r.out.take(); f != nil {
		r.host.Broadcast(f)
	}
	notes := r.notes
	r.notes = nil
	r.mu.Unlock()
	for _, n := range notes {
		r.host.Notify(n.pid, n.msg)
	}
}
