package node

// Process groups (Erlang's pg) on the node: the replica lives in
// internal/groups; this file wires it to peers (sync on connect, ops
// broadcast, cleanup on process exit and node down) and fans Publish out.

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/groups"
	"github.com/meshrt/mesh/internal/wire"
)

// Errors of [Groups] calls, each testable with errors.Is.
var (
	// ErrBadGroup: an empty group name or one over 255 bytes.
	ErrBadGroup = groups.ErrInvalidGroup
	// ErrNotLocal: Join or Leave named a process of another node (each
	// node joins its own processes).
	ErrNotLocal = groups.ErrNotLocal
)

// DefaultMaxPeerGroupMembers is the default of [WithMaxPeerGroupMembers].
const DefaultMaxPeerGroupMembers = groups.DefaultMaxPeerMembers

// WithMaxPeerGroupMembers bounds the group memberships one peer can make
// this node hold (default [DefaultMaxPeerGroupMembers], 1 048 576); a peer
// past it is cut, and the cut logged with its reason. Every node of a
// cluster should use the same bound. A value under 1 makes [Start] fail
// with [ErrBadOption].
func WithMaxPeerGroupMembers(n int) Option {
	return func(o *options) { o.membership.maxPeerMembers = n }
}

// Groups are the node's process groups: named sets of processes, each
// joined by its own node, replicated on every node of the cluster. Its
// methods are safe from any goroutine.
type Groups struct{ n *Node }

// Groups returns the node's process groups.
func (n *Node) Groups() *Groups { return &Groups{n: n} }

// Join makes pid, a live process of this node, a member of group on every
// node; joining twice is joining once. A member that exits, or whose node
// goes, leaves every group everywhere. A member shares each published
// message with the group's other members on its node (see [Groups.Publish]):
// it must not change it. Errors: [ErrBadGroup], [ErrNotLocal], [ErrExited]
// for a process that is not alive.
func (g *Groups) Join(group string, pid PID) error {
	err := g.n.groups.Join(group, pid)
	if errors.Is(err, groups.ErrNoProcess) {
		return fmt.Errorf("%w: %w", ErrExited, err)
	}
	return err
}

// Leave removes pid, a process of this node, from group on every node. It
// is not an error if pid was not a member.
func (g *Groups) Leave(group string, pid PID) error { return g.n.groups.Leave(group, pid) }

// Members returns the members of group on every node connected to this
// one, sorted: a read of this node's replica, no network.
func (g *Groups) Members(group string) []PID { return g.n.groups.Members(group) }

// Which returns the names of the groups that have members, sorted.
func (g *Groups) Which() []string { return g.n.groups.Which() }

// Publish sends msg to every member of group: local members get the value
// itself; msg is encoded once, and each other node that has members gets
// one frame, which it decodes once and hands to its own members. So the
// members on one node share one value, as the receivers of a local Send
// share the sender's: a member must treat a published message as
// read-only (a slice or map it changes changes for the others, and two
// members writing one map at once is a data race). A message that cannot be
// encoded is an error (nothing is sent); a node whose connection is lost
// meanwhile misses it, as a Send would. Publish waits while a peer's send
// queue is full (backpressure), like Send.
func (g *Groups) Publish(group string, msg any) error {
	n := g.n
	if err := groupName(group); err != nil {
		return err
	}
	nodes := n.groups.Nodes(group)
	if len(nodes) > 0 {
		bp := getBuf()
		defer func() { putBuf(bp, (*bp)[:0]) }()
		term, err := codec.AppendTerm((*bp)[:0], msg)
		if err != nil {
			return fmt.Errorf("publish to %q: %w", group, err)
		}
		frame := (&wire.Publish{Group: group, Term: term}).Append(nil)
		if len(frame) > maxControlFrame {
			return fmt.Errorf("publish to %q: %w: the message encodes to %d bytes, over %d", group, codec.ErrLimit, len(frame), maxControlFrame)
		}
		*bp = term[:0]
		for _, node := range nodes {
			if pe := n.peerIfUp(node); pe != nil {
				_ = pe.conn.Enqueue(context.Background(), frame) // a lost peer misses it
			}
		}
	}
	pushToMembers(n.groups.LocalTargets(group), msg)
	return nil
}

// pushToMembers hands v to members, this node's members of a group
// (Replica.LocalTargets): the value itself,
// one value shared by all of them (Publish's local members get the
// publisher's value, a peer's publish is decoded once per node).
//
// Measured with GroupFanout (100 000 members on 10 nodes; docs/cluster.md):
// the members come from the replica's list of their processes, made once
// per change of the group, in PID order (a map's keys and a table lookup
// per member were 16% of a publish); each member parks on its channel
// (Join made it: mailbox.ParkOnChannel), since waking 100 000 goroutines
// parked on semaphores walked the runtime's tree of them each time (a
// third of a publish).
func pushToMembers(members []any, v any) {
	for i, t := range members {
		p := t.(*Process)
		// A member's next message after a fan-out seldom follows at
		// once: its wait after this one parks without the short spin,
		// which would only take the core from the goroutine readying the
		// other members (as after a remote Send).
		p.mb.ParkNext()
		p.mb.Push(v) // false: it died meanwhile, and misses it as a Send would
		yieldEvery(i)
	}
}

