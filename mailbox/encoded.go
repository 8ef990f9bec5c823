package mailbox

// Encoded messages: PushEncoded queues a message as its encoded bytes, and
// the owner decodes it when it receives it. A node's event loop delivers
// every message that arrives from the network; decoding (and allocating)
// each one there made the loop, one thread per connection, the bound on a
// link's throughput. Deferred, the decode runs on the receiving process's
// goroutine, in parallel with the loop and with other receivers.
//
// Shape. The mailbox's queue gets a marker in the place of a run of up to
// maxRun encoded messages pushed together (PushEncodedRun; PushEncoded is
// a run of one), so encoded messages keep their order among all others; the
// bytes go to the mailbox's inbox: a chain of byte chunks that producers
// append to under inbox.mu, each entry a length plus one (uvarint, so never
// 0) and the bytes. When an entry does not fit, the producer writes a 0
// byte (the chain goes on in the next chunk), links a new chunk and writes
// there. The owner keeps a read position (Mailbox.rd) and, for each marker
// it pops, reads as many entries as the marker counts, one per receive. A
// run costs one queue push and pop instead of one a message: with the owner
// reading right behind the loop, every queue slot was a cache line moving
// between their cores (a third of the receiving node's CPU in the
// two-process profile).
//
// Invariants.
//
//  1. A producer writes a run's entries and pushes its marker in one
//     critical section on mu, so the k-th marker in the queue belongs to the
//     k-th run, and its entries (and every chunk link before them) are
//     written before the marker is published, which happens-before the
//     owner's pop (the queue's publish and pop are atomics). The owner
//     therefore reads run k at marker k without the lock, and a run's
//     messages are received back to back, before anything queued after
//     the marker. Pushing the marker outside the section would be wrong: a
//     producer's marker could then stand for another producer's earlier
//     entries, and that producer's own would be read at a later marker,
//     after a plain message the first producer pushed behind its own
//     (TestEncodedAndPlainMessagesKeepPerProducerOrder).
//  2. A chunk's buf is made once at full capacity and never reallocated;
//     producers write only at w.n and beyond, the owner reads only below the
//     end of the entries it has markers for. They never touch the same byte.
//  3. The chain restarts only when the owner has read everything written:
//     under mu, with no run left, rd.r == w and rd.roff == w.n, the owner
//     drops the chain (w, first, rd.r nil) and pools its chunk; the next
//     producer starts a new chain through first. A chunk is pooled only once
//     the owner has read past it (its terminator, or the restart), and no
//     producer writes to it any more (w has moved on, or is nil).
//  4. A decode failure drops that message (Decoder.Dropped is told) and the
//     receive moves on to the next.
//  5. extra counts the messages of queued runs beyond their markers (runs
//     of k add k-1; popping the marker takes them off again), for Len. Len
//     thus misses the rest of a run the owner has started reading.
//
// The owner's own message. An owner that reads its own input inline (an
// InlineReader's wait) delivers the message it waits for on its own
// goroutine; PushEncodedOwn then decodes it at once into inbox.held
// (Mailbox.held set) when nothing is queued before it and no message is
// held already, and pop returns it after the rest of a run the owner has
// begun reading (if any: a receive that waits has read its runs through)
// and before the queue: no copy, no marker, no chunk. Nothing can be
// queued before it afterwards (pushes claim slots behind), so it stands
// exactly where a push at that moment would.
//
// Large messages. PushEncodedOwned queues a message's own buffer in the
// queue, in its place, instead of copying it into a chunk: chunks stay
// small and pooled, and the owner decodes it like any other.
//
// Memory. The producers' state (inbox, 48 bytes) is made at the first
// encoded message and kept; the owner's read position lives in the Mailbox.
// Chunks are powers of two, growing from minChunk to maxChunk while a stream
// lasts, pooled by size; an owner that has read everything gives its chunk
// back before it parks, so an idle process holds no chunk, and a closed
// mailbox drops its chain.

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"sync/atomic"
)

// Decoder turns the messages given to PushEncoded into values. One Decoder
// is meant to serve many mailboxes (a node has one).
type Decoder struct {
	// Decode returns the value of one encoded message. It runs on the
	// owner's goroutine when the message is received; b is valid only
	// during the call.
	Decode func(b []byte) (any, error)
	// DecodeSlab, if not nil, is used instead of Decode for a message
	// that has more of its run queued behind it (a stream): slab is
	// memory the mailbox keeps for its owner between such decodes (nil
	// at first, dropped when the owner parks), which it may carve the
	// values it returns from and replace (codec.DecodeTermSlab). It runs
	// on the owner's goroutine.
	DecodeSlab func(b []byte, slab *[]byte) (any, error)
	// Dropped, if not nil, is told about each message Decode failed on;
	// the message is skipped. It runs on the owner's goroutine.
	Dropped func(err error)
	// Release, if not nil, is given each buffer queued by
	// PushEncodedOwned once it was decoded (or failed to): the mailbox
	// refers to it no more, and Decode did not keep it. It runs on the
	// owner's goroutine.
	Release func(b []byte)
}

