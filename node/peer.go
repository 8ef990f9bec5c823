package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
)

// A peer is one authenticated connection to another node.
//
// Invariants.
//
//  1. The connection's input is handled by whoever has its read duty, one
//     at a time: its event loop, or a process reading it inline
//     (loop.Conn.ReadInline). reader and reasm are that reader's, and it
//     sets heard (ticks: tick.go). Nothing on the loop blocks: control
//     frames go out with EnqueueNoWait, and work that can wait (the
//     cleanup after a connection ends) runs on its own goroutine.
//  2. up closes once attach has the connection (the peer counts as up),
//     started once attach has queued the peer's node list (peerUp) and
//     handed the conn to its loop: learnNodes introduces newcomers only to
//     started peers, so no introduction overtakes that list. down closes
//     once, when the connection has ended and its cleanup is done. A
//     reservation made by admit that never attaches closes lapsed instead,
//     as unreserve drops it. A peer is never reused.
//  3. Process sends (loop.Conn.Enqueue) may block on backpressure; control
//     frames (EnqueueNoWait) never do: past the hard limit of queued bytes
//     the peer is cut as a slow consumer, which every watcher sees as
//     noconnection.

type peer struct {
	n           *Node
	name        string
	incarnation uint64
	features    wire.Features
	outbound    bool

	conn     link          // set by attach, before up closes (link.go)
	up       chan struct{} // closed once attach has the conn: the peer counts as up
	started  chan struct{} // closed once attach has queued the node list and handed the conn to its loop
	lapsed   chan struct{} // closed by unreserve: admitted, never attached, dropped from the table
	down     chan struct{} // closed when ended and cleaned up
	replaced bool          // guarded by n.peersMu: a newer connection took over
	lapse    *time.Timer   // drops an admitted reservation never attached
	upFlag   atomic.Bool
	closing  atomic.Bool   // set by OnClose first: the peer no longer counts as up
	fragID   atomic.Uint64 // fragmented-message ids, per link
	order    laneOrder     // senders with bulk items queued (lanes.go)
	// Companion connections (companion.go).
	out        atomic.Pointer[companion] // this node's, once up
	quota      *wire.ReassemblyQuota     // the reassembly limits of the link, both connections
	compMu     sync.Mutex
	compDialed bool       // guarded by compMu: this node's companion is being dialled or is up
	compFails  int        // guarded by compMu: dials of it that failed
	compRetry  time.Time  // guarded by compMu: no dial before (companionRetryAfter)
	compClosed bool       // guarded by compMu: the link ended, no companion attaches
	in         *companion // guarded by compMu: the peer's companion
	inAdmitted uint64     // guarded by compMu: the admission of the peer's companion, if any (one per link)
	admitSeq   uint64     // guarded by compMu: admissions so far
	syncs      syncs      // Syncs waiting for the peer's Ack
	// linkMsgsOut counts the messages drained on the link's own
	// connection: the tick rule's "carried messages" (tick.go), since
	// input on a companion is no sign of life of the link's connection.
	linkMsgsOut atomic.Uint64
	// heard: input came since the last sweep. Set by the link's reader
	// (OnData: a load, and a store once a sweep), cleared by the sweep,
	// which dates it (lastSeen): the reader reads no clock (tick.go).
	heard    atomic.Bool
	lastSeen atomic.Int64 // monoNanos of the last sweep that found heard set, or of attach
	// downReason, once set, is why the link ends (events.go).
	downReason atomic.Pointer[codec.Atom]
	why        codec.Atom // the down reason OnClose settled on; read after down closes or by peerGone
	stats      peerStats

	// Loop-owned.
	reader   *wire.FrameReader
	rx              // the connection's deliveries (handle.go)
	regParts []byte // a registry frame arriving in parts (registry.go)
	// groupParts is a groups frame arriving in parts (groups.go).
	groupParts []byte
	listed     bool // a node list arrived on this link (learnNodes)
	joined     bool // this node joined the cluster through the peer (peerUp)
	// relations counts the links and monitors this peer's processes added
	// on local processes since the last count of them (peerlimits.go).
	relations atomic.Int64
	// toStart holds processes spawned in this callback, started by
	// startAll once the loop wrote their replies (handle.go).
	toStart  []*Process
	startAll func()

	handle *peerHandle // cleared at close

	// The link's idle starter (spawn_start.go): the one that reads the
	// link inline for the next spawn request (claimed with a
	// compare-and-swap, one at a time), and the goroutines that wait for
	// the link's input for themselves (a process's inline wait, a remote
	// spawn's reply), for which that starter yields the link.
	starterReads atomic.Pointer[starter]
	ownWaits     atomic.Int32

	// The spawn requests sent on the link and not yet answered (signal.go),
	// and the read deadline their inline waits share (replyDeadline).
	spawns  pendingSpawns
	replyDL atomic.Pointer[keptDeadline]

	// spawned is the count of the processes this peer's node spawned here
	// (peerlimits.go, spawnCount): the link's hold on it, taken under
	// n.spawnedMu at the link's first spawn request and given up there when
	// the link ends, so that a spawn request charges it without the lock.
	// spawnedEnded, guarded by n.spawnedMu, says the link has ended: it
	// takes no hold again.
	spawned      atomic.Pointer[spawnCount]
	spawnedEnded bool

	// Owned by the node's tick sweep (tick.go).
	tickSeq  uint64 // ticks sent
	tickMark uint64 // stats.msgsOut at the last sweep
	idleFor  int    // sweeps since the last message or tick sent
}

