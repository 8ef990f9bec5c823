package node

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/mailbox"
)

// Incoming: what a peer's frames do on this node. Everything here runs on
// the peer's event loop, or on a process's goroutine that reads the link
// inline while it waits for a reply (replywait.go; never both at once), in
// frame order (OnData → handleFrame → handleX), and never blocks: answers
// go out as control frames (peer.control), which never wait. The peer's
// companion connection (companion.go) has its own reader and deliveries
// (rx) on a bulk loop, beside the link's: its process frames (messages,
// links, exits, monitors, downs) reach the same handlers concurrently with
// the link's, so those take only the node's locks and the peer's atomics;
// the link-owned state (registry and groups parts, spawns' starts, the
// node list) is reached from the link's connection only.
//
// A peer speaks only for its own processes and references (peer.owns,
// peer.ownsRef): a frame that names another node's process as its sender is
// ignored.

// OnData parses and handles every whole frame in b. Runs on the loop, or
// on the goroutine that holds the link's read duty (loop.Conn.ReadInline).
func (pe *peer) OnData(c *loop.Conn, b []byte) (int, error) {
	if !pe.heard.Load() {
		pe.heard.Store(true) // once a sweep: the sweep dates it (tick.go)
	}
	used := 0
	defer func() { pe.rx.endRead(used) }() // the counters, once per call
	if c != nil {
		// A process reading the link inline is found without the table
		// (deliver) and gets its own message without the mailbox's queue
		// (flushRun).
		pe.rx.self = holderProcess(c)
	}
	for used < len(b) {
		f, k, err := pe.reader.Next(b[used:])
		if err != nil {
			if errors.Is(err, wire.ErrNeedMore) {
				break
			}
			return used, fmt.Errorf("node: from %s: %w", pe.name, err)
		}
		used += k
		pe.stats.framesIn.Add(1)
		if f.Kind == wire.KindFragment && c != nil {
			c.ShortenReceive() // bulk data flows in: short kernel queues (once)
		}
		if err := pe.handleFrame(f); err != nil {
			pe.overLimit(err)
			return used, fmt.Errorf("node: from %s: %w", pe.name, err)
		}
	}
	return used, nil
}

// holderProcess returns the process reading c inline (its mailbox's
// InlineReader reads c: replywait.go), when OnData runs on its goroutine;
// nil when c's loop reads.
func holderProcess(c *loop.Conn) *Process {
	if mb, ok := c.Holder().(*mailbox.Mailbox); ok {
		if r, ok := mb.InlineReader().(*inlineReader); ok {
			return (*Process)(r)
		}
	}
	return nil
}

// handleFrame acts on one frame: the one dispatch of incoming frames, by
// kind, each decoded into its wire type (on the stack) and handed to the
// handleX of its kind. An error closes the connection: only input that
// breaks the protocol returns one.
func (pe *peer) handleFrame(f wire.Frame) error {
	n, lim := pe.n, &pe.n.limits
	switch f.Kind {
	case wire.KindBatch, wire.KindFragment:
		err := pe.reasm.Feed(f, pe.deliver)
		pe.flushRun()
		return err
	case wire.KindTick:
		var m wire.Tick
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleTick(pe, &m)
	case wire.KindTock:
		var m wire.Tock
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleTock(pe, &m)
	case wire.KindLink:
		var m wire.Link
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		return n.handleLink(pe, &m)
	case wire.KindUnlink:
		var m wire.Unlink
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleUnlink(pe, &m)
	case wire.KindExit:
		var m wire.Exit
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleExit(pe, &m)
	case wire.KindMonitor:
		var m wire.Monitor
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		return n.handleMonitor(pe, &m)
	case wire.KindDemonitor:
		var m wire.Demonitor
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleDemonitor(pe, &m)
	case wire.KindDown:
		var m wire.Down
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleDown(pe, &m)
	case wire.KindSpawnRequest:
		m := wire.SpawnRequest{From: PID{Node: pe.name}} // the requester's name, most likely: no look-up (Decode)
		actor, err := m.DecodeName(f.Payload, lim)
		if err != nil {
			return err
		}
		return n.handleSpawnRequest(pe, &m, actor)
	case wire.KindSpawnReply:
		m := wire.SpawnReply{PID: PID{Node: pe.name}} // the process's node: no look-up (Decode)
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleSpawnReply(pe, &m)
	case wire.KindNodes:
		var m wire.Nodes
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleNodes(pe, &m)
	case wire.KindGoodbye:
		var m wire.Goodbye
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleGoodbye(pe, &m)
	case wire.KindGroups:
		var m wire.Groups
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		return n.handleGroups(pe, m.Payload)
	case wire.KindPublish:
		var m wire.Publish
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handlePublish(&m)
	case wire.KindRegistry:
		var m wire.Registry
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		return n.handleRegistry(pe, &m)
	case wire.KindSync:
		var m wire.Sync
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleSync(pe, &m)
	case wire.KindAck:
		var m wire.Ack
		if err := m.Decode(f.Payload, lim); err != nil {
			return err
		}
		n.handleAck(pe, &m)
	default:
		return fmt.Errorf("%w: unexpected frame %v", codec.ErrCorrupt, f.Kind)
	}
	return nil
}

