// Package groups is the replica of process groups (Erlang's pg) that every
// node holds in full. It has no sockets: package node drives it through the
// [Host] interface and the Handle, Merge, ProcessExited and NodeDown calls,
// the way it drives the global registry.
//
// # Model
//
// A membership is owned by the node its process runs on: only that node
// adds or removes it, and it broadcasts each change to every connected node,
// in order. Every other node holds an exact copy of each connected peer's
// memberships: made from the peer's snapshot when they connect (Merge), kept
// up to date by the peer's ops (Handle), dropped when the peer goes down
// (NodeDown). Members of a group, on any node, are the union of its own
// table and its copies. Nothing is relayed and nothing conflicts: a node
// only ever vouches for its own processes, so once the links are up and the
// traffic has settled every replica is equal.
//
// Joining is a set operation: a process joined twice is a member once, and
// one Leave removes it. Only local processes join; a process that exits
// leaves every group, on every node.
//
// # Order of calls the node must keep
//
// On connect: add the peer to the broadcast set, then send SnapshotTo's
// frame as the first groups frame; on receipt, Merge it before any ops frame
// of that peer. Frames of one peer are handled in the order sent. Call
// NodeDown when a connection is gone, before any Merge of a new connection
// with that node. Host.Alive must say false for a process before
// ProcessExited is called for it.
package groups

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/meshrt/mesh/codec"
)

// Errors, each testable with errors.Is.
var (
	// ErrInvalidGroup: an empty group name or one over MaxGroupName bytes.
	ErrInvalidGroup = errors.New("groups: invalid group name")
	// ErrNotLocal: Join or Leave of a process of another node.
	ErrNotLocal = errors.New("groups: not a process of this node")
	// ErrNoProcess: Join of a local process that is not alive.
	ErrNoProcess = errors.New("groups: no such process")
	// ErrMalformed: a frame that does not decode or breaks the protocol.
	ErrMalformed = errors.New("groups: malformed frame")
	// ErrLimit: a peer's memberships past the bound (the node cuts it).
	ErrLimit = errors.New("groups: peer over its membership limit")
)

// MaxGroupName is the longest group name, in bytes.
const MaxGroupName = 255

// DefaultMaxPeerMembers bounds the memberships this node holds for one peer.
const DefaultMaxPeerMembers = 1 << 20

// Host is how the node plugs the replica into the cluster. Self, Broadcast
// and Alive are called with the replica's lock held: none may call back.
type Host interface {
	// Self is this node's name.
	Self() string
	// Broadcast sends an ops frame to every connected node, in call order
	// per peer; the peer passes it to Handle. It must not block for long.
	Broadcast(frame []byte)
	// Alive reports whether pid names a live process of this node's
	// current incarnation, and if so records that its exit must be
	// reported with ProcessExited and returns a handle for it (anything
	// the node delivers to it through), which the replica keeps while pid
	// is a member and hands back through LocalTargets.
	Alive(pid codec.PID) (handle any, ok bool)
}

type set = map[codec.PID]struct{}

// Replica is one node's full replica of the cluster's groups. Safe for use
// from any goroutine.
type Replica struct {
	host     Host
	self     string
	maxPeer  int
	mu       sync.RWMutex
	own      map[string]set            // guarded by mu: this node's memberships
	byPID    map[codec.PID][]string    // guarded by mu: groups of each own member
	mirrors  map[string]map[string]set // guarded by mu: node → group → members
	counts   map[string]int            // guarded by mu: memberships per mirror
	out      []op                      // guarded by mu: ops of the current call
	scratch  []byte                    // guarded by mu
	mirrorOf map[string]map[string]int // guarded by mu: group → node → members there
	handle   map[codec.PID]any         // guarded by mu: Alive's handle of each own member
	targets  map[string][]any          // guarded by mu: LocalTargets of a group, built on demand, dropped when its own members change
}

// New returns an empty replica for h; maxPeerMembers bounds what one peer
// can make this node hold (0: DefaultMaxPeerMembers).
func New(h Host, maxPeerMembers int) *Replica {
	if maxPeerMembers <= 0 {
		maxPeerMembers = DefaultMaxPeerMembers
	}
	return &Replica{
		host:     h,
		self:     h.Self(),
		maxPeer:  maxPeerMembers,
		own:      make(map[string]set),
		byPID:    make(map[codec.PID][]string),
		mirrors:  make(map[string]map[string]set),
		counts:   make(map[string]int),
		mirrorOf: make(map[string]map[string]int),
		handle:   make(map[codec.PID]any),
		targets:  make(map[string][]any),
	}
}

