package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/mailbox"
)

// Outgoing: what this node sends to a peer when a local process sends,
// links, monitors, signals or spawns across the network. Messages (sendRemote)
// may wait on backpressure; control frames (sendLink, sendExit, ...) never
// wait (peer.control).

// sendRemote encodes msg into *scratch (the caller's buffer, kept for its
// next send) and queues it on pe's connection; a message too large for one
// item goes as fragments. pe is the connection to to.Node.
func (n *Node) sendRemote(pe *peer, scratch *[]byte, from uint64, to PID, msg any) error {
	if to.Incarnation != pe.incarnation {
		return nil // a process of an earlier run of that node: long gone
	}
	if pe.features&wire.FeatureFragments != 0 && mayFragmentValue(msg, n.fragmentAbove) {
		if sent, err := pe.sendValueFragmented(from, to.ID, msg, n.fragmentAbove, n.limits.MaxMessage); sent || err != nil {
			if err != nil {
				return fmt.Errorf("send to %v: %w", to, err)
			}
			return nil
		}
	}
	item, err := wire.AppendMessage((*scratch)[:0], to.ID, from, msg, n.limits.MaxMessage)
	if cap(item) <= maxKeptScratch {
		*scratch = item[:0]
	} // else: a large message's buffer is not kept (an idle process stays small)
	if err != nil {
		return fmt.Errorf("send to %v: %w", to, err)
	}
	if pe.features&wire.FeatureFragments != 0 && len(item) > n.fragmentAbove {
		if err := pe.sendFragmented(from, item, n.fragmentAbove); err != nil {
			return fmt.Errorf("send to %v: %w", to, err)
		}
		// Counted here: the drain counts the batched messages only.
		pe.stats.msgsOut.Add(1)
		pe.stats.bytesOut.Add(uint64(len(item)))
		return nil
	}
	// Behind this sender's bulk items, if it has any queued (lanes.go,
	// companion.go).
	if err := pe.sendMessage(from, item); err != nil {
		return fmt.Errorf("send to %v: %w", to, err)
	}
	return nil
}

// maxKeptScratch: a sender's encoding buffer is kept between sends up to
// this size (a process keeps its own; see Process.Send).
const maxKeptScratch = 1 << 10

// sendFragmented queues a large message item of the local process from as
// fragments, one item each of at most size bytes, on the link's bulk lane:
// other senders' items overtake them, from's own later items follow them
// (lanes.go). With the default size (64 KiB) an item fits one of the send
// queue's pooled chunks: a larger one got a chunk allocated for it alone,
// a megabyte of garbage per megabyte sent.
func (pe *peer) sendFragmented(from uint64, item []byte, size int) error {
	var f wire.Fragmenter
	if err := f.Reset(pe.fragID.Add(1), item, size-wire.MaxFragmentOverhead); err != nil {
		return err
	}
	return pe.sendFragments(from, &f, size)
}

// sendValueFragmented sends msg from the local process from to the
// process to as sendFragmented does, straight from msg's bytes, when msg
// is a []byte or a string of over above bytes (wire.Fragmenter.ResetValue):
// the bytes are copied once, into the send queue, instead of encoded into
// an item, moved, copied into a fragment and then into the queue. It
// reports whether it sent (or failed to send) msg; false: encode it.
func (pe *peer) sendValueFragmented(from, to uint64, msg any, above, maxTerm int) (bool, error) {
	var f wire.Fragmenter
	ok, err := f.ResetValue(&pe.fragID, to, from, msg, above, maxTerm, above-wire.MaxFragmentOverhead)
	if !ok || err != nil {
		return ok, err
	}
	if err := pe.sendFragments(from, &f, above); err != nil {
		return true, err
	}
	// Counted here: the drain counts the batched messages only.
	pe.stats.msgsOut.Add(1)
	pe.stats.bytesOut.Add(uint64(f.ItemSize()))
	return true, nil
}

// mayFragmentValue reports whether msg may be a value sendValueFragmented
// sends (a []byte or a string near above bytes or more): a quick test
// that spares the small messages' path a call.
func mayFragmentValue(msg any, above int) bool {
	const head = 1 + binary.MaxVarintLen64 // a term's tag and length
	switch x := msg.(type) {
	case []byte:
		return len(x) > above-head
	case string:
		return len(x) > above-head
	}
	return false
}

// bulkFiller is a link that queues a bulk item built in a buffer of its
// own (loop.Conn.EnqueueBulkFill).
type bulkFiller interface {
	EnqueueBulkFill(ctx context.Context, size int, fill func(dst []byte) []byte) (loop.BulkTicket, error)
}