// handleTick notes a peer's tick (OnData already did: it arrived) and
// echoes one in tockEvery as a tock carrying the same payload (tick.go).
func (n *Node) handleTick(pe *peer, t *wire.Tick) {
	if t.Seq%tockEvery == 0 {
		pe.control(&wire.Tock{Seq: t.Seq, Time: t.Time})
	}
}

// handleTock records the round trip of one of this node's ticks.
func (n *Node) handleTock(_ *peer, t *wire.Tock) {
	n.metrics.tickRTTObserve(time.Duration(time.Now().UnixNano() - t.Time))
}

// overLimit counts and logs a cut for err when it is a peer over one of
// its limits (a wire.LimitError). On a goroutine handling pe's frames.
func (pe *peer) overLimit(err error) {
	var le *wire.LimitError
	if errors.As(err, &le) {
		pe.n.metrics.peerCut(le.Limit)
		pe.n.log.Warn("peer cut: over a limit", "peer", pe.name, "limit", le.Limit, "asked", le.Asked, "max", le.Max)
	}
}

// endRead publishes the counters of one read of r's connection (once per
// call, not once per message, for used bytes) and drops the target cache,
// which lasts one call: a connection that goes quiet must not keep a dead
// process, and what its mailbox still holds, alive.
func (r *rx) endRead(used int) {
	r.pe.stats.bytesIn.Add(uint64(used))
	r.pe.stats.msgsIn.Add(r.msgsIn)
	r.msgsIn = 0
	r.lastTo, r.self = nil, nil
}

// rx is what one connection's input needs to deliver messages: its
// reassembler and the run of messages held for one process. A peer has one
// for its connection; a companion connection from the peer has its own
// (companion.go), read on its own loop. Owned by the goroutine that reads
// the connection (its loop, or a goroutine holding its read duty).
type rx struct {
	pe     *peer
	reasm  *wire.Reassembler
	lastTo *Process // the last message's target in this OnData call (see deliver)
	msgsIn uint64   // messages delivered in this OnData call (published at its end)
	run    [][]byte // encoded messages for runTo not pushed yet (see deliver)
	runTo  *Process
	self   *Process // the process reading the connection inline in this OnData call, if any
	// reply is the buffer a spawn reply is encoded in (handleSpawnRequest),
	// kept for the next: spawn requests come only on the link's own
	// connection (a companion refuses them), so its reader is the one
	// user, and the send copies the frame (EnqueueNoWait) before it
	// returns. A pooled buffer's Get and Put cost about 110 instructions
	// a spawn. It holds one reply at a time, at most a few hundred bytes
	// (an unknown actor's name is at most 255).
	reply []byte
	// actor is the actor the last spawn request on this connection named,
	// as defined at the count of definitions actorGen (n.actorsGen):
	// checked by the next request with one load and the name's comparison
	// in place of the definitions' read lock and map probe (about 140
	// instructions a spawn). nil for none. A definition replaced or
	// removed stays reachable from here (with what its function holds)
	// until the connection's next spawn request or its end: one per link.
	actor    *actorDef
	actorGen uint64
}

