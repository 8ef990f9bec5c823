package loop

// The per-connection send queue: the items of every sender, copied under a
// mutex into 64 KiB chunks, with the end offset of each item. The drain
// token's holder takes every chunk at once (take) or the leading chunks up
// to a byte bound (takeBytes: the bulk lane's share, a loop pass's
// quantum); once drained they go back to a shared pool. In steady state nothing is allocated, each item costs one
// copy and one uncontended lock, and a pool round trip happens once per
// chunk, not once per item.
//
// Why chunks under a lock and not a lock-free list of pooled nodes (the
// first design): every node went through sync.Pool from the sender's P to
// the loop's P and back, and the cross-P steal in Get cost more than the
// lock (38 ns against ~15 ns a message in the two-process benchmark's
// profile; docs/design.md). Why chunks and not one growing buffer: a buffer
// that grew to the high-water mark during a burst would stay with its conn
// (or be reallocated by doubling after every drain); chunks return to the
// pool, so an idle conn holds none.
//
// Invariants:
//   - push may run on any goroutine; take, and the chunks it returns, belong
//     to the holder of the conn's drain token.
//   - A push completes under mu before its sender looks at the conn's
//     scheduled flag, so an item is either taken by a drain that started
//     after it or seen by the sender that then schedules one (Conn.push).
//     The one item not pushed first is an EnqueueAppend's, Enqueue's or
//     EnqueueNoWait's on a started conn with empty lanes (Conn.appendHeld,
//     through Conn.sendIdle for the latter two): its sender takes the flag
//     first, then either writes the item itself, never queued, or pushes
//     it still holding the flag and schedules the conn; if its encoder
//     fails or panics, nothing is queued and it gives the flag up as a
//     direct writer does (Conn.releaseToken: the conn is scheduled if
//     other senders queued items meanwhile).
//   - An item never spans chunks: c.b[c.ends[i-1]:c.ends[i]] is item i of
//     chunk c. An item larger than a chunk gets a chunk of its own size,
//     which is not pooled.
//   - mu is a leaf lock, held only to copy one item of at most chunkSize
//     bytes (a larger one is copied into its own chunk before), or for
//     pushAppend's encoder to append one of at most maxAppendItem bytes
//     (EnqueueAppend: a bounded encoding that runs no user code).
//   - An oversized chunk after a regular one is never appended to by push:
//     the next item finds no room in it (it is full) and takes a new
//     chunk. pushAppend may append to one that an encoder grew past its
//     max (it has spare capacity then); such a chunk is never pooled.
//   - A chunk of getChunk (EnqueueBulkFill) belongs to its one caller
//     until pushChunk, which gives it up: it is filled outside mu by that
//     caller alone, and afterwards it is like any other queued chunk
//     (push may append to it while it is the last one and has room). It
//     goes back to the pool only empty and unreferenced: when the fill
//     queued nothing, or when append moved the item to a larger buffer.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

const chunkSize = 64 << 10

type chunk struct {
	b    []byte
	ends []int
}

var chunkPool = sync.Pool{New: func() any { return &chunk{b: make([]byte, 0, chunkSize)} }}

// putChunk recycles a drained chunk.
func putChunk(c *chunk) {
	if cap(c.b) != chunkSize {
		return // an oversized item's own chunk
	}
	c.b, c.ends = c.b[:0], c.ends[:0]
	chunkPool.Put(c)
}

type sendQueue struct {
	mu     sync.Mutex
	chunks []*chunk // the last one is the one being filled
	pushed uint64   // items pushed so far: the last item's sequence number
}

// push appends a copy of item and returns its sequence number in the queue
// (1 for the first item ever pushed). Any goroutine.
func (q *sendQueue) push(item []byte) uint64 {
	if len(item) > chunkSize {
		// Its own chunk, made and filled before taking the lock: a loop
		// taking the queue must not wait for a multi-megabyte copy.
		c := &chunk{b: append(make([]byte, 0, len(item)), item...), ends: []int{len(item)}}
		q.mu.Lock()
		q.chunks = append(q.chunks, c)
		q.pushed++
		seq := q.pushed
		q.mu.Unlock()
		return seq
	}
	q.mu.Lock()
	var c *chunk
	if n := len(q.chunks); n > 0 {
		c = q.chunks[n-1]
	}
	if c == nil || cap(c.b)-len(c.b) < len(item) {
		c = chunkPool.Get().(*chunk)
		q.chunks = append(q.chunks, c)
	}
	c.b = append(c.b, item...)
	c.ends = append(c.ends, len(c.b))
	q.pushed++
	seq := q.pushed
	q.mu.Unlock()
	return seq
}

// pushChunk queues the items of c, a chunk its caller filled (getChunk)
// and gives up, and returns the sequence number of its last item. Any
// goroutine.
func (q *sendQueue) pushChunk(c *chunk) uint64 {
	q.mu.Lock()
	q.chunks = append(q.chunks, c)
	q.pushed += uint64(len(c.ends))
	seq := q.pushed
	q.mu.Unlock()
	return seq
}

// getChunk returns an empty chunk with room for at least n bytes: a pooled
// one up to chunkSize, else one of its own. Any goroutine.
func getChunk(n int) *chunk {
	if n > chunkSize {
		return &chunk{b: make([]byte, 0, n)}
	}
	return chunkPool.Get().(*chunk)
}