const (
	minChunk     = 256
	maxChunk     = 16 << 10
	chunkClasses = 7 // minChunk << 6 == maxChunk
)

// maxRun bounds the messages of one run: the lock is held while they are
// copied.
const maxRun = 64

// runMark marks the place of a run of n encoded messages in the queue; the
// markers are static, so pushing one does not allocate.
type runMark struct{ n int }

var runMarks = func() (m [maxRun + 1]runMark) {
	for i := range m {
		m[i].n = i
	}
	return m
}()

type encChunk struct {
	buf  []byte    // full capacity, never resliced (invariant 2)
	n    int       // bytes written; under inbox.mu
	next *encChunk // the chain's next chunk; written under mu before any entry in it is marked
}

// Chunks are powers of two from minChunk to maxChunk, one pool per size: a
// mailbox that parks after each message (a request/reply) takes one chunk
// of its message's size class and gives it back, a stream grows to maxChunk.
// Larger entries get a chunk of their own size, not pooled.
var chunkPools [chunkClasses]sync.Pool

func init() {
	for i := range chunkPools {
		size := minChunk << i
		chunkPools[i].New = func() any { return &encChunk{buf: make([]byte, size)} }
	}
}

// chunkClass returns the pool index for a chunk of size bytes, or -1.
func chunkClass(size int) int {
	if size < minChunk || size > maxChunk || size&(size-1) != 0 {
		return -1
	}
	return bits.TrailingZeros(uint(size / minChunk))
}

type inbox struct {
	mu    sync.Mutex
	w     *encChunk                // chunk producers write to; nil: none yet
	first atomic.Pointer[encChunk] // head of a chain started with rd.r nil
	extra atomic.Int64             // invariant 5
	dec   *Decoder
	// slab is the owner's memory for Decoder.DecodeSlab, made by the
	// owner at its first use (the pointer is written once; the slab it
	// points to is owner only, away from the producers' cache line) and
	// emptied when the owner parks, so an idle process holds none. Here
	// rather than in the Mailbox, which stays small for idle processes.
	slab *[]byte
	// held is the message the owner gave itself (PushEncodedOwn) while
	// Mailbox.held is set. Only the owner touches it (producers never
	// do), so it needs no synchronisation. Here rather than in the
	// Mailbox for the same reason as slab.
	held any
}

// encReader is the owner's read position in the inbox. It lives in the
// Mailbox, away from the producers' lock: the owner writes it for every
// message, and on the lock's cache line it made every Lock and Unlock a
// miss (a third of PushEncoded's time in the two-process profile).
type encReader struct {
	r    *encChunk // chunk being read; nil: start at first
	roff int32     // read offset in r (a chunk is far under 2 GiB)
	left int32     // messages of the current run not yet read
}

// PushEncoded queues a message given as its encoding b (not empty), to be
// turned into a value by dec when the owner receives it; b is copied and
// may be reused once PushEncoded returns. Order, waking and closing are as
// for Push. Every call on one mailbox must pass the same dec. It takes the
// inbox's lock for the copy and does not allocate in steady state. Safe
// from any goroutine.
func (m *Mailbox) PushEncoded(dec *Decoder, b []byte) bool {
	return m.PushEncodedRun(dec, [][]byte{b})
}

// PushEncodedRun is PushEncoded for several messages at once, received in
// the order given: one queue operation for up to 64 of them instead of one
// a message. Up to 64 are received back to back, nothing from another
// sender between them; a longer run is split into runs of 64, and other
// senders' messages may come between those. It reports false, queueing
// nothing, once the mailbox is closed.
func (m *Mailbox) PushEncodedRun(dec *Decoder, msgs [][]byte) bool {
	if m.state.Load()&stateClosed != 0 {
		return false
	}
	in := m.inbox.Load()
	if in == nil {
		in = &inbox{dec: dec}
		if !m.inbox.CompareAndSwap(nil, in) {
			in = m.inbox.Load()
		}
	}
	for len(msgs) > 0 {
		if len(msgs[0]) > maxEntry {
			// Past what a chunk's offsets count (int32): a copy of its own.
			m.Push(&ownedEnc{dec: dec, b: append([]byte(nil), msgs[0]...)})
			msgs = msgs[1:]
			continue
		}
		run := msgs[:min(len(msgs), maxRun)]
		for i, b := range run {
			if len(b) > maxEntry {
				run = run[:i]
				break
			}
		}
		msgs = msgs[len(run):]
		in.mu.Lock()
		for _, b := range run {
			in.append(b)
		}
		if len(run) > 1 {
			in.extra.Add(int64(len(run) - 1))
		}
		// Under mu: markers are queued in entry order (invariant 1).
		m.q.Push(&runMarks[len(run)])
		in.mu.Unlock()
	}
	if m.state.Load()&stateParked != 0 {
		m.wakeOwner()
	}
	return true
}