// actorFor returns the actor defined as name (actorNamed), through the
// connection's kept one when name is its name and no definition changed
// since it was kept: a peer that spawns most often spawns one actor. A
// Define that has returned has added to n.actorsGen, so a request read
// after it does not get what it replaced or removed (the allow-list,
// docs/trust.md); one that has not returned is concurrent with the
// request, which may go before it. On the connection's reader.
func (r *rx) actorFor(n *Node, name []byte) *actorDef {
	if d := r.actor; d != nil && r.actorGen == n.actorsGen.Load() && d.name == string(name) {
		return d
	}
	def, gen := n.actorNamed(name)
	r.actor, r.actorGen = def, gen
	return def
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
// larger than maxEncodedDelivery is copied and queued on its own
// (pushLarge), so the mailbox's chunks stay small; the receiver decodes it
// either way.
func (r *rx) deliver(m wire.Message) error {
	n := r.pe.n
	if m.To == 0 {
		return r.deliverAddressed(m) // a name, a reply (addressed.go)
	}
	p := r.lastTo
	if p == nil || p.pid.ID != m.To {
		if s := r.self; s != nil && s.pid.ID == m.To {
			// The process running this very call: what the table holds
			// for m.To, or killed, its mailbox closed before it left the
			// table (die), which refuses the push as a miss would. No
			// read lock, no map look-up.
			p = s
		} else {
			p = n.procs.get(m.To)
		}
		r.lastTo = p
	}
	if p == nil {
		n.metrics.droppedNoProc.Add(1)
		return nil // the process is gone: like a local send to a dead pid
	}
	r.deliverTo(p, m.Term)
	return nil
}

// pushLarge hands a message larger than maxEncodedDelivery to t in a
// buffer of its own, which t decodes when it receives it: a large decode
// (up to the decode budget, limits.MaxExpansion times the message) must not
// hold the loop and every other message of the link. A reassembled message
// is already in a buffer of its own (owned: the Reassembler hands it over);
// else term points into the frame and is copied.
func (r *rx) pushLarge(t *Process, term []byte, owned bool) {
	r.flushRun() // what came before goes first
	if !owned {
		term = bytes.Clone(term)
	}
	if t.mb.Closed() || !t.mb.PushEncodedOwned(&r.pe.n.decoder, term) {
		r.pe.n.metrics.droppedNoProc.Add(1) // it died after the lookup
	}
}

// maxRun bounds the messages held for one push: a batch frame's worth of
// small messages (a 64 KiB frame holds about 900 of 64 bytes) goes to a
// stream's receiver in one PushEncodedRun, which wakes a parked receiver
// once, at its end. With a push every 64 messages, a receiver decoding
// faster than the loop parked and was woken (a futex call on each side)
// every 64 messages; the receiving node of the 64-byte throughput scenario
// spent about 10% less CPU a message with 1024 (docs/benchmarks.md). The
// held slice headers cost the peer 24 KiB once a frame has filled them.
const maxRun = 1024

// flushRun pushes the held run of encoded messages. On the goroutine
// that reads r's connection. A single message for the process that reads
// the connection inline is that process's own, on its own goroutine
// (mailbox.PushEncodedOwn: decoded there and then, not queued, when
// nothing is queued before it). That decode runs inside OnData, before
// the rest of that read's frames, those for other processes among them,
// are handled; the message is at most maxEncodedDelivery (larger ones go
// through pushLarge), so it holds them up for at most 16 KiB times the
// decode budget (limits.MaxExpansion), as a call reply's decode does
// (AddrReply).
func (r *rx) flushRun() {
	if len(r.run) == 0 {
		return
	}
	mb := &r.runTo.mb
	var ok bool
	if len(r.run) == 1 && r.runTo == r.self {
		ok = mb.PushEncodedOwn(&r.pe.n.decoder, r.run[0])
	} else {
		ok = mb.PushEncodedRun(&r.pe.n.decoder, r.run)
	}
	if !ok {
		r.pe.n.metrics.droppedNoProc.Add(uint64(len(r.run))) // it died after the lookup
	}
	clear(r.run)
	r.run, r.runTo = r.run[:0], nil
}

// maxEncodedDelivery: larger received messages are queued as a copy of
// their own (pushLarge) rather than into the mailbox's chunks.
const maxEncodedDelivery = 16 << 10

// decodeStreamed decodes a received message that has more queued behind it
// for the same process (mailbox.Decoder.DecodeSlab): its small strings are
// carved from the receiver's slab rather than allocated one by one. Runs
// on the receiving process's goroutine.
func (n *Node) decodeStreamed(b []byte, slab *[]byte) (any, error) {
	v, k, err := codec.DecodeTermSlab(b, &n.limits, slab)
	if err != nil {
		return nil, err
	}
	if k != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after the message term", codec.ErrCorrupt, len(b)-k)
	}
	return v, nil
}

