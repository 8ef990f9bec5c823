// Package node is the Mesh runtime a program holds: a node with its
// processes, PIDs, spawn, send and receive, links and monitors, and (across
// the network) the cookie handshake, heartbeats, full-mesh membership, remote
// spawn and the routing of sends to other nodes.
//
// A node is started with [Start] and stopped with [Node.Stop]. Code runs
// inside processes: [Node.Run] runs a function as a process, [Node.SpawnFunc]
// and [Process.Spawn] start more. Processes talk only by messages.
//
// The rest of this comment is a map of the package for those who read or
// change its code.
//
// # Files
//
// Each file holds one direction or one concern, so a name says which way it
// goes:
//
//   - node.go: the Node, Start and Stop, spawn and the routing of sends and
//     exit signals (local or remote).
//   - process.go: every Process method; a process's links, monitors and death.
//   - handle.go: incoming. A peer's frames, one handleX per kind of frame
//     (handleLink, handleExit, handleMonitor, handleDown, handleSpawnRequest,
//     handleSpawnReply, handleNodes, handleRegistry, handleTick ...), and the
//     delivery of received messages to mailboxes.
//   - signal.go: outgoing. sendRemote (a message), sendLink, sendUnlink,
//     sendMonitor, sendDemonitor, sendExit, sendDown, requestSpawn.
//   - peer.go: the link to one peer: its state, control frames.
//   - lanes.go: a process's items on a link stay behind its own bulk items
//     (large messages' fragments), whatever they are addressed to.
//   - companion.go: a second connection per link for this node's large
//     messages (dialled at the first one), past which small items and
//     signals go; the same per-process order across the two connections.
//   - membership.go: Connect and dialling, the peer table, a peer coming up
//     (attach, peerUp) and going (OnClose, peerGone), gossip.
//   - tick.go: heartbeats, one sweep per node; events.go: NodeUp/NodeDown
//     events, their reasons and the goodbye frame.
//   - redial.go: seeds, discovery and the one dial worker behind every
//     background connect.
//   - admit.go: the engine, the handshake hook and admission.
//   - link.go: the link seam (below): link, what a peer needs of its
//     connection, and linker, where a node gets its connections; memnet.go:
//     the in-memory linker tests put a node on (withNetwork).
//   - registry.go: the registry replica's host and its frames; groups.go:
//     process groups, wired to their replica (internal/groups) the same way.
//   - table.go: the process table; metrics.go, options.go, errors.go,
//     terms.go, name.go.
//
// # Life of a peer
//
//  1. Dial or accept. [Node.Connect], a send to an unconnected node
//     (peerFor) and the dial worker all go through connect, which shares one
//     dial per name, then dial → n.links.dial (loop.Engine.Dial). Inbound
//     connections come from the engine's listener.
//  2. The handshake, on the engine's handshake goroutine for that
//     connection (hook): TLS, then handshake.Run (hellos and cookie proofs),
//     then admission: the acceptor decides (admit) whether this connection
//     becomes the peer's (one per name; the smaller name's dial wins), reserves
//     the name in n.peers and sends one status byte; the dialler reads it.
//     A connection from a newer incarnation retires the old one first.
//  3. Up (attach): the handler and the batcher are set, up closes, peerUp
//     sends the node list and the registry snapshot (a node that just
//     joined through this one is then introduced to its other peers whose
//     own node list has gone out, learnNodes), MonitorNodes watchers get
//     NodeUp and the connection starts.
//  4. Steady state: input on the peer's event loop (OnData). Every twelfth
//     of the tick timeout the node's tick sweep sends a tick to each peer
//     it sent nothing to for the last five sweeps, and cuts a peer silent
//     for longer than the timeout (tooSilent).
//  5. Down (OnClose, on the loop): the peer stops counting as up, the
//     registry forgets the peer's names (unless a newer connection is up),
//     MonitorNodes watchers get NodeDown with its reason, the peer leaves
//     the table and the dial worker hears of the loss; then a
//     background goroutine runs peerGone (links get exit signals with reason
//     noconnection, monitors get Down, MonitorNode watchers get NodeDown) and
//     closes down. A peer is never reused: a new connection is a new peer.
//
// # Who runs what
//
//   - A peer's event loop (one OS thread shared by many peers): OnData and
//     every handleX, deliver and flushRun, OnClose, the drain (the link's
//     batcher). Nothing here waits: answers go out as control
//     frames with EnqueueNoWait, and the cleanup that may wait (peerGone)
//     runs on its own goroutine. A remote spawn's process is made on the loop
//     (handleSpawnRequest) but runs on its own goroutine.
//   - A process's goroutine (or Run's caller): the actor's code and the
//     calls it makes, Send, Link, Monitor, Spawn, Receive. A remote Send may
//     dial and may wait on the link's backpressure; a remote Spawn waits for
//     the reply.
//   - Background goroutines, counted in n.bg and waited for by Stop: one
//     peerGone per ended peer, the tick sweep, the dial worker and its
//     dials, the discovery poll. Timers: a reservation's lapse (time.AfterFunc), Run's context.
//   - The engine's goroutines: the accept loop and one handshake goroutine
//     per connection in progress (hook, admit).
//
// # The send path
//
// Process.Send: a local target is looked up (cached in lastDst) and its
// mailbox takes the value itself. A remote target: the peer (cached through
// a peerHandle, else peerFor, which may dial) → a small value of built-in
// types (strings, numbers, atoms, PIDs, tuples of them: send_direct.go) is encoded
// straight into the peer's queue (loop.Conn.EnqueueAppend); any other value
// → sendRemote encodes into the process's scratch buffer
// (codec.AppendMessage) → loop.Conn.Enqueue copies it into the peer's
// queue. Both wait while the queue is at its high mark (a
// message over fragmentAbove goes as fragments on the link's companion
// connection, or its bulk lane until that is up, sendFragmented, and the
// sender's later items follow it there until it is handled or drained:
// companion.go, lanes.go) → the loop
// (or, on an idle connection, the sender itself) drains the queue through
// drainFunc (codec.Batcher: one batch frame) → TLS → write(2).
//
// # The link seam
//
// A peer holds its connection as a link (link.go): the eight methods of
// *loop.Conn it calls (Enqueue, EnqueueNoWait, Queued, Close, Shutdown,
// SetHandler, SetDrain, Start). A node gets its links from a linker: the
// engine's (dial is loop.Engine.Dial, inbound links arrive through the
// engine's accept with the hook's *peerInfo as their Info), or, in tests,
// an internal/memlink network's (memnet.go), chosen by the unexported
// option withNetwork. Decided so because:
//
//   - The seam is where node already met loop, and nowhere else: the
//     handshake hook and admission stay exactly as they are on the engine,
//     and the in-memory linker reuses admit (the dial rule, reservations,
//     replacing an older incarnation) with the hello passed as a value. So
//     membership, partitions and everything above a connection are tested
//     over memory with the production code paths; TLS, the cookie proofs on
//     the wire, the engine's admission limits and stalled sockets keep their
//     tests on the real engine (startNamed without onNet).
//   - memlink serves loop.Handler itself (its callbacks get a nil
//     *loop.Conn, which peer never reads), so peer has one OnData and one
//     OnClose for both, and memlink reports loop's errors (ErrClosed,
//     ErrPeerClosed, ErrSlowConsumer ...), which node already classifies.
//   - Partitions are a property of the network (memlink.Network.Partition,
//     Freeze, Heal), not of node: production code has no test-only fault
//     path left.
//   - The option is unexported: no user picks a transport. A test in this
//     package passes onNet(nw) (memnet_test.go); nodetest, whose users
//     test their own actors, gets it through internal/memnode (node sets
//     it when it loads) and offers it as NewMemCluster, with Partition and
//     Heal: splits are what a user cannot stage on loopback TCP, while
//     NewCluster stays on TLS for what crosses a real wire.
//
// The send path pays one interface call for it (pe.conn.Enqueue; loop's
// Enqueue was never inlined): benchstat of bench's Remote send and
// ping-pong before and after is in the commit that made the seam, within
// noise.
//
// # The receive path
//
// The peer's loop → OnData → codec.FrameReader.Next, one frame at a time →
// handleFrame: a batch or fragment goes to the reassembler (codec
// Reassembler.Feed), which calls deliver for each whole message in order;
// deliver keeps consecutive messages to one process as a run and flushRun
// pushes the run, still encoded, into the mailbox (PushEncodedRun); the
// receiving process decodes each message in Receive (n.decoder). A message
// over maxEncodedDelivery is copied and queued on its own (pushLarge,
// PushEncodedOwned), and decoded by its receiver too. Any other frame
// goes to its handleX.
//
// # Locks
//
// The order in which locks may nest, each line verified against the code;
// a lock not on the left of a line takes nothing after it:
//
//	global Registry.mu -> n.peersMu          registryHost.Connected, Broadcast (upPeers)
//	global Registry.mu -> procTable shard     registryHost.Alive (n.local)
//	global Registry.mu -> Process.mu          registryHost.Alive (markNamed)
//	global Registry.mu -> loop Conn queue     registryHost.Broadcast, SnapshotTo (peer.control)
//	groups replica mu  -> the same four      groupsHost, as registryHost
//	n.peersMu          -> n.nodeMonMu         Process.MonitorNode
//	n.nodeMonMu        -> procTable shard     nodeEvent (n.local), then a mailbox push
//	Process.mu         -> Process.mu          linkLocal only, in PID.ID order
//
// Leaves: a peer's spawns.mu (signal.go), n.spawnedMu (peerlimits.go), n.actorsMu, the
// process table's shard locks, the dial worker's mu, a peer's compMu,
// laneOrder.mu and syncs.mu (companion.go), the mailbox's locks, and
// loop's own (loop's doc gives their order). Never: Process.mu -> Registry.mu (die releases
// p.mu before ProcessExited), n.peersMu -> Registry.mu (OnClose calls
// NodeDown holding nothing), anything -> a wait for an event loop: no lock
// of this package or of global is held across Enqueue (which may wait), a
// mailbox wait, a dial or a handshake.
//
// The registry's lock is held across Broadcast, and Broadcast can reach
// write(2): control frames go out with loop.Conn.EnqueueNoWait, which on an
// idle connection may seal and write the queue on the calling goroutine
// (loop's direct writes). This is allowed, on purpose: the write is
// non-blocking (what the socket does not take is left to the loop), so the
// lock waits for CPU work bounded by what that one queue holds, never for a
// peer; a peer that stops reading fills its queue to the hard limit and is
// cut (loop.ErrSlowConsumer), and the registry goes on. Holding the lock
// is what keeps each peer's registry frames in commit order, with the
// snapshot first, without a second sequence. The test
// TestRegistryWritesDoNotWaitOnAPeerThatStopsReading holds the package to
// it.
package node