// takeBytes moves the leading chunks holding at most max bytes (always at
// least one, if any) to dst, and returns dst, their bytes and their items.
// Holder of the drain token; give the chunks back with putChunk once
// drained.
func (q *sendQueue) takeBytes(dst []*chunk, max int) ([]*chunk, int, int) {
	q.mu.Lock()
	n, total, items := 0, 0, 0
	for n < len(q.chunks) && (n == 0 || total+len(q.chunks[n].b) <= max) {
		total += len(q.chunks[n].b)
		items += len(q.chunks[n].ends)
		n++
	}
	dst = append(dst, q.chunks[:n]...)
	rest := copy(q.chunks, q.chunks[n:])
	clear(q.chunks[rest:])
	q.chunks = q.chunks[:rest]
	q.mu.Unlock()
	return dst, total, items
}

// take removes every queued chunk and installs spare (emptied) as the
// queue's chunk list. Holder of the drain token; give the chunks back with
// putChunk once drained.
func (q *sendQueue) take(spare []*chunk) []*chunk {
	q.mu.Lock()
	chunks := q.chunks
	q.chunks = spare[:0]
	q.mu.Unlock()
	return chunks
}

// maxAppendItem bounds what an EnqueueAppend encoder may append: its item
// is made under the queue's lock, which the loop's drain takes too.
const maxAppendItem = 4 << 10

var (
	errAppendTooLarge = errors.New("loop: EnqueueAppend: max out of range")
	errAppendShrank   = errors.New("loop: EnqueueAppend: the encoder returned less than it was given")
	errFillMoved      = errors.New("loop: EnqueueBulkFill: fill returned a buffer other than the one it was given or one append grew from it")
)

// pushAppend appends the item fn appends to the tail chunk (at most max
// bytes, max <= maxAppendItem), adds its length to n, and returns its
// sequence number. fn runs under mu: it must not block, and it appends
// nothing when it fails (the error is returned, nothing is queued). A
// panic in fn leaves the queue as it was and mu unlocked (the deferred
// unlock: a stuck mu would stall the drain of every conn on the loop). Any
// goroutine.
func (q *sendQueue) pushAppend(max int, n *atomic.Int64, fn func([]byte) ([]byte, error)) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var c *chunk
	last := len(q.chunks) - 1
	if last >= 0 {
		c = q.chunks[last]
	}
	fresh := c == nil || cap(c.b)-len(c.b) < max
	if fresh {
		c = chunkPool.Get().(*chunk)
	}
	start := len(c.b)
	b, err := fn(c.b)
	if err == nil && len(b) < start {
		err = errAppendShrank // would cut items already queued
	}
	if err != nil || len(b) == start {
		if fresh {
			putChunk(c)
		}
		return 0, err
	}
	if fresh {
		q.chunks = append(q.chunks, c)
	}
	// b outgrows the chunk only if fn appended more than max: the chunk
	// then holds a buffer of another size, which putChunk does not pool.
	c.b = b
	c.ends = append(c.ends, len(b))
	n.Add(int64(len(b) - start))
	q.pushed++
	return q.pushed, nil
}

// EnqueueAppend is Enqueue for an item that fn appends to the queue itself,
// sparing the copy of an item encoded elsewhere first: fn is given the
// queue's buffer, appends one item of at most max bytes (max <=
// maxAppendItem, 4 KiB) and returns it, or returns an error having
// appended nothing, in which case nothing is queued and the error is
// returned. fn runs under the queue's lock, which the loop's drain takes
// too, or, on a conn with nothing queued, holding the conn's drain token
// (its item may then be written at once, never queued: doc.go, "Direct
// writes"): it must be quick and must not block, call into the conn, or
// run code of unknown cost (an encoder of built-in values, not a user's
// marshaller). Waiting (backpressure) and the closed conn are as for
// Enqueue, and it does not allocate in steady state. fn runs after the
// wait for room: an error only fn can find (a size limit) comes after it,
// so a caller that can check such a limit before should. fn must return
// dst with its item appended; a result shorter than dst is refused. If fn
// panics, nothing is queued or written, the conn is left usable (the
// queue's lock and the drain token given back) and the panic goes on to
// the caller. Safe from any goroutine but the conn's own loop.
func (c *Conn) EnqueueAppend(ctx context.Context, max int, fn func(dst []byte) ([]byte, error)) error {
	if max <= 0 || max > maxAppendItem {
		return errAppendTooLarge
	}
	if c.reached(closeRequested) {
		return c.closedErr()
	}
	if c.queued.Load() >= c.e.opts.high {
		if err := c.waitRoom(ctx, &c.queued); err != nil {
			return err
		}
	}
	ls := c.ls.Load()
	if h := testHookAppendLoop.Load(); h != nil {
		(*h)(c)
	}
	if ls != nil && c.queued.Load() == 0 && c.bulkQueued.Load() == 0 && !c.scheduled.Load() && c.scheduled.CompareAndSwap(false, true) {
		// Started, nothing queued and the token free: taken before the
		// item is queued, so that an idle conn's item can skip the queue
		// (appendHeld). A conn not started (ls nil; ls is never reset)
		// pushes first, as below, and hands the token it wins to
		// OnOpen (handToLoop).
		return c.appendHeld(ls, max, fn)
	}
	if _, err := c.q.pushAppend(max, &c.queued, fn); err != nil {
		return err
	}
	if !c.scheduled.Load() && c.scheduled.CompareAndSwap(false, true) {
		c.handToLoop()
	}
	if c.bulkWait.Load() {
		c.kickUrgent()
	}
	return nil
}

// testHookAppendLoop, when a test sets it, runs in EnqueueAppend right
// after its load of the conn's loop state (ls): a test starts the conn
// there, as OnOpen may run while the sender is descheduled at that point.
var testHookAppendLoop atomic.Pointer[func(*Conn)]