// undecodable counts a received message this node could not decode (e.g.
// a user type it has not registered) and logs the first one. Not the link's
// fault: the message is dropped and nothing else is cut. Logged once per
// node: what peers send must not flood the log; the counter has the rest.
// decodeOnLoop decodes a message body on a peer's loop (a small call
// reply, a published message). A registered type's UnmarshalBinary is the
// user's code and may panic on input a peer chose; on a loop that panic
// would end the OS process, so it becomes an error wrapping
// codec.ErrCorrupt, as any message that does not decode.
func (n *Node) decodeOnLoop(b []byte) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: decoding panicked: %v", codec.ErrCorrupt, r)
		}
	}()
	return n.decoder.Decode(b)
}

func (n *Node) undecodable(err error) {
	n.metrics.decodeErrors.Add(1)
	if n.decodeWarned.CompareAndSwap(false, true) {
		n.log.Warn("message dropped: cannot decode (further ones are only counted)", "err", err)
	}
}

// handleLink handles a peer's process linking to a local one.
func (n *Node) handleLink(pe *peer, m *wire.Link) error {
	from, to := m.From, m.To
	if !pe.owns(from) {
		return nil
	}
	if t := n.local(to); t != nil && t.addLinkBy(from, true) {
		return pe.relationAdded()
	}
	pe.control(&wire.Exit{From: to, To: from, Reason: NoProc, Link: true})
	return nil
}

// handleUnlink removes a link a peer's process had with a local one.
func (n *Node) handleUnlink(pe *peer, m *wire.Unlink) {
	from, to := m.From, m.To
	if !pe.owns(from) {
		return
	}
	if t := n.local(to); t != nil {
		t.mu.Lock()
		if t.rel != nil {
			delete(t.rel.links, from)
		}
		t.mu.Unlock()
	}
}

// handleExit delivers a peer's process's exit signal to a local process.
func (n *Node) handleExit(pe *peer, x *wire.Exit) {
	if pe.owns(x.From) {
		n.exitSignal(x.From, x.To, x.Reason, x.Link)
	}
}

// handleMonitor handles a peer's process monitoring a local one. The ref
// must be one the peer made, so no peer can touch another node's monitors.
func (n *Node) handleMonitor(pe *peer, m *wire.Monitor) error {
	from, to, ref := m.From, m.To, m.Ref
	if !pe.owns(from) || !pe.ownsRef(ref) {
		return nil
	}
	if t := n.local(to); t != nil && t.addMonitor(ref, from) {
		return pe.relationAdded()
	}
	pe.control(&wire.Down{Ref: ref, Watcher: from, PID: to, Reason: NoProc})
	return nil
}

// handleDemonitor removes a monitor a peer's process held on a local one.
func (n *Node) handleDemonitor(pe *peer, m *wire.Demonitor) {
	from, to, ref := m.From, m.To, m.Ref
	if !pe.owns(from) || !pe.ownsRef(ref) {
		return
	}
	if t := n.local(to); t != nil {
		t.removeMonitor(ref)
	}
}

// handleDown handles the exit of a remote process a local one monitored.
func (n *Node) handleDown(pe *peer, d *wire.Down) {
	if !pe.owns(d.PID) {
		return
	}
	w := n.local(d.Watcher)
	if w == nil {
		return
	}
	w.mu.Lock()
	target, ok := w.rel.watchingRef(d.Ref)
	// A peer reports only on the monitor it holds: its target, or a name's
	// process (a stand-in with ID 0 of that node; see monitorName).
	ok = ok && (target == d.PID || target.ID == 0 && pe.owns(target))
	if ok {
		delete(w.rel.watching, d.Ref)
		// Pushed under the lock: once Demonitor has removed the entry, no
		// Down for it can arrive (call.go invariant 3).
		w.mb.Push(Down{Ref: d.Ref, PID: d.PID, Reason: d.Reason})
	}
	w.mu.Unlock()
}

