package node

// A peer is one authenticated connection to another node.
//
// Invariants.
//
//  1. The connection's input is handled on its event loop only: reader,
//     reasm, lastSeen's writer and tick state are loop-owned. Nothing on the
//     loop blocks: control frames go out with EnqueueNoWait, and work that
//     can wait (the cleanup after a connection ends) runs on its own
//     goroutine.
//  2. up closes once the connection is started; down closes once, when the
//     connection has ended and its cleanup is done. A peer is never reused.
//  3. Process sends (EnqueueWait) may block on backpressure; control frames
//     never do: past the hard limit of queued bytes the peer is cut as a
//     slow consumer, which every watcher sees as noconnection.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/loop"
)

type peer struct {
	n           *Node
	name        string
	incarnation uint64
	features    codec.Features
	outbound    bool

	conn     *loop.Conn    // set by attach, before up closes
	up       chan struct{} // closed when started
	down     chan struct{} // closed when ended and cleaned up
	replaced bool          // guarded by n.peersMu: a newer connection took over
	lapse    *time.Timer   // drops an admitted reservation never attached
	upFlag   atomic.Bool
	closing  atomic.Bool   // set by OnClose first: the peer no longer counts as up
	fragID   atomic.Uint64 // fragmented-message ids, per link
	stats    peerStats

	// Loop-owned.
	reader   *codec.FrameReader
	reasm    *codec.Reassembler
	lastSeen atomic.Int64 // unix nanos of the last input; written on the loop
	tickSeq  uint64
	ticker   *loop.Timer
	lastTo   *Process // the last message's target in this OnData call (see deliver)
	msgsIn   uint64   // messages delivered in this OnData call (published at its end)
	run      [][]byte // encoded messages for runTo not pushed yet (see deliver)
	runTo    *Process
	regParts []byte // a registry frame arriving in parts (registry.go)

	handle *peerHandle // cleared at close
}

func (n *Node) newPeer(info *peerInfo, outbound bool) *peer {
	lim := n.limits
	pe := &peer{
		n:           n,
		name:        info.name,
		incarnation: info.incarnation,
		features:    info.features,
		outbound:    outbound,
		up:          make(chan struct{}),
		down:        make(chan struct{}),
		reader:      codec.NewFrameReader(&lim, info.features),
		reasm:       codec.NewReassembler(0, &lim),
		handle:      new(peerHandle),
	}
	pe.handle.p.Store(pe)
	return pe
}

// peerHandle is what a sending process caches (Process.Send): it names the
// peer until the peer closes, then nothing, so a process that sent once and
// idles pins these 8 bytes, not a dead connection and its buffers. (A weak
// pointer did the same at 12 ns a send.)
type peerHandle struct{ p atomic.Pointer[peer] }

// attach wires the connection to the peer and starts it. The peer counts as
// up from here: items queued before the loop takes the connection over are
// flushed by it, and a connection that fails to start is cleaned up by
// OnClose like any other.
func (pe *peer) attach(c *loop.Conn) {
	n := pe.n
	c.SetHandler(pe)
	c.SetDrain(pe.drainFunc())
	n.peersMu.Lock()
	pe.conn = c // under peersMu: partition and retire read it there
	if pe.lapse != nil {
		pe.lapse.Stop()
	}
	var drop error
	switch {
	case n.isCutLocked(pe.name):
		drop = errPartitioned
	case pe.replaced:
		drop = errReplaced
	}
	n.peersMu.Unlock()
	pe.lastSeen.Store(time.Now().UnixNano())
	pe.upFlag.Store(true)
	close(pe.up)
	n.metrics.peerUp()
	n.log.Info("peer up", "peer", pe.name, "outbound", pe.outbound)
	n.peerUp(pe)
	c.Execute(pe.armTicker)
	c.Start()
	if drop != nil {
		// Partitioned (a test fault) or replaced by a newer connection
		// after admission, before there was a connection to close.
		_ = c.Close(drop)
	}
}