func (n *Node) newPeer(info *peerInfo, outbound bool) *peer {
	lim := n.opts.reassembly
	lim.MaxMessage = n.limits.MaxMessage
	pe := &peer{
		n:           n,
		name:        info.name,
		incarnation: info.incarnation,
		features:    info.features,
		outbound:    outbound,
		up:          make(chan struct{}),
		started:     make(chan struct{}),
		lapsed:      make(chan struct{}),
		down:        make(chan struct{}),
		reader:      wire.NewFrameReader(0, info.features),
		handle:      new(peerHandle),
	}
	pe.quota = wire.NewReassemblyQuota(lim) // the companion's reassembler draws on it too
	pe.rx = rx{pe: pe, reasm: pe.quota.NewReassembler()}
	pe.handle.p.Store(pe)
	return pe
}

// peerHandle is what a sending process caches (Process.Send): it names the
// peer until the peer closes, then nothing, so a process that sent once and
// idles pins these 8 bytes, not a dead connection and its buffers. (A weak
// pointer did the same at 12 ns a send.)
type peerHandle struct{ p atomic.Pointer[peer] }

// isUp reports whether the peer's connection is started and not ending.
// closing is set before down can close (OnClose sets it first), so it
// alone answers "not ending": two atomic loads, no look at the channel (the
// peer table is read this way N times per link while a mesh forms).
func (pe *peer) isUp() bool { return pe.upFlag.Load() && !pe.closing.Load() }

// waitUp waits until the peer's connection has started.
func (pe *peer) waitUp(ctx context.Context) error {
	select {
	case <-pe.up:
		return nil
	case <-pe.down:
		return fmt.Errorf("connect %s: %w: connection ended", pe.name, ErrNotConnected)
	case <-pe.lapsed:
		return fmt.Errorf("connect %s: %w: the admitted connection never came up", pe.name, ErrNotConnected)
	case <-ctx.Done():
		return fmt.Errorf("connect %s: %w: %w", pe.name, ErrNotConnected, ctx.Err())
	}
}

// owns reports whether pid belongs to this peer's node incarnation: a peer
// may only speak for its own processes, and never for this node's.
func (pe *peer) owns(pid PID) bool {
	return pid.Node == pe.name && pid.Incarnation == pe.incarnation && pid.Node != pe.n.self
}

// ownsRef reports whether ref was made by this peer's node incarnation.
func (pe *peer) ownsRef(ref Ref) bool {
	return ref.Node == pe.name && ref.Incarnation == pe.incarnation && ref.Node != pe.n.self
}

// batchFrame caps a batch frame's payload. The receiver handles a frame
// only once all of it has arrived, and its event loop reads in batches of
// 64 KiB: a larger frame made it gather into a buffer grown for the frame
// (80, 160, 320 KiB) and dropped after it, so at wire's default of 256 KiB a
// stream of small messages cost the receiving node those large
// allocations, their zeroing and copying, and the scavenger returning
// their pages, a frame at a time (together 15-20% of its CPU in a profile
// of meshbench's one-way stream). A frame of at most the read batch fits
// the loop's buffers once they have grown, and the receiver starts on a
// frame sooner. 16 KiB frames (a TLS record each) measured no better, and
// in their profile the copy into the receiving process's mailbox cost
// twice as much: that process then reads right behind the loop.
const batchFrame = 64 << 10