// handleSpawnRequest starts a defined actor for a peer. Runs on the
// link's reader (the loop, or a goroutine reading the link inline): the
// new process is made (and linked) and the reply queued before the process
// runs, so the reply always precedes anything the process sends or its
// exit. When an idle starter reading the link inline read the request
// (spawn_start.go), that starter takes the process and runs it once it
// has given the link back. Otherwise the process starts once the loop has
// written the reply (afterFlush), on an idle starter when one waits, so
// that neither the start nor a thread it might wake delays the reply.
//
// Each process a peer spawns counts against its limit (peerlimits.go): a
// request past it cuts the peer.
//
// r comes from wire.SpawnRequest.DecodeName, actor is the name it returned
// (aliasing the frame: valid during this call only, and nothing may keep
// it; the unknown actor's reply copies it): looked up as bytes, it makes no
// string, and the
// process holds the actor's definition (task) rather than a closure, so
// that a spawn allocates here only what its process keeps: the process,
// its mailbox inside it (and its link's record, when it is linked; its
// arguments were decoded with the frame).
func (n *Node) handleSpawnRequest(pe *peer, r *wire.SpawnRequest, actor []byte) error {
	reply := wire.SpawnReply{Req: r.Req}
	var start *Process
	def := pe.rx.actorFor(n, actor)
	switch {
	case def == nil:
		reply.Code, reply.Err = wire.SpawnUnknownActor, "no actor "+string(actor)
	case r.Link && !pe.owns(r.From):
		reply.Code, reply.Err = wire.SpawnFailed, "link to a process of another node"
	default:
		var link PID
		if r.Link {
			link = r.From
		}
		sc, err := n.chargeSpawn(pe)
		if err != nil {
			return err
		}
		p, err := n.prepareSpawnBy(actorTask(def, r.Arguments()), link, sc)
		if err != nil {
			n.releaseSpawn(sc)
			reply.Code, reply.Err = wire.SpawnFailed, err.Error()
		} else {
			reply.PID, start = p.pid, p
		}
	}
	// Encoded here rather than through pe.control, whose interface
	// argument would move the reply to the heap: one allocation a spawn.
	pe.rx.reply = reply.Append(pe.rx.reply[:0])
	pe.sendControl(0, false, pe.rx.reply)
	if start != nil {
		// Read by an idle starter reading this link (spawn_start.go):
		// it runs the process itself once it has given the link back.
		if !pe.startOwn(start) {
			pe.startAfterFlush(start)
		}
		if r.Link {
			return pe.relationAdded()
		}
	}
	return nil
}

// startAfterFlush starts p once the loop has written the reply queued in
// this callback (afterFlush). The processes of one callback go in a list
// that one function, made once per peer, starts: a method value per spawn
// (p.start) would be an allocation. On the peer's loop.
func (pe *peer) startAfterFlush(p *Process) {
	pe.toStart = append(pe.toStart, p)
	if len(pe.toStart) > 1 {
		return // the list's run is already due
	}
	if pe.startAll == nil {
		pe.startAll = func() {
			for i, q := range pe.toStart {
				pe.toStart[i] = nil
				pe.n.startSpawned(pe, q)
			}
			pe.toStart = pe.toStart[:0]
		}
	}
	pe.afterFlush(pe.startAll)
}

// handleSpawnReply completes a pending remote spawn. Runs on the loop, in frame
// order: a link asked for is recorded here, before any exit signal of the new
// process (which follows the reply on the wire) is handled.
func (n *Node) handleSpawnReply(pe *peer, r *wire.SpawnReply) {
	ps := pe.spawns.take(r.Req) // pe's own table: only the node asked may answer
	if ps == nil {
		if r.Code == wire.SpawnOK && pe.owns(r.PID) {
			// The caller gave up: nobody will ever know this process.
			// Stop it rather than leave it orphaned.
			n.sendExit(PID{}, r.PID, Kill, false)
		}
		return
	}
	var res spawnResult
	switch r.Code {
	case wire.SpawnOK:
		if !pe.owns(r.PID) {
			res.err = fmt.Errorf("%w: spawn reply names %v", codec.ErrCorrupt, r.PID)
			break
		}
		res.pid = r.PID
		if ps.link && !ps.parent.addLink(r.PID) {
			n.sendExit(ps.parent.pid, r.PID, NoProc, true) // the parent died meanwhile
		}
	case wire.SpawnUnknownActor:
		res.err = fmt.Errorf("%w: %s", ErrUnknownActor, r.Err)
	default:
		res.err = fmt.Errorf("node: remote spawn failed: %s", r.Err)
	}
	ps.res = res
	ps.w.Wake()
}

// handleNodes takes a peer's node list: this node connects to the ones it
// does not know (membership.go).
func (n *Node) handleNodes(pe *peer, m *wire.Nodes) { n.learnNodes(pe, m.Names) }

// handleRegistry passes a peer's registry frame to the replica (registry.go).
func (n *Node) handleRegistry(pe *peer, m *wire.Registry) error {
	return n.registryFrame(pe, m.Payload)
}