// publishYield is how many members a publish hands its message to between
// two yields of the delivering goroutine. Each push readies a parked member;
// pushing to thousands in one go queues them all, and they run much later,
// their stacks and mailboxes out of the cache, through the scheduler's
// global queue. Yielding every few pushes lets the members just readied run
// at once, as they do when their messages come one by one. Measured with
// GroupFanout (100 000 members on 10 nodes, load 10-14, before ParkNext):
// publish against send-each 1.21-1.24x with a yield every 8, 0.98-1.06x
// with none, 0.87x every 32.
const publishYield = 8

// yieldEvery yields the processor after every publishYield-th member (i
// counts from 0).
func yieldEvery(i int) {
	if i%publishYield == publishYield-1 {
		runtime.Gosched()
	}
}

func groupName(g string) error {
	if g == "" || len(g) > groups.MaxGroupName {
		return fmt.Errorf("%w: %q", ErrBadGroup, g)
	}
	return nil
}

// handlePublish hands a peer's published message to this node's members of
// the group: decoded once, here, and the one value pushed to every member,
// as a local Publish shares the publisher's value. A message that does not
// decode is dropped and counted once. Runs on the peer's loop.
//
// Decoding here, not in each member (as a Send's message is), costs the
// loop one decode per publish instead of a copy into every member's
// mailbox and a decode and an allocation in every member.
func (n *Node) handlePublish(p *wire.Publish) {
	members := n.groups.LocalTargets(p.Group)
	if len(members) == 0 {
		return
	}
	v, err := n.decodeOnLoop(p.Term)
	if err != nil {
		n.undecodable(err)
		return
	}
	pushToMembers(members, v)
}

// groupsHost plugs the replica into the node. Its methods run under the
// replica's lock: none may call back into it.
type groupsHost struct{ n *Node }

func (h groupsHost) Self() string { return h.n.self }

func (h groupsHost) Broadcast(frame []byte) {
	for _, pe := range h.n.upPeers() {
		pe.sendGroups(frame)
	}
}

// Alive returns the process itself as its handle (pushToMembers), and
// makes its mailbox park on its channel from now on: a member is woken by
// fan-outs, many at a time (mailbox.ParkOnChannel).
func (h groupsHost) Alive(pid codec.PID) (any, bool) {
	p := h.n.local(pid)
	if p == nil || !p.markGrouped() {
		return nil, false
	}
	p.mb.ParkOnChannel()
	return p, true
}

// Group frames larger than one part (a snapshot of big groups) travel as
// several KindGroups frames, each a part behind a marker byte the replica's
// own frames never start with, joined on arrival within a bound.
const (
	groupsPart     = 1 << 20
	groupsPartMore = 0xF0
	groupsPartLast = 0xF1
	maxGroupsFrame = 256 << 20
)

// sendGroups sends one groups frame to the peer, in parts if large.
func (pe *peer) sendGroups(frame []byte) {
	if len(frame) <= groupsPart {
		pe.control(&wire.Groups{Payload: frame})
		return
	}
	part := make([]byte, 0, groupsPart+1)
	for off := 0; off < len(frame); off += groupsPart {
		end := min(off+groupsPart, len(frame))
		marker := byte(groupsPartMore)
		if end == len(frame) {
			marker = groupsPartLast
		}
		part = append(append(part[:0], marker), frame[off:end]...)
		pe.control(&wire.Groups{Payload: part})
	}
}

// handleGroups passes a peer's groups frame to the replica, in the order
// sent. Frames of a connection that is no longer the peer's are dropped. A
// peer past its membership bound is cut (the error closes the link).
func (n *Node) handleGroups(pe *peer, payload []byte) error {
	if len(payload) > 0 && (payload[0] == groupsPartMore || payload[0] == groupsPartLast) {
		if len(pe.groupParts)+len(payload)-1 > maxGroupsFrame {
			return fmt.Errorf("%w: groups frame over %d bytes", codec.ErrLimit, maxGroupsFrame)
		}
		pe.groupParts = append(pe.groupParts, payload[1:]...)
		if payload[0] == groupsPartMore {
			return nil
		}
		payload, pe.groupParts = pe.groupParts, nil
	}
	if n.peerIfUp(pe.name) != pe {
		return nil
	}
	var err error
	if groups.IsSnapshot(payload) {
		err = n.groups.Merge(pe.name, payload)
	} else {
		err = n.groups.Handle(pe.name, payload)
	}
	if errors.Is(err, groups.ErrLimit) {
		// Counted and logged with the other limits (handle.go).
		max := n.opts.membership.maxPeerMembers
		return fmt.Errorf("%w: %w", &wire.LimitError{Limit: "group_members", Asked: max + 1, Max: max}, err)
	}
	return err
}