// isUp reports whether the peer's connection is started and not ending.
func (pe *peer) isUp() bool { return pe.upFlag.Load() && !pe.closing.Load() && !pe.isDown() }

func (pe *peer) isDown() bool {
	select {
	case <-pe.down:
		return true
	default:
		return false
	}
}

// waitUp waits until the peer's connection has started.
func (pe *peer) waitUp(ctx context.Context) error {
	select {
	case <-pe.up:
		return nil
	case <-pe.down:
		return fmt.Errorf("connect %s: %w: connection ended", pe.name, ErrNotConnected)
	case <-ctx.Done():
		return fmt.Errorf("connect %s: %w: %w", pe.name, ErrNotConnected, ctx.Err())
	}
}

// drainFunc returns the connection's drain hook: the link's batcher, which
// also counts what it sends (once per drain, not once per send).
func (pe *peer) drainFunc() func(dst []byte, items [][]byte) []byte {
	b := codec.NewBatcher(codec.BatcherOptions{Features: pe.features})
	var msgs, bytes uint64 // b's counters at the last drain
	return func(dst []byte, items [][]byte) []byte {
		dst = b.Drain(dst, items)
		pe.stats.msgsOut.Add(b.Messages - msgs)
		pe.stats.bytesOut.Add(b.MessageBytes - bytes)
		msgs, bytes = b.Messages, b.MessageBytes
		return dst
	}
}

// sendMessage queues an encoded message item, waiting while the peer's
// queue is full (backpressure on this sender only).
func (pe *peer) sendMessage(item []byte) error {
	if err := pe.conn.Enqueue(context.Background(), item); err != nil {
		return fmt.Errorf("send to %s: %w: %w", pe.name, ErrNotConnected, err)
	}
	return nil
}

// sendControl queues a control frame without ever waiting; safe on a loop.
func (pe *peer) sendControl(item []byte) {
	if err := pe.conn.EnqueueNoWait(item); err != nil {
		pe.n.log.Debug("control frame not sent", "peer", pe.name, "err", err)
	}
}

// control encodes a control frame with enc into a pooled buffer and sends it.
func (pe *peer) control(enc func([]byte) ([]byte, error)) {
	bp := getBuf()
	b, err := enc((*bp)[:0])
	if err != nil {
		// Every control payload the runtime builds is encodable (reasons
		// are made wire-safe first); this is a bug, not a peer's doing.
		pe.n.log.Error("encoding control frame", "peer", pe.name, "err", err)
	} else {
		pe.sendControl(b)
	}
	putBuf(bp, b)
}

// armTicker sends a tick every quarter of the tick timeout and cuts the peer
// once nothing has arrived for a whole timeout. Runs on the loop.
func (pe *peer) armTicker() {
	d := pe.n.opts.tickTimeout
	pe.ticker = pe.conn.AfterFunc(d/4, func() {
		silent := time.Duration(time.Now().UnixNano() - pe.lastSeen.Load())
		if silent > d {
			pe.n.log.Warn("peer silent past the tick timeout", "peer", pe.name, "silent", silent)
			_ = pe.conn.Close(fmt.Errorf("%w: silent for %v", errTickTimeout, silent))
			return
		}
		pe.tickSeq++
		seq := pe.tickSeq
		pe.control(func(b []byte) ([]byte, error) {
			t := codec.Tick{Seq: seq, Time: time.Now().UnixNano()}
			return t.Append(b, codec.KindTick)
		})
		pe.armTicker()
	})
}

var errTickTimeout = errors.New("node: peer tick timeout")