// PushEncodedOwn is PushEncoded for a message the owner gives itself:
// the owner reads its own input inline (an InlineReader's WaitInline,
// package loop's ReadInline), and the message it was waiting for is for
// itself. When nothing is queued before it (the queue empty, counting a
// push in progress as not) and no message is held already, the message
// is decoded at once, on the owner's goroutine, and held for the owner's
// next receive, behind only the rest of a run it has begun reading (pop
// reads that first) and ahead of anything queued later: no copy into the
// inbox, no queue push and pop, no pool, no lock. Otherwise it is queued
// as PushEncoded queues it. It is as though the message were pushed at the
// moment it found the queue empty (nobody but the owner can see the queue
// between then and the decode), so the order of every producer's messages
// is kept. A panic in dec.Decode comes out of the owner's next receive,
// as it would have with the message queued. It reports false once the
// mailbox is closed. Owner only: from inside its own WaitInline.
func (m *Mailbox) PushEncodedOwn(dec *Decoder, b []byte) bool {
	if m.held || !m.q.Empty() {
		return m.PushEncodedRun(dec, [][]byte{b})
	}
	if m.state.Load()&stateClosed != 0 {
		return false
	}
	in := m.inbox.Load()
	if in == nil {
		in = &inbox{dec: dec}
		if !m.inbox.CompareAndSwap(nil, in) {
			in = m.inbox.Load()
		}
	}
	v, err := decodeHeld(dec, b)
	if err != nil {
		if dec.Dropped != nil {
			dec.Dropped(err)
		}
		return true
	}
	in.held, m.held = v, true
	return true
}

// decodeHeld is dec.Decode(b) for PushEncodedOwn, with a panic returned
// as a heldPanic value (the receive that takes it panics with it).
func decodeHeld(dec *Decoder, b []byte) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = heldPanic{r}, nil
		}
	}()
	return dec.Decode(b)
}

// heldPanic is a panic of Decoder.Decode in PushEncodedOwn, held for the
// receive that takes the message.
type heldPanic struct{ v any }

// takeHeld returns the message PushEncodedOwn held. Owner only, with
// m.held set.
func (m *Mailbox) takeHeld() any {
	in := m.inbox.Load()
	v := in.held
	in.held, m.held = nil, false
	if p, ok := v.(heldPanic); ok {
		panic(p.v)
	}
	return v
}

// maxEntry bounds a message copied into the inbox's chunks, whose read
// offsets are int32 (encReader); a longer one is queued as an ownedEnc.
const maxEntry = 1 << 30

// ownedEnc is a message queued by PushEncodedOwned: its own buffer, in
// the queue in the place of the message.
type ownedEnc struct {
	dec *Decoder
	b   []byte
}

// PushEncodedOwned is PushEncoded for a large message: b itself is queued,
// not copied into the inbox's chunks, and the caller must not touch it
// again. The owner decodes it with dec when it receives it, so a large
// decode runs on the receiver's goroutine, not on the producer's (a node's
// event loop). It allocates one small record a message; use it for
// messages large enough that the copy would cost more (a node uses it past
// 16 KiB). Order, waking and closing are as for Push. Safe from any
// goroutine.
func (m *Mailbox) PushEncodedOwned(dec *Decoder, b []byte) bool {
	return m.Push(&ownedEnc{dec: dec, b: b})
}

// decode turns e into its value, telling its decoder's Dropped on failure.
// Owner only.
func (e *ownedEnc) decode() (any, bool) {
	v, err := e.dec.Decode(e.b)
	if e.dec.Release != nil {
		e.dec.Release(e.b)
	}
	e.b = nil
	if err != nil {
		if e.dec.Dropped != nil {
			e.dec.Dropped(err)
		}
		return nil, false
	}
	return v, true
}

// append writes one entry. in.mu held.
func (in *inbox) append(b []byte) {
	need := binary.MaxVarintLen64 + len(b) + 1 // room for the entry and a terminator
	w := in.w
	if w == nil || len(w.buf)-w.n < need {
		size := minChunk
		if w != nil {
			size = min(2*len(w.buf), maxChunk)
		}
		for size < need && size < maxChunk {
			size *= 2
		}
		c := newEncChunk(max(size, need))
		if w != nil {
			w.buf[w.n] = 0 // the chain goes on in c
			w.n++
			w.next = c
		} else {
			in.first.Store(c)
		}
		in.w, w = c, c
	}
	w.n += binary.PutUvarint(w.buf[w.n:], uint64(len(b))+1)
	w.n += copy(w.buf[w.n:], b)
}