func checkGroup(g string) error {
	if g == "" || len(g) > MaxGroupName {
		return fmt.Errorf("%w: %q", ErrInvalidGroup, g)
	}
	return nil
}

// Join makes pid, a process of this node, a member of group on every node.
func (r *Replica) Join(group string, pid codec.PID) error {
	if err := checkGroup(group); err != nil {
		return err
	}
	if pid.Node != r.self {
		return fmt.Errorf("join %q: %w: %v", group, ErrNotLocal, pid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.own[group][pid]; ok {
		return nil
	}
	h, ok := r.host.Alive(pid)
	if !ok {
		return fmt.Errorf("join %q: %w: %v", group, ErrNoProcess, pid)
	}
	m := r.own[group]
	if m == nil {
		m = make(set)
		r.own[group] = m
	}
	m[pid] = struct{}{}
	delete(r.targets, group)
	r.handle[pid] = h
	r.byPID[pid] = append(r.byPID[pid], group)
	r.out = append(r.out, op{kind: opJoin, group: group, pid: pid})
	r.flushLocked()
	return nil
}

// Leave removes pid, a process of this node, from group on every node. It
// is not an error if pid was not a member.
func (r *Replica) Leave(group string, pid codec.PID) error {
	if err := checkGroup(group); err != nil {
		return err
	}
	if pid.Node != r.self {
		return fmt.Errorf("leave %q: %w: %v", group, ErrNotLocal, pid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leaveLocked(group, pid)
	r.flushLocked()
	return nil
}

func (r *Replica) leaveLocked(group string, pid codec.PID) {
	m := r.own[group]
	if _, ok := m[pid]; !ok {
		return
	}
	delete(m, pid)
	if len(m) == 0 {
		delete(r.own, group)
	}
	delete(r.targets, group)
	gs := slices.DeleteFunc(r.byPID[pid], func(g string) bool { return g == group })
	if len(gs) == 0 {
		delete(r.byPID, pid)
		delete(r.handle, pid)
	} else {
		r.byPID[pid] = gs
	}
	r.out = append(r.out, op{kind: opLeave, group: group, pid: pid})
}

// ProcessExited removes pid, a process of this node, from every group.
func (r *Replica) ProcessExited(pid codec.PID) {
	if pid.Node != r.self {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range slices.Clone(r.byPID[pid]) {
		r.leaveLocked(g, pid)
	}
	r.flushLocked()
}

// flushLocked broadcasts the ops of the current call as one frame.
func (r *Replica) flushLocked() {
	if len(r.out) == 0 {
		return
	}
	r.scratch = encodeOps(r.scratch[:0], r.out)
	clear(r.out)
	r.out = r.out[:0]
	r.host.Broadcast(slices.Clone(r.scratch))
}

// Members returns every member of group on every connected node, sorted: a
// local read of the replica. Safe from any goroutine.
func (r *Replica) Members(group string) []codec.PID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := len(r.own[group])
	for node := range r.mirrorOf[group] {
		n += len(r.mirrors[node][group])
	}
	out := make([]codec.PID, 0, n)
	for pid := range r.own[group] {
		out = append(out, pid)
	}
	for node := range r.mirrorOf[group] {
		for pid := range r.mirrors[node][group] {
			out = append(out, pid)
		}
	}
	slices.SortFunc(out, comparePIDs)
	return out
}

// LocalTargets returns the handles (Host.Alive's) of the members of group
// that run on this node, in the order of their PIDs: what a publish hands
// its message to. The slice is shared and must not be modified; it is made
// once per change of the group's own members, so publishing again and
// again to a group that does not change neither allocates nor looks up a
// member. Safe from any goroutine.
func (r *Replica) LocalTargets(group string) []any {
	r.mu.RLock()
	t, ok := r.targets[group]
	r.mu.RUnlock()
	if ok {
		return t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.targets[group]; ok {
		return t
	}
	m := r.own[group]
	if len(m) == 0 {
		return nil // not cached: a group with no member here is not kept
	}
	pids := slices.SortedFunc(maps.Keys(m), comparePIDs)
	t = make([]any, len(pids))
	for i, pid := range pids {
		t[i] = r.handle[pid]
	}
	r.targets[group] = t
	return t
}

// Nodes returns the other nodes that have members of group, sorted.
func (r *Replica) Nodes(group string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.mirrorOf[group]))
}

// Which returns the groups that have members anywhere, sorted.
func (r *Replica) Which() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := slices.Collect(maps.Keys(r.own))
	for g := range r.mirrorOf {
		if _, ok := r.own[g]; !ok {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

// Counts returns how many groups have members anywhere and how many
// memberships the replica holds, as len(Which()) and the sum of
// len(Members(g)) would, without copying or sorting either: for a metrics
// scrape. Safe from any goroutine.
func (r *Replica) Counts() (groups, members int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	groups = len(r.own)
	for _, pids := range r.own {
		members += len(pids)
	}
	for g, nodes := range r.mirrorOf {
		if _, ok := r.own[g]; !ok {
			groups++
		}
		for node := range nodes {
			members += len(r.mirrors[node][g])
		}
	}
	return groups, members
}

// SnapshotTo passes this node's own memberships, as a snapshot frame, to
// send while holding the lock, so that no ops frame broadcast after it can
// reach the peer first. send must not block or call back.
func (r *Replica) SnapshotTo(send func(frame []byte)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	send(encodeSnapshot(r.own))
}

// Merge installs from's snapshot as this node's copy of from's
// memberships, replacing any earlier one. A snapshot that does not decode,
// names another node's process, or holds more than the peer bound is
// refused whole (ErrMalformed, ErrLimit).
func (r *Replica) Merge(from string, frame []byte) error {
	if from == r.self || from == "" {
		return fmt.Errorf("%w: snapshot from %q", ErrMalformed, from)
	}
	m, count, err := decodeSnapshot(frame, from, r.maxPeer)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropMirrorLocked(from)
	r.mirrors[from] = m
	r.counts[from] = count
	for g, s := range m {
		r.noteLocked(g, from, len(s))
	}
	return nil
}

// Handle applies an ops frame that from broadcast. Ops of a node whose
// snapshot has not been merged are ignored (its snapshot holds their
// effect). Errors: ErrMalformed, ErrLimit (the peer went past its bound).
func (r *Replica) Handle(from string, frame []byte) error {
	ops, err := decodeOps(frame, from)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.mirrors[from]
	if m == nil {
		return nil
	}
	for _, o := range ops {
		s := m[o.group]
		switch o.kind {
		case opJoin:
			if _, ok := s[o.pid]; ok {
				continue
			}
			if r.counts[from] >= r.maxPeer {
				return fmt.Errorf("%w: %s holds %d memberships", ErrLimit, from, r.counts[from])
			}
			if s == nil {
				s = make(set)
				m[o.group] = s
			}
			s[o.pid] = struct{}{}
			r.counts[from]++
		case opLeave:
			if _, ok := s[o.pid]; !ok {
				continue
			}
			delete(s, o.pid)
			r.counts[from]--
			if len(s) == 0 {
				delete(m, o.group)
			}
		}
		r.noteLocked(o.group, from, len(m[o.group]))
	}
	return nil
}

// NodeDown forgets node's memberships.
func (r *Replica) NodeDown(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropMirrorLocked(node)
}

func (r *Replica) dropMirrorLocked(node string) {
	for g := range r.mirrors[node] {
		r.noteLocked(g, node, 0)
	}
	delete(r.mirrors, node)
	delete(r.counts, node)
}

// noteLocked records that node has n members of group.
func (r *Replica) noteLocked(group, node string, n int) {
	byNode := r.mirrorOf[group]
	if n == 0 {
		delete(byNode, node)
		if len(byNode) == 0 {
			delete(r.mirrorOf, group)
		}
		return
	}
	if byNode == nil {
		byNode = make(map[string]int)
		r.mirrorOf[group] = byNode
	}
	byNode[node] = n
}

func comparePIDs(a, b codec.PID) int {
	switch {
	case a.Node != b.Node:
		if a.Node < b.Node {
			return -1
		}
		return 1
	case a.Incarnation != b.Incarnation:
		if a.Incarnation < b.Incarnation {
			return -1
		}
		return 1
	case a.ID != b.ID:
		if a.ID < b.ID {
			return -1
		}
		return 1
	}
	return 0
}