// OnData parses and handles every whole frame in b. Runs on the loop.
func (pe *peer) OnData(_ *loop.Conn, b []byte) (int, error) {
	pe.lastSeen.Store(time.Now().UnixNano())
	used := 0
	// The counters are published once per call, not once per message. The
	// target cache lasts one call: a link that goes quiet must not keep a
	// dead process, and what its mailbox still holds, alive.
	defer func() {
		pe.stats.bytesIn.Add(uint64(used))
		pe.stats.msgsIn.Add(pe.msgsIn)
		pe.msgsIn = 0
		pe.lastTo = nil
	}()
	for used < len(b) {
		f, k, err := pe.reader.Next(b[used:])
		if errors.Is(err, codec.ErrNeedMore) {
			break
		}
		if err != nil {
			return used, fmt.Errorf("node: from %s: %w", pe.name, err)
		}
		used += k
		if err := pe.handleFrame(f); err != nil {
			return used, fmt.Errorf("node: from %s: %w", pe.name, err)
		}
	}
	return used, nil
}

// handleFrame acts on one frame. An error closes the connection: only input
// that breaks the protocol returns one.
func (pe *peer) handleFrame(f codec.Frame) error {
	n := pe.n
	switch f.Kind {
	case codec.KindBatch, codec.KindFragment:
		err := pe.reasm.Feed(f, pe.deliver)
		pe.flushRun()
		return err
	case codec.KindTick:
		var t codec.Tick
		if err := t.Decode(f.Payload, &n.limits); err != nil {
			return err
		}
		pe.control(func(b []byte) ([]byte, error) { return t.Append(b, codec.KindTock) })
		return nil
	case codec.KindTock:
		var t codec.Tick
		if err := t.Decode(f.Payload, &n.limits); err != nil {
			return err
		}
		n.metrics.tickRTTObserve(time.Duration(time.Now().UnixNano() - t.Time))
		return nil
	}
	v, err := codec.DecodeControl(f, &n.limits)
	if err != nil {
		return err
	}
	switch m := v.(type) {
	case *codec.Link:
		if f.Kind == codec.KindUnlink {
			n.remoteUnlink(pe, m.From, m.To)
		} else {
			n.remoteLink(pe, m.From, m.To)
		}
	case *codec.Exit:
		if pe.owns(m.From) {
			n.exitSignal(m.From, m.To, m.Reason, m.Link)
		}
	case *codec.Monitor:
		if f.Kind == codec.KindDemonitor {
			n.remoteDemonitor(pe, m.From, m.To, m.Ref)
		} else {
			n.remoteMonitor(pe, m.From, m.To, m.Ref)
		}
	case *codec.Down:
		n.remoteDown(pe, m)
	case *codec.SpawnRequest:
		n.remoteSpawn(pe, m)
	case *codec.SpawnReply:
		n.spawnReplied(pe, m)
	case *codec.Nodes:
		n.learnNodes(m.Names)
	case *codec.Registry:
		return n.registryFrame(pe, m.Payload)
	default:
		return fmt.Errorf("%w: unexpected frame %v", codec.ErrCorrupt, f.Kind)
	}
	return nil
}

// owns reports whether pid belongs to this peer's node incarnation: a peer
// may only speak for its own processes.
func (pe *peer) owns(pid PID) bool {
	return pid.Node == pe.name && pid.Incarnation == pe.incarnation
}

// ownsRef reports whether ref was made by this peer's node incarnation.
func (pe *peer) ownsRef(ref Ref) bool {
	return ref.Node == pe.name && ref.Incarnation == pe.incarnation
}