func newEncChunk(size int) *encChunk {
	if i := chunkClass(size); i >= 0 {
		return chunkPools[i].Get().(*encChunk)
	}
	return &encChunk{buf: make([]byte, size)}
}

// putEncChunk pools c (invariant 3: nobody reads or writes it any more).
func putEncChunk(c *encChunk) {
	if i := chunkClass(len(c.buf)); i >= 0 {
		c.n, c.next = 0, nil
		chunkPools[i].Put(c)
	}
}

// decodeNext decodes the next entry of the current run. It reports false
// when the message failed to decode (it is dropped). Owner only, with
// rd.left > 0.
func (m *Mailbox) decodeNext() (any, bool) {
	in := m.inbox.Load() // not nil: a marker was pushed after installing it
	rd := &m.rd
	rd.left--
	for {
		if rd.r == nil {
			rd.r, rd.roff = in.first.Load(), 0
		}
		c := rd.r
		size, k := binary.Uvarint(c.buf[rd.roff:])
		if size == 0 { // the chain goes on in the next chunk (invariant 1: linked)
			if c.next == nil {
				// Only a broken invariant gets here; spinning on the
				// chain's start would hide it.
				panic("mailbox: encoded message read past the inbox's end")
			}
			rd.r, rd.roff = c.next, 0
			putEncChunk(c)
			continue
		}
		start := int(rd.roff) + k
		end := start + int(size-1)
		rd.roff = int32(end)
		var v any
		var err error
		if b := c.buf[start:end:end]; rd.left > 0 && in.dec.DecodeSlab != nil {
			if in.slab == nil {
				in.slab = new([]byte)
			}
			v, err = in.dec.DecodeSlab(b, in.slab)
		} else {
			v, err = in.dec.Decode(b)
		}
		if err != nil {
			if in.dec.Dropped != nil {
				in.dec.Dropped(err)
			}
			return nil, false
		}
		return v, true
	}
}

// rewindInbox gives back the owner's chunk when it has read everything
// written (invariant 3), and drops its slab (DecodeSlab). Owner only,
// before it parks.
func (m *Mailbox) rewindInbox() {
	rd := &m.rd
	in := m.inbox.Load()
	if in != nil && in.slab != nil {
		*in.slab = nil
	}
	if rd.r == nil || rd.left > 0 {
		return
	}
	in.mu.Lock()
	if w := in.w; w == rd.r && int(rd.roff) == w.n {
		in.w, rd.r = nil, nil
		in.first.Store(nil)
		putEncChunk(w)
	}
	in.mu.Unlock()
}

// pop takes the next message: the rest of the current run first, then a
// message the owner gave itself (PushEncodedOwn), then the queue,
// decoding encoded messages; messages that fail to decode are skipped.
// Owner only.
func (m *Mailbox) pop() (any, bool) {
	for {
		if m.rd.left > 0 {
			if v, ok := m.decodeNext(); ok {
				return v, true
			}
			continue
		}
		if m.held { // nothing was queued before it but the run just read (PushEncodedOwn)
			return m.takeHeld(), true
		}
		v, ok := m.q.Pop()
		if !ok {
			return nil, false
		}
		mark, isRun := v.(*runMark)
		if !isRun {
			if e, ok := v.(*ownedEnc); ok {
				if v, ok := e.decode(); ok {
					return v, true
				}
				continue
			}
			return v, true
		}
		m.rd.left = int32(mark.n)
		if mark.n > 1 {
			m.inbox.Load().extra.Add(-int64(mark.n - 1))
		}
	}
}

// dropInbox forgets every encoded message not yet received, once the
// mailbox is closed and its queue discarded: the owner's position, the
// count for Len, and the chain (left to the garbage collector: a producer
// that passed the closed check just before Close may still be writing to
// the last chunk, so nothing is pooled). Owner only.
func (m *Mailbox) dropInbox() {
	in := m.inbox.Load()
	if in == nil {
		return
	}
	m.rd = encReader{}
	in.held, m.held = nil, false
	in.mu.Lock()
	in.w = nil
	in.first.Store(nil)
	in.extra.Store(0)
	in.mu.Unlock()
}

// queuedExtra is what Len adds for runs: their messages beyond the marker.
func (m *Mailbox) queuedExtra() int {
	if in := m.inbox.Load(); in != nil {
		return int(in.extra.Load())
	}
	return 0
}