// sendFragments queues f's fragments, each at most size bytes, for the
// local process from: on this node's companion connection to the peer
// once it is up, else on the link's bulk lane (bulkRoute). Each fragment
// is built in the send queue's own buffer where the link can (a
// loop.Conn), else in a pooled buffer and copied into the queue.
func (pe *peer) sendFragments(from uint64, f *wire.Fragmenter, size int) error {
	r := pe.bulkRoute(from)
	if bf, ok := r.l.(bulkFiller); ok {
		next := f.Next
		for f.More() {
			t, err := bf.EnqueueBulkFill(context.Background(), size, next)
			if err != nil {
				return newPeerError("", err)
			}
			r.noted(pe, from, t, !f.More())
		}
		return nil
	}
	bp := getBuf()
	defer func() { putBuf(bp, (*bp)[:0]) }()
	for f.More() {
		frag := f.Next((*bp)[:0])
		*bp = frag[:0]
		if err := pe.sendOn(r, from, frag, !f.More()); err != nil { // r is a bulk lane
			return err
		}
	}
	return nil
}

// sendLink links local p with pid on another node.
func (n *Node) sendLink(p *Process, pid PID) error {
	if !p.addLink(pid) {
		return ErrExited
	}
	pe, err := n.peerFor(pid.Node)
	if err != nil {
		n.exitSignal(pid, p.pid, NoConnection, true)
		return nil
	}
	if pid.Incarnation != pe.incarnation {
		n.exitSignal(pid, p.pid, NoProc, true)
		return nil
	}
	pe.control(&wire.Link{From: p.pid, To: pid})
	return nil
}

// sendUnlink tells pe that local from no longer links to its process to.
func sendUnlink(pe *peer, from, to PID) {
	pe.control(&wire.Unlink{From: from, To: to})
}

// sendMonitor makes local p monitor pid on another node under ref.
func (n *Node) sendMonitor(p *Process, ref Ref, pid PID) {
	if !p.addWatching(ref, pid) {
		return
	}
	pe, err := n.peerFor(pid.Node)
	reason := any(nil)
	switch {
	case err != nil:
		reason = NoConnection
	case pid.Incarnation != pe.incarnation:
		reason = NoProc
	}
	if reason != nil {
		p.mu.Lock()
		if p.rel != nil {
			delete(p.rel.watching, ref)
		}
		p.mu.Unlock()
		p.mb.Push(Down{Ref: ref, PID: pid, Reason: reason})
		return
	}
	pe.control(&wire.Monitor{From: p.pid, To: pid, Ref: ref})
}

// sendDemonitor tells pe that local from no longer monitors its process
// to under ref.
func sendDemonitor(pe *peer, from, to PID, ref Ref) {
	pe.control(&wire.Demonitor{From: from, To: to, Ref: ref})
}

// sendExit sends an exit signal to a process of another node.
func (n *Node) sendExit(from, to PID, reason any, viaLink bool) {
	pe := n.peerIfUp(to.Node)
	if pe == nil || pe.incarnation != to.Incarnation {
		return // the connection is gone: the other side sees noconnection
	}
	pe.control(&wire.Exit{From: from, To: to, Reason: wireReason(reason), Link: viaLink})
}

// sendDown tells a remote watcher that a local process exited.
func (n *Node) sendDown(ref Ref, watcher, pid PID, reason any) {
	pe := n.peerIfUp(watcher.Node)
	if pe == nil || pe.incarnation != watcher.Incarnation {
		return
	}
	pe.control(&wire.Down{Ref: ref, Watcher: watcher, PID: pid, Reason: wireReason(reason)})
}

// spawnResult is a remote spawn's outcome.
type spawnResult struct {
	pid PID
	err error
}

// pendingSpawn is a spawn request waiting for its reply. They are pooled,
// with their Waiter's eventfd, so a remote spawn allocates nothing of its
// own on the requesting side.
//
// Whoever takes a pendingSpawn out of its peer's table (pendingSpawns.take,
// takeAll) owns its answer: the reply's handler, or failSpawns when the
// peer goes, sets res and wakes the requester, once; the requester, if it
// takes it out itself (timeout, a failed send), knows no Wake can come.
type pendingSpawn struct {
	req    uint64   // its request's number, in the table
	parent *Process // linked on success when link is set
	link   bool
	res    spawnResult    // set by the taker before Wake
	w      mailbox.Waiter // in Go's netpoller: the loop readies the requester without waking a thread
	// buf is the buffer the request is encoded in, the requester's only
	// (nobody else touches it), kept with the pending spawn in spawnPool:
	// a pooled buffer of its own was a second Get and Put a spawn (about
	// 115 instructions). Taken from the buffers' pool at a pending spawn's
	// first request, and dropped, as putBuf drops one, when a request
	// grows it past maxPooledBuf.
	buf *[]byte
}

var spawnPool = sync.Pool{New: func() any { return new(pendingSpawn) }}

