// Package loop runs Mesh's network event loops: one gnet v2 engine per node,
// its loops sharded over cores, serving inbound and outbound peer sockets
// alike. Senders append to a per-connection send buffer; the owning
// loop drains it into one batched TLS write and one socket write per
// wake-up, and decrypts input straight from the loop's read buffer. The
// package knows nothing of actors.
//
// # Life of a connection
//
//  1. Accept (one goroutine per Listen, a Go net.Listener) or Dial (the
//     caller's goroutine, net.Dialer bounded by ctx and the handshake
//     timeout) gives a net.Conn.
//  2. TLS 1.3 and then the post-TLS [Hook] run in blocking mode over a
//     tlsconn.Adapter, on that short-lived goroutine, with the socket's
//     deadline set to the handshake deadline (default 5 s). The engine is
//     the deadline's one owner: it arms it, moves it into the past when the
//     engine closes or Dial's ctx ends, and clears it after the hook; the
//     hook cannot change it (tlsconn.Adapter.SetHandshakeDeadline). An
//     inbound connection must send its first bytes within the first-byte
//     timeout (default 1 s). Inbound connections are bounded while silent
//     (256), while talking (64) and per source address (16); at a bound the
//     oldest connection of its kind makes way for the newest, so idle
//     sockets cannot lock out a real dialler (admission.go). Dials have their
//     own slots (Dial waits for one), which inbound connections never take.
//     A handshake that misses its deadline is dropped (ErrHandshakeTimeout).
//     Loops never see a connection before this point, so nothing a peer
//     does before it is authenticated (stall, trickle, garbage) touches a
//     loop or another peer.
//  3. The node receives the *Conn (Dial's result or Listen's accept
//     callback), sets a Handler and calls Start. Start switches the adapter
//     to loop-fed mode and enrols the socket with gnet (Client.EnrollContext:
//     gnet dups the fd, closes the net.Conn, and picks the loop with the
//     fewest connections). Enrolling only at Start means no input piles up
//     in gnet before a handler exists: the kernel's socket buffer holds it.
//  4. OnOpen, on the loop, first drains what tls.Conn buffered during the
//     handshake (records the hook read ahead), runs calls queued before
//     Start (Close, timers), and flushes items enqueued before Start: the
//     sender that won the drain token before the conn had a loop hands it
//     over (Conn.handToLoop), and takes it back to drain itself if the loop
//     appeared meanwhile, so the queue is drained once.
//  5. Steady state: reads and every tls.Conn Read happen on the owning
//     loop, or on a goroutine waiting for the conn's input that took the
//     read duty from the idle loop (see Inline reading); writes happen on
//     the loop or, for a conn found idle, on the sender (see Direct
//     writes). Input:
//     gnet's read buffer is fed to the adapter and tls.Conn copies the
//     ciphertext once into its raw input (the adapter follows the record
//     framing and gives the feed's last record apart, so a pass whose
//     feed ends on a record boundary stops after the Read that opened
//     that record, without a Read that would only say it would block);
//     plaintext is gathered (up to 64 KiB) and offered to
//     Handler.OnData; unconsumed bytes are kept per conn and offered
//     again with more (bounded by WithMaxInputPending).
//     Output: see below.
//  6. Close (any goroutine, first reason sticks) runs on the loop:
//     close_notify, then gnet closes the socket and calls OnClose, which
//     delivers Handler.OnClose exactly once, on the loop. A conn closed
//     before Start gets OnClose on the closing goroutine instead.
//
// # Output and backpressure
//
// Conn.Enqueue copies the item into the conn's send queue, pooled 64 KiB
// chunks, under a mutex held for that copy only (no allocation in steady
// state; queue.go says why this beat a lock-free list of pooled nodes);
// EnqueueAppend lets a bounded encoder that runs no user code append the
// item in place under that mutex instead (one copy fewer), or, when both
// lanes are empty and the scheduled flag is free, takes that flag first
// and, on a conn a direct write may go to (below), encodes the item into
// the direct writer's own buffer and seals it alone, never queued. Only the
// sender whose CAS flips the conn's scheduled flag from false to true
// schedules the conn on its loop; the loop's ready list wakes gnet (one
// task) only when it was empty and the loop is not already inside one of
// our callbacks, so an OnData that answers by enqueueing is flushed at the
// end of the same callback without any wake-up.
//
// A conn's queue has two lanes. Enqueue and EnqueueNoWait feed the urgent
// lane; EnqueueBulk feeds the bulk lane, for data that may wait behind later
// items (the later fragments of a large message). A drain that takes bulk
// items takes every urgent item (one without them takes at most 256 KiB of
// urgent items, see below) and about 32 KiB of bulk (bulkShare; at least
// one item, and at least a quarter of that however many urgent bytes
// there are), bulk taken first and written last, so an item enqueued
// before a bulk item is always written before it and a small message
// waits behind one quantum of bulk data, not behind megabytes of it. Each
// lane keeps its order. A sender that must keep its own later items behind
// its bulk items puts them on the bulk lane too, until BulkPassed says the
// last of its bulk items was drained (the ticket EnqueueBulk returned).
//
// The lanes only decide while the data is still in the conn's queue: what
// the socket took goes out first come, first served. So while bulk data
// flows the engine keeps the kernel's queues short (WithSocketBuffers): at
// most 16 KiB unsent (TCP_NOTSENT_LOWAT; the send buffer held 3 MB) while
// the bulk lane has items, and a receive buffer of 64 KiB (autotuned up to
// tcp_rmem's maximum, 32 MiB on the test machine, it held 4 MB of a
// stream) once the handler says bulk data arrives (Conn.ShortenReceive).
// Bulk data then waits where the lanes can pass it. Until then the
// kernel's settings stay, which a stream of small items needs.
//
// Better still, bulk data goes on a connection of its own: a conn marked
// bulk-only (Conn.SetBulkOnly, before Start; a node's companion
// connection) keeps the kernel's queues for its life and is served by the
// engine's bulk loops (as many as its loops, made at the first such
// Start), which no conn for small items shares. Its reads (decryption, a large
// message's reassembly in the handler) and its writes then never hold up
// the loop that serves a small item's conn: sharing a loop with a stream
// cost a small round trip about 300 µs at the median in the head-of-line
// benchmark, against about 50 on a loop of its own (docs/latency.md).
//
// The loop drains the queued items of a conn in passes: each takes the
// urgent lane up to 256 KiB (all of it when bulk items go too) and the
// bulk lane's share, SetDrain's function (default: concatenation) turns
// them into one plaintext run, tls.Conn seals it into 16 KiB records
// appended to the loop's output buffer, and one gnet Write sends it (gnet
// keeps what the socket does not take) before the next pass.
//
// # Direct writes
//
// Waking an idle loop costs an eventfd write and an OS-thread wake-up. So
// the sender that wins the scheduled flag (the drain token) drains the
// queue itself when the conn is idle: direct is set (the loop sets it only
// with gnet's outbound buffer empty and clears it before each of its own
// drains), the loop is not inside one of our callbacks (then the flush at
// its end is free), no drain by the loop (or a reading process) ended in
// the last directIdleGap (5 us), and no direct write to a conn of that
// loop started in the last directSpacing (20 us; this also spaces a
// conn's own direct writes, so their ends are not recorded: a sender
// whose writes each take longer than the difference may write a few in a
// row). A stream thus settles on the loop, where items batch: the first
// push after a drain comes within nanoseconds of it. An EnqueueAppend (or
// an Enqueue or EnqueueNoWait, through sendIdle) that finds its conn started, both lanes empty and the token free takes the
// token before it queues anything and, if the same tests allow a direct
// write, never queues its item (no queue lock, chunk or drain of the
// queue: appendHeld in direct.go); else it queues the item and hands the
// token to the loop. The empty lanes keep each sender's order: every
// earlier item is drained, and a drain in progress clears direct before
// it gives the token up. An encoder that fails or panics there gives the
// token back. The direct writer seals with tls.Conn Write and writes the
// ciphertext with one write(2) on a dup of the socket (gnet may close its
// own fd at any time; the dup is reference counted and closed by its last
// user). The dup is made lazily: a conn gets one on the loop when a sender
// wanted a direct write and found none twice within a second (until then
// those sends wake the loop), and gives it back after 5 s without a direct
// write, so an idle conn (ticks every few seconds) holds one descriptor,
// not two; the process's dups stay under a quarter of its descriptor limit
// (direct.go). What the socket does not take is kept as spill and the token
// goes to the loop, which sends the spill before anything else; direct
// writes stay off until gnet's buffer drains. After writing, the sender
// releases the token and rechecks queued bytes, closing and pending output,
// handing the token to the loop if any.
//
// Why tls.Conn allows this: its Write and Read take separate mutexes (out
// and in), and the token makes Write (and Close, and the drain function)
// run on one goroutine at a time. A KeyUpdate makes Read write, under the
// out mutex, so its record is appended to the adapter's output (itself
// under a mutex) in sequence order, and whoever holds the token sends all
// of that output in order: the loop after a Read takes the token if it is
// free; else the holder sees the pending output after its release. Close
// (close_notify) is done only by the token's holder on the loop, so it is
// never concurrent with a Write (tls.Conn would otherwise skip it).
//
// Memory per conn is bounded by two marks (WithWaterMarks). Enqueue waits
// while the conn's queued bytes are at the high mark, until the loop brings
// them below the low mark (or ctx ends, or the conn closes): only that
// peer's senders wait. The loop stops draining a conn while gnet holds more
// than the high mark of unsent ciphertext, and rechecks it on a timer with
// a backoff from 1 ms to 32 ms (gnet does not report when its buffer
// drains). Each lane has that high mark. So a conn holds at most about
// high plus one item per sender in each lane, and high plus one drain in
// gnet's buffer. EnqueueNoWait
// never waits: its items may take the queue up to the hard limit, four
// times high, where the conn is closed with ErrSlowConsumer instead.
//
// # Inline reading
//
// A goroutine waiting for what a conn's input will bring (a process that
// sent a request and waits for the reply) may read the conn itself
// (Conn.ReadInline): while the loop is idle in Go's netpoller it takes the
// conn's read duty, masks the socket's input in gnet's epoll instance,
// waits for the socket in the netpoller, and runs the read path (TLS open,
// Handler.OnData for every frame, for whoever they are for) on its own
// goroutine until its own message is there; then it gives the duty back.
// The reply so reaches its waiter with no hand-off between goroutines, as
// a net.Conn reader's would. When nothing needs the duty home the holder
// leaves it lingering, the socket's input still masked, and the conn's
// next waiter takes it with no system call (a steady ping-pong makes no
// epoll_ctl). Nothing needs it home only while no goroutine is parked
// for input the loops read for it, nor reads another conn inline
// (Engine.ParkBegin, which a node's processes call when they park
// without reading inline, reclaims lingering duties at once); a lingering
// duty not taken again within a period is reclaimed too (input nobody
// waits for, such as a peer's tick, waits that long: 10 to 20 ms), and at
// once when the loop must write through gnet or close. The loop stays the conn's one
// writer through gnet: before it writes through gnet it recalls the duty,
// since gnet sets the socket's input events again when it buffers output.
// OnClose waits until the duty is back, so Handler.OnClose never overlaps
// an OnData.
// The rules, and why each holds, are at the top of inline.go.
//
// A loop with a single conn reads that conn the same way when it is idle
// (idle.go, waitSocket): it holds the duty itself, waits for the socket in
// the netpoller rather than for gnet's epoll instance (an epoll inside
// the netpoller's, one more level for every wake-up), and handles the
// input where it woke; a process that wants to read inline takes the duty
// over from it, and anything gnet must see (a task, a close, a second
// conn, a write the socket did not take) sends the loop back to gnet.
//
// # Checking the streams (build tag meshdebug)
//
// Built with the meshdebug tag (make test runs the loop, node and tlsconn
// suites so, as make debugtest does alone; make watchdog loops a node
// test under it), every conn's ciphertext is followed
// (debug_on.go, and tlsconn's): each record tls.Conn seals is opened
// again with the conn's own secret (a key log), what each write path
// (gnet, a direct writer, the loop beside a holder) hands the socket is
// compared with what was sealed, in order, and so is what the peer's read
// path feeds its tls.Conn when the peer is a conn of the same process;
// after each read pass the tls.Conn must hold exactly the bytes after the
// last record it opened (none, for a pass that stopped on the adapter's
// word that it would block). The rules above are checked too (one drain token
// holder, one reader, gnet's buffer empty under a direct write, a drain
// scheduled and begun only with the token taken). The
// first byte out of place panics with the stream's recent history. Normal
// builds compile the hooks to nothing (debug_off.go).
//
// On the build before bf22136 it reports the read that stopped early
// (docs/latency.md, "The bad record MAC: a read that stopped early") at
// the next feed, before tls.Conn fails the record: "the loop's tls.Conn
// holds 8115 bytes of a record it takes to start at 2713504 (seq 190),
// where the sender sealed none", the holder's pass ending without using
// up its feed just before.
//
// # Timers
//
// One goroutine per engine keeps a heap of deadlines (Conn.AfterFunc) and
// runs each due function on its conn's loop. No goroutine per connection.
//
// # Files
//
// engine.go: the engine, Listen, Dial and the handshake; eventloop.go: a
// loop's ready list and gnet's callbacks; idle.go: an idle loop's wait in
// Go's netpoller (on its sole conn's socket, or on gnet's epoll); conn.go: the Conn type, Start and
// loop calls; send.go: Enqueue, the drain and backpressure; direct.go: direct
// writes; read.go: the input path; inline.go (inline_linux.go): inline
// reading; close.go: the close ladder and close_notify;
// queue.go: the send queue; timer.go: the timer heap; debug_on.go
// (debug_off.go): the meshdebug checks.
//
// # Ownership and locks
//
//   - A Conn's loop-only fields (see conn.go) are touched only on its loop;
//     tls.Conn and the adapter belong to the handshake goroutine until
//     Start, then to the loop. The input side of them (tls.Conn's Read,
//     the adapter's feed, leftover, readDropped, Handler.OnData) belongs to the read
//     duty's holder: the loop, or a goroutine reading inline.
//   - Locks, in the order they may nest: Engine.mu, then nothing;
//     Conn.mu, then nothing; Conn.waitMu, loopState.mu, the timer heap's
//     mutex and an inline resource's ctxMu (held around the read
//     deadline's set that pokes a holder) are leaves. No lock is held
//     across I/O, a gnet call, a TLS call or a Handler call.
//   - Engine.Close: marks closed, closes listeners, cancels handshakes and
//     waits for every goroutine it started, closes every conn and waits for
//     their OnClose, stops the timer goroutine, then the loops. No task
//     reaches a loop after that (an eventfd number could be reused).
//
// # Latency
//
// gnet's loops wait in epoll_wait outside Go's netpoller, so waking an idle
// loop costs an eventfd write and an OS thread wake-up; direct writes
// remove that on the send side. After input, a loop with nothing left to do
// waits in Go's netpoller instead (idle.go): gnet's own wait began with a
// runtime.Gosched that woke an idle thread for nothing on every burst. On
// the receive side the reply used to wake the loop's goroutine, which then
// woke the consumer goroutine (two hand-offs where net.Conn has one);
// inline reading (above) removes the first for a waiting consumer.
// Two processes, 64-byte ping-pong, one run (go test -run '^$' -bench
// 'Transport/pingpong' -benchtime 200000x -count 3 ./bench/): p50 loop
// 37-39 us, net.Conn+crypto/tls 21-22 us (1.7-1.8x; 1.9x before direct
// writes); loop client to a net.Conn peer 30-32 us, net.Conn client to a
// loop peer 24.5-25 us. One-way 64-byte stream, 1 sender: 6.6-9.6 M/s
// against 4.0-6.6 M/s. A runtime.Gosched after each OnTraffic (so the
// woken consumer runs on the loop's thread) cut the in-process p99 from
// about 175 to 40 us but changed nothing across processes and cost the
// stream about 30%: not kept.
package loop