// deliver hands one received message to its local target. Runs on the
// loop, inside the reassembler's in-order delivery. The last target is
// cached: streams to one process skip the table. A cached process that has
// died meanwhile refuses the push (its mailbox is closed), which is what a
// table miss would have given.
//
// The message goes into the mailbox encoded, and the receiving process
// decodes it (mailbox.PushEncodedRun): decoding on the loop made the loop,
// one thread for all of a link's traffic, the bound on its throughput.
// Consecutive messages to one process are pushed as one run, when the frame
// ends or the target changes (handleFrame flushes; the bytes they point to,
// the frame or the reassembler's buffers, are valid until then). A message
// larger than maxEncodedDelivery is decoded here instead, so the mailbox's
// chunks stay small.
func (pe *peer) deliver(m codec.Message) error {
	n := pe.n
	p := pe.lastTo
	if p == nil || p.pid.ID != m.To {
		p = n.procs.get(m.To)
		pe.lastTo = p
	}
	if p == nil {
		n.metrics.droppedNoProc.Add(1)
		return nil // the process is gone: like a local send to a dead pid
	}
	pe.msgsIn++
	if len(m.Term) <= maxEncodedDelivery {
		if p != pe.runTo {
			pe.flushRun()
			pe.runTo = p
		}
		pe.run = append(pe.run, m.Term)
		if len(pe.run) == maxRun {
			pe.flushRun()
		}
		return nil
	}
	pe.flushRun() // what came before goes first
	v, err := m.Decode(&n.limits)
	if err != nil {
		n.undecodable(err)
		return nil
	}
	if !p.mb.Push(v) {
		n.metrics.droppedNoProc.Add(1) // it died after the lookup
	}
	return nil
}

// maxRun bounds the messages held for one push.
const maxRun = 64

// flushRun pushes the held run of encoded messages. Loop only.
func (pe *peer) flushRun() {
	if len(pe.run) == 0 {
		return
	}
	if !pe.runTo.mb.PushEncodedRun(&pe.n.decoder, pe.run) {
		pe.n.metrics.droppedNoProc.Add(uint64(len(pe.run))) // it died after the lookup
	}
	clear(pe.run)
	pe.run, pe.runTo = pe.run[:0], nil
}

// maxEncodedDelivery: larger received messages are decoded on the loop.
const maxEncodedDelivery = 16 << 10

// undecodable counts a received message this node could not decode (e.g.
// a user type it has not registered) and logs the first one. Not the link's
// fault: the message is dropped and nothing else is cut. Logged once per
// node: what peers send must not flood the log; the counter has the rest.
func (n *Node) undecodable(err error) {
	n.metrics.decodeErrors.Add(1)
	if n.decodeWarned.CompareAndSwap(false, true) {
		n.log.Warn("message dropped: cannot decode (further ones are only counted)", "err", err)
	}
}

// OnClose ends the peer. Runs on the loop (or off it for a connection closed
// before start); the cleanup, which may wait, runs on its own goroutine.
//
// The registry forgets the peer's names here, synchronously, before a newer
// connection with that node can start (retire waits for this one's end):
// so a NodeDown never wipes the names a newer connection brought.
func (pe *peer) OnClose(_ *loop.Conn, reason error) {
	n := pe.n
	// From here on the registry's Connected says no for this peer, so a
	// Register racing the NodeDown below cannot address a closed link.
	pe.closing.Store(true)
	pe.handle.p.Store(nil)
	wasUp := pe.upFlag.Load()
	n.peersMu.Lock()
	cur := n.peers[pe.name]
	n.peersMu.Unlock()
	if wasUp && (cur == pe || cur == nil || !cur.upFlag.Load()) {
		// No newer connection has come up (a replacing one waits for
		// this cleanup before it starts; see retire).
		n.global.NodeDown(pe.name)
	}
	n.peersMu.Lock()
	if n.peers[pe.name] == pe {
		delete(n.peers, pe.name)
		n.publishPeersLocked()
	}
	n.peersMu.Unlock()
	if pe.ticker != nil {
		pe.ticker.Stop()
	}
	if wasUp {
		n.metrics.peerDown()
		n.log.Info("peer down", "peer", pe.name, "reason", reason)
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer close(pe.down)
		n.peerGone(pe)
	}()
}

// Buffers for encoding frames, pooled: the send path allocates nothing in
// steady state. Oversized buffers are not kept.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

const maxPooledBuf = 256 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte, used []byte) {
	if cap(used) > maxPooledBuf {
		return
	}
	*bp = used[:0]
	bufPool.Put(bp)
}