// keepBuf keeps used, the request encoded in ps.buf (and grown from it),
// as ps's buffer for its next request; one grown past maxPooledBuf is
// dropped (reuseBuf, putBuf's bound), so that a pooled pending spawn holds
// no more than a pooled buffer would. The requester.
func (ps *pendingSpawn) keepBuf(used []byte) {
	if !reuseBuf(ps.buf, used) {
		ps.buf = nil
	}
}

// pendingSpawns is a peer's table of the spawn requests sent on its link
// and not yet answered. Only the peer asked may answer (its handler looks
// in its own table), and when the link goes its requests fail together
// (failSpawns takes them all and closes the table: a request added later
// is refused, and fails at once). A spawner waits for each reply, so a
// link most often has one request pending at a time: it is kept in a
// field (one), with no map insert, look-up and delete, and their hashing,
// at every spawn (about 400 instructions on the requester); more go in a
// map made for them.
type pendingSpawns struct {
	mu     sync.Mutex
	one    *pendingSpawn            // guarded by mu
	more   map[uint64]*pendingSpawn // guarded by mu
	closed bool                     // guarded by mu: the link is gone (takeAll)
}

// add puts ps, ps.req set, in the table; false, and it does not, once
// the table is closed. The requester.
func (t *pendingSpawns) add(ps *pendingSpawn) bool {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false
	}
	if t.one == nil {
		t.one = ps
	} else {
		if t.more == nil {
			t.more = make(map[uint64]*pendingSpawn)
		}
		t.more[ps.req] = ps
	}
	t.mu.Unlock()
	return true
}

// take takes request req out of the table and returns it; nil if it is
// not there (never sent on this link, or taken first). Any goroutine.
func (t *pendingSpawns) take(req uint64) *pendingSpawn {
	t.mu.Lock()
	ps := t.one
	if ps != nil && ps.req == req {
		t.one = nil
	} else if ps = t.more[req]; ps != nil {
		delete(t.more, req)
	}
	t.mu.Unlock()
	return ps
}

// takeAll empties and closes the table and returns what it held. Any
// goroutine.
func (t *pendingSpawns) takeAll() []*pendingSpawn {
	var taken []*pendingSpawn
	t.mu.Lock()
	t.closed = true
	if t.one != nil {
		taken = append(taken, t.one)
		t.one = nil
	}
	for _, ps := range t.more {
		taken = append(taken, ps)
	}
	t.more = nil
	t.mu.Unlock()
	return taken
}

// len reports how many requests the table holds. Tests.
func (t *pendingSpawns) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.more)
	if t.one != nil {
		n++
	}
	return n
}

// requestSpawn asks node to start actor, waiting for the reply. pe is
// node's peer if the caller found one (nil: looked up, and dialled if need
// be, here).
func (n *Node) requestSpawn(parent *Process, pe *peer, node, actor string, args []any, link bool) (PID, error) {
	if pe == nil || !pe.isUp() {
		var err error
		if pe, err = n.peerFor(node); err != nil {
			return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, err)
		}
	}
	ps := spawnPool.Get().(*pendingSpawn)
	ps.req, ps.parent, ps.link = n.nextReq.Add(1), parent, link
	ps.w.Arm()
	if !pe.spawns.add(ps) {
		// The link went down, and its requests have failed (failSpawns).
		ps.w.DisarmKeep()
		ps.parent = nil
		spawnPool.Put(ps)
		return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, ErrNotConnected)
	}
	answered := false // set once no Wake can come any more (the request is answered or taken back)
	defer func() {
		if !answered {
			// Unwinding a panic (of a frame handler the wait ran while
			// reading the link itself): the request may still be in
			// the table, and its Waiter is mid-wait; neither may be
			// reused.
			pe.spawns.take(ps.req)
			return
		}
		ps.w.DisarmKeep() // its eventfd stays with it, in the pool (mailbox.Waiter.DisarmKeep)
		ps.req, ps.parent, ps.link, ps.res = 0, nil, false, spawnResult{}
		spawnPool.Put(ps)
	}()
	var from PID
	if parent != nil {
		from = parent.pid
	}
	if ps.buf == nil {
		ps.buf = getBuf()
	}
	sr := wire.SpawnRequest{Req: ps.req, From: from, Actor: actor, Link: link && parent != nil}
	item, err := sr.AppendWithArgs((*ps.buf)[:0], args)
	if err == nil && len(item) > maxControlFrame {
		err = fmt.Errorf("%w: spawn arguments encode to %d bytes, over %d", codec.ErrLimit, len(item), maxControlFrame)
	}
	// The spawn timeout bounds the whole request: the wait for the
	// parent's companion items below, and the reply's.
	deadline := monoDeadline(monoNanos() + int64(n.opts.spawnTimeout))
	if err == nil {
		// A spawn request goes on the link's own connection (the peer
		// answers and starts the process from there), so it waits for the
		// parent's companion items, if any, to be in (companion.go).
		if err = pe.awaitAcked(from.ID, deadline); err != nil && errors.Is(err, errLinkEnded) {
			err = newPeerError("", err)
		}
	}
	if err == nil {
		err = pe.sendMessage(from.ID, item) // copied into the queue, or written, before it returns
	}
	ps.keepBuf(item)
	// The request is in the table, and failSpawns, which runs once the
	// link is down, fails it unless its answer came first: a send that
	// went out on a link going down needs no look at pe.down.
	switch {
	case err != nil && pe.spawns.take(ps.req) != nil:
		answered = true
		return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, err)
	case err != nil:
		ps.w.Wait(time.Time{}) // answered meanwhile: the answer stands
	case !waitReply(pe, &ps.w, pe.replyDeadline(deadline, n.opts.spawnTimeout), deadline):
		if pe.spawns.take(ps.req) != nil {
			answered = true
			return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, context.DeadlineExceeded)
		}
		parkedWait(pe, &ps.w, time.Time{}) // the answer is on its way
	}
	answered = true
	if r := ps.res; r.err != nil {
		return PID{}, fmt.Errorf("spawn %s on %s: %w", actor, node, r.err)
	}
	return ps.res.pid, nil
}