// drainFunc returns the connection's drain hook: the link's batcher, which
// also counts what it sends (once per drain, not once per send).
// maxBatch caps a batch frame's payload (1: every message a frame of its
// own, as a companion's Acks count them). link says the drain is the link's
// own connection's, whose messages also count for the tick rule
// (pe.linkMsgsOut).
func (pe *peer) drainFunc(maxBatch int, link bool) func(dst []byte, items [][]byte) []byte {
	b := wire.NewBatcher(wire.BatcherOptions{Features: pe.features, MaxBatch: maxBatch})
	var msgs, bytes, frames uint64 // b's counters at the last drain
	return func(dst []byte, items [][]byte) []byte {
		dst = b.Drain(dst, items)
		if link {
			pe.linkMsgsOut.Add(b.Messages - msgs)
		}
		pe.stats.msgsOut.Add(b.Messages - msgs)
		pe.stats.bytesOut.Add(b.MessageBytes - bytes)
		pe.n.metrics.drained(&pe.stats, b.Messages-msgs, b.Frames-frames)
		msgs, bytes, frames = b.Messages, b.MessageBytes, b.Frames
		return dst
	}
}

// sendMessage queues an encoded message item from the local process from
// (0: none), waiting while the peer's queue is full (backpressure on this
// sender only). It goes behind from's bulk items, if any, on the
// companion or the bulk lane (companion.go, lanes.go).
func (pe *peer) sendMessage(from uint64, item []byte) error {
	return pe.sendOn(pe.smallRoute(from), from, item, true)
}

// sendControl queues a control frame without ever waiting; safe on a loop.
// With hasFrom it speaks for the local process from and goes behind its
// bulk items, if any (companion.go, lanes.go).
func (pe *peer) sendControl(from uint64, hasFrom bool, item []byte) {
	r := route{l: pe.conn}
	if hasFrom {
		r = pe.smallRoute(from)
	}
	if err := pe.sendOnNoWait(r, from, item); err != nil {
		pe.n.log.Debug("control frame not sent", "peer", pe.name, "err", err)
	}
}

// control encodes the control frame c into a pooled buffer and sends it
// without waiting; safe on a loop. Every control frame the runtime builds
// is encodable (wire's Append cannot fail).
func (pe *peer) control(c wire.Control) {
	bp := getBuf()
	b := c.Append((*bp)[:0])
	from, ok := controlSender(c)
	pe.sendControl(from, ok, b)
	putBuf(bp, b)
}

var errTickTimeout = errors.New("node: peer tick timeout")

// tooSilent is the tick-silence rule: a peer last heard from at lastSeen
// (monoNanos) is cut at now once it has been silent for longer than
// timeout. A lastSeen "after" now (an attach while the sweep ran) counts
// as no silence. The sweep checks it every twelfth of the timeout, and
// dates input by the first sweep that finds it (peer.heard), up to a
// twelfth late, so a silent peer is cut between timeout and 14/12 timeout
// after its last input.
func tooSilent(now, lastSeen int64, timeout time.Duration) (silent time.Duration, cut bool) {
	silent = max(time.Duration(now-lastSeen), 0)
	return silent, silent > timeout
}

// monoStart is monoNanos's origin.
var monoStart = time.Now()

// monoNanos is a monotonic clock in nanoseconds, for lastSeen: one clock
// read where time.Now makes two (the wall clock and the monotonic one).
func monoNanos() int64 { return int64(time.Since(monoStart)) }

// Buffers for encoding frames, pooled: the send path allocates nothing in
// steady state. Oversized buffers are not kept.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

const maxPooledBuf = 256 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte, used []byte) {
	if reuseBuf(bp, used) {
		bufPool.Put(bp)
	}
}

// reuseBuf stores used, the bytes written into *bp (and grown from it),
// back in bp for its next use, and reports true; one grown past
// maxPooledBuf is not kept (false), so that a buffer kept for reuse, in
// the pool or elsewhere, stays within that bound.
func reuseBuf(bp *[]byte, used []byte) bool {
	if cap(used) > maxPooledBuf {
		return false
	}
	*bp = used[:0]
	return true
}