// monoDeadline is a deadline on monoNanos' clock: set with one clock read
// (time.Now and time.Time.Add were about 150 instructions of a spawn), and
// made a time.Time only for a wait that needs one (Time).
type monoDeadline int64

// Time returns d as a time.Time, never later than d. Any goroutine.
func (d monoDeadline) Time() time.Time {
	now := time.Now() // read first: the monotonic reading after it is the later one
	return now.Add(time.Duration(int64(d) - monoNanos()))
}

// keptDeadline is a link's read deadline for its spawns' inline waits
// (peer.replyDL), as a time.Time and on monoNanos' clock.
type keptDeadline struct {
	at   time.Time
	mono monoDeadline // at
}

// replyDeadline is the read deadline of the inline wait for a spawn's
// reply on pe's link (waitReply), the spawn's own deadline being deadline
// (now plus span, the spawn timeout). A read deadline set on the link's
// socket costs about 370 instructions (the netpoller's timer moved, its
// locks), a fifth of what a spawn added to a round trip on the requester,
// so the link keeps one (replyDL) and moves it only when less than half
// of span is left of it: the inline wait may then end up to span/2 before
// the spawn's deadline, and the wait goes on parked until that deadline
// (waitReply). It is never later than deadline. Any goroutine.
func (pe *peer) replyDeadline(deadline monoDeadline, span time.Duration) time.Time {
	if kept := pe.replyDL.Load(); kept != nil && kept.mono <= deadline && int64(deadline-kept.mono) <= int64(span/2) {
		return kept.at
	}
	return pe.keepReplyDeadline(deadline)
}

// keepReplyDeadline makes d pe's kept reply deadline and returns it as a
// time.Time: a clock read and an allocation every span/2 of spawning at
// most. Any goroutine.
func (pe *peer) keepReplyDeadline(d monoDeadline) time.Time {
	k := &keptDeadline{at: d.Time(), mono: d}
	pe.replyDL.Store(k)
	return k.at
}

// failSpawns ends the spawns pending on pe, which went down, with
// ErrNotConnected, and closes pe's table: a spawn on pe that comes later
// fails at once. A reply handled before the connection ended took its
// request first (frames are handled before OnClose): it wins. Called
// once the link is down (OnClose's goroutine, after pe.down is closed).
func (n *Node) failSpawns(pe *peer) {
	for _, ps := range pe.spawns.takeAll() {
		ps.res = spawnResult{err: ErrNotConnected}
		ps.w.Wake()
	}
}

// maxControlFrame bounds the control frames this node builds (spawn
// requests, exit and down reasons), well under the peer's frame limit.
const maxControlFrame = 1 << 20

// maxReason bounds an exit reason on the wire; a larger one travels as the
// start of its text.
const maxReason = 64 << 10

// wireReason makes an exit reason encodable and bounded: errors travel as
// their text, anything unencodable or too large as (the start of) its text.
func wireReason(reason any) any {
	switch r := reason.(type) {
	case error:
		return truncate(r.Error())
	case nil, codec.Atom, bool, int, int64, uint64, float64:
		return reason
	case string:
		return truncate(r)
	}
	b, err := codec.AppendTerm(nil, reason)
	if err != nil || len(b) > maxReason {
		return truncate(fmt.Sprint(reason))
	}
	return reason
}

func truncate(s string) string {
	if len(s) > maxReason {
		return s[:maxReason]
	}
	return s
}
