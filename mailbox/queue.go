package mailbox

// Queue: an unbounded multi-producer single-consumer FIFO made of recycled
// segments (arrays of segSize slots). Producers claim a slot with one
// fetch-and-add; the consumer reads slots in order.
//
// Shape. tail (shared) points at the segment producers claim in, or is nil
// when the queue holds no segment at all. Each segment has a claim word and
// next, the segment after it. The claim word holds the tag of the queue the
// segment currently serves (every Queue draws a unique tag from a global
// counter when it installs its first segment; the pool is shared by all
// queues of one element type) and count, the number of slots handed out in
// the segment's current use. The consumer keeps head and pos (the next slot to read); head is nil
// when the consumer holds no segment, and then it adopts first, the segment
// a producer installed into an empty queue. The zero Queue has every pointer
// nil: it is empty and ready to use, and holds no segment.
//
// Open, full, sealed. A segment whose count is < segSize is open. A producer
// claims slot i by a compare-and-swap of the claim word from (its queue's
// tag, i) to (tag, i+1), so a claim succeeds only in an open segment of its
// own queue. At segSize the segment is full (every slot was handed out) or
// sealed (the consumer closed it early, see rewind); the producer then waits
// for tail to move and retries on the new tail. A segment out of the pool, or
// just installed, is sealed; opening it is one store of (tag, 0).
//
// Push (any goroutine):
//
//	s := tail; w := s.claim               // retry from tail unless w = (q's tag, i < segSize)
//	s.claim.CompareAndSwap(w, w+1)         // (P1) claim slot i; on failure retry
//	if i == segSize-1 { extend(s) }        // (P2) the last claimer links next, moves tail, opens next
//	s.slots[i].val = v; ready.Store(1)     // (P3) publish
//
// extend(s): n from the pool (sealed); s.next = n; tail = n;
// open n.
// Empty queue: a producer that finds tail nil takes a sealed segment,
// installs it with tail.CompareAndSwap(nil, n) (a loser pools its n again),
// stores first = n, then opens n.
//
// Pop (consumer): adopt first if head is nil; take slot pos once its ready
// flag is set and clear its value (the flag stays set: a slot is published
// once per use); after the last slot move head to s.next (set by P2 before
// P3, so never nil there), clear the flags of the slots read, and pool s.
//
// Invariants, each kept by the steps above:
//
//  1. At most one segment is open and not full, and it is the one tail names:
//     a segment is opened only after tail names it, and tail moves away only
//     once it is full (P2) or sealed (rewind). Every Add that claims a slot
//     therefore lands in the current tail segment, and segments fill in
//     chain order. With fetch-and-add order inside a segment this gives
//     per-producer FIFO: a producer's later claim is in the same segment at a
//     higher index, or in a segment opened later, which the consumer reads
//     later.
//  2. Exactly one party moves tail off an open segment: the producer whose
//     Add returned segSize-1 (P2) or the consumer whose rewind
//     compare-and-swap sealed it. Neither needs a compare-and-swap on tail.
//  3. Recycling. The consumer pools a segment only after tail has left it
//     (P2 precedes P3 of the last slot; rewind stores nil first) and after
//     reading every slot that was claimed. A stale producer, one that loaded
//     the segment from tail long ago, can only try its compare-and-swap on
//     the claim word: while the segment is pooled or being installed it is
//     sealed, so the producer goes back to tail. It can never write into a
//     pooled segment. Its claim can succeed only once the segment is open
//     again with the same queue's tag, i.e. when it is the current tail
//     segment of that queue again, and then the claim is as good as anyone's
//     (invariant 1). A segment reused by another queue carries that queue's
//     tag, so the claim fails and the producer goes back to its own tail.
//     next is written once per use, by the last claimer before its P3, and
//     reset by the consumer when it pools the segment.
//  4. Memory order. Go's atomics are sequentially consistent. The value is
//     written before the ready store (P3) and read after the ready load that
//     saw it, so it is published without a lock; the consumer clears the
//     slot's value when it reads it and its flag (a plain store, after its
//     own atomic load saw the flag set) before pooling the segment, and the
//     pool (and the opening store followed by the claimer's Add) order both
//     before the next producer's write.
//  5. The window. Between P1 and P3 a slot is claimed but not ready; Pop
//     reports false and cannot pass it, so later claims wait too. Pop is
//     linearizable per completed Push of one producer. Anything that parks
//     the consumer must let each producer look for a parked consumer after
//     its own P3 (Mailbox does), so a Pop that missed a half-done Push is
//     always followed by that producer's wake-up.
//
// Progress. Push takes no lock. The one wait: a producer that finds the tail
// segment full while its last claimer (or a sealing consumer) is between
// its claim and the store that moves tail yields until tail moves, a window
// of a few instructions once per segSize messages. Steady-state Push and Pop
// allocate nothing: segments come from one sync.Pool per element type.
//
// Footprint. rewind, run by Mailbox before each park, seals a drained head
// segment and pools it, so an idle queue holds no segment; the Queue itself
// is six words.

import (
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
)

// segSize is the number of slots per segment: one pool operation and one
// tail move per segSize messages. Sizeof(segment[any]) is about 1.6 KiB.
const segSize = 64

// slot holds one value. ready is 0 from the segment's opening to the
// producer's publish, then 1 for the rest of the segment's use: the
// consumer does not clear it when it reads the slot (an atomic store there
// is a full barrier on the side that falls behind in a stream), but clears
// every flag it saw set, with plain stores, just before it pools the
// segment (clearReady). Producers set it with atomic.StoreUint32 and the
// consumer reads it with atomic.LoadUint32; the plain clear is ordered
// after both by the consumer's load and before the next use by the pool.
type slot[T any] struct {
	ready uint32
	val   T
}

// segment is one array of slots with its claim counter and link.
type segment[T any] struct {
	claim atomic.Uint64 // tag<<tagShift | count; count == segSize: full or sealed
	next  atomic.Pointer[segment[T]]
	base  atomic.Uint64 // values pushed into the queue before this segment's slot 0 (Len)
	_     [40]byte      // keep the contended counter off the first slots' cache line
	slots [segSize]slot[T]
}

// The claim word: the owning queue's tag above tagShift, the count below.
// The count never exceeds segSize: claims only add to a count below it.
const (
	tagShift  = 8
	countMask = 1<<tagShift - 1
)

// lastTag numbers queues; a queue's tag is drawn once, never 0, and never
// repeats (2^56 queues).
var lastTag atomic.Uint64

// segPools holds one *sync.Pool of *segment[T] per element type T, but
// for the mailbox's any: anySegs, found without the map's lookup (a type's
// hash and a map read at each segment taken or given back cost a local
// ping-pong, whose owner gives back its segment at each park, about a
// tenth).
var (
	segPools sync.Map // reflect.Type -> *sync.Pool
	anySegs  = newSegPool[any]()
)

func segPool[T any]() *sync.Pool {
	if _, ok := any((*segment[T])(nil)).(*segment[any]); ok {
		return anySegs
	}
	t := reflect.TypeFor[T]()
	if p, ok := segPools.Load(t); ok {
		return p.(*sync.Pool)
	}
	p, _ := segPools.LoadOrStore(t, newSegPool[T]())
	return p.(*sync.Pool)
}

func newSegPool[T any]() *sync.Pool {
	return &sync.Pool{New: func() any {
		s := new(segment[T])
		s.claim.Store(segSize) // sealed (tag 0 belongs to no queue) until opened
		return s
	}}
}

// getSegment returns a sealed segment with clear slots and a nil next: its
// count is segSize, so every claim fails on it whatever its tag (another
// queue's, or this one's from an earlier use) until the one store that
// opens it writes the tag with count 0. Sealing it again with its new
// queue's tag first, as extend and start did, changed nothing a claim,
// awaitMove, Len or rewind reads, and cost an atomic exchange per segment
// installed (a request/reply owner installs one per message; the tests
// check that every path to the pool leaves a segment sealed:
// TestPooledSegmentsAreSealed).
func getSegment[T any]() *segment[T] { return segPool[T]().Get().(*segment[T]) }

// putSegment pools s, clearing the ready flags of its first n slots (the
// slots claimed in its use; the others are clear). s must be full or
// sealed, unreachable from tail and first, and have every value read and
// cleared (invariant 3). Consumer only.
func putSegment[T any](s *segment[T], n uint64) {
	for i := range n {
		s.slots[i].ready = 0
	}
	// Only a full segment has a next (its last claimer linked it); one
	// rewind sealed early, or start's unused one, does not, and the load
	// spares an atomic exchange at each park of a request/reply owner.
	if s.next.Load() != nil {
		s.next.Store(nil)
	}
	segPool[T]().Put(s)
}

// Queue is an unbounded lock-free multi-producer single-consumer FIFO. The
// zero value is an empty queue ready to use. A Queue must not be copied after
// first use.
//
// Push may be called from any goroutine; Pop, Empty and the rest of the
// consumer side from one goroutine at a time (the consumer). Values from one
// producer are popped in the order that producer pushed them.
type Queue[T any] struct {
	// Consumer side: written only by the consumer.
	head   *segment[T]   // segment being read; nil: adopt first
	pos    uint64        // next slot of head to read; < segSize
	popped atomic.Uint64 // values taken out; stored by the consumer only

	// Shared.
	tail  atomic.Pointer[segment[T]] // segment producers claim in; nil: none
	first atomic.Pointer[segment[T]] // installed into an empty queue, not yet adopted
	tag   atomic.Uint64              // this queue's claim tag, shifted; 0 until first needed
}

// claimTag returns the queue's tag, shifted into place, drawing it on first
// use. Safe from any goroutine.
func (q *Queue[T]) claimTag() uint64 {
	if t := q.tag.Load(); t != 0 {
		return t
	}
	q.tag.CompareAndSwap(0, lastTag.Add(1)<<tagShift)
	return q.tag.Load()
}

// testHookLink, when set by a test, runs between a Push's claim and its
// publish (the window), so tests can yield there.
var testHookLink func()

// testHookClaim, when set by a test, runs between a Push's load of tail and
// its claim, with the queue and the segment it loaded, so tests can make
// that pointer stale.
var testHookClaim func(q, s any)

// Push appends v at the tail. It never blocks on the consumer, takes no lock
// and does not allocate in steady state. Safe from any goroutine.
func (q *Queue[T]) Push(v T) {
	for {
		s := q.tail.Load()
		if s == nil {
			q.start()
			continue
		}
		i, ok := q.claimSlot(s) // P1
		if !ok {
			q.awaitMove(s)
			continue
		}
		if i == segSize-1 {
			q.extend(s) // P2
		}
		if testHookLink != nil {
			testHookLink()
		}
		sl := &s.slots[i]
		sl.val = v
		atomic.StoreUint32(&sl.ready, 1) // P3
		return
	}
}

// claimSlot claims the next slot of s for a Push to q, and returns its
// index. It fails when s is not an open segment of q (full, sealed, pooled,
// or serving another queue) or another producer claimed that slot first.
func (q *Queue[T]) claimSlot(s *segment[T]) (uint64, bool) {
	if testHookClaim != nil {
		testHookClaim(q, s)
	}
	w := s.claim.Load()
	i := w & countMask
	if w-i != q.tag.Load() || i >= segSize {
		return 0, false
	}
	return i, s.claim.CompareAndSwap(w, w+1)
}

// awaitMove yields while tail still names the segment s and s is full or
// sealed: its last claimer, or the consumer sealing it, or the producer
// installing it, is about to move tail or open s.
func (q *Queue[T]) awaitMove(s *segment[T]) {
	for spins := 0; q.tail.Load() == s && s.claim.Load()&countMask >= segSize; spins++ {
		if spins >= 8 {
			runtime.Gosched()
		}
	}
}

// extend links a fresh segment after s, makes it the tail and opens it. Only
// the producer that claimed s's last slot calls it, before publishing that
// slot (invariant 2).
func (q *Queue[T]) extend(s *segment[T]) {
	tag := q.tag.Load()
	n := getSegment[T]() // sealed (getSegment): no claim succeeds until it is opened
	n.base.Store(s.base.Load() + segSize)
	s.next.Store(n)
	q.tail.Store(n)
	n.claim.Store(tag) // open: only now can a claim succeed in n
}

// start installs a first segment into a queue that has none. The winner of
// the compare-and-swap publishes it as first for the consumer, then opens it.
func (q *Queue[T]) start() {
	tag := q.claimTag()
	n := getSegment[T]()          // sealed: no claim succeeds until it is opened
	n.base.Store(q.popped.Load()) // tail is nil only once everything was popped
	if !q.tail.CompareAndSwap(nil, n) {
		putSegment(n, 0) // never reachable: still sealed
		return
	}
	q.first.Store(n)
	n.claim.Store(tag) // open
}

// headSeg returns the consumer's segment, adopting first if it has none, or
// nil when there is no segment to read. Consumer only.
func (q *Queue[T]) headSeg() *segment[T] {
	if s := q.head; s != nil {
		return s
	}
	s := q.first.Load()
	if s != nil {
		q.first.Store(nil)
		q.head, q.pos = s, 0
	}
	return s
}

// Pop removes and returns the value at the head. It returns false when no
// value is ready: the queue is empty, or the oldest claimed slot is not
// published yet (see Empty). Consumer only.
func (q *Queue[T]) Pop() (T, bool) {
	var zero T
	s := q.headSeg()
	if s == nil {
		return zero, false
	}
	sl := &s.slots[q.pos]
	if atomic.LoadUint32(&sl.ready) == 0 {
		return zero, false
	}
	v := sl.val
	sl.val = zero
	q.popped.Store(q.popped.Load() + 1)
	if q.pos++; q.pos == segSize {
		q.head, q.pos = s.next.Load(), 0
		putSegment(s, segSize)
	}
	return v, true
}

// Empty reports whether the queue holds nothing, counting a Push that is in
// progress as not empty: when Pop returns false but Empty returns false too,
// a producer is about to publish its value and the consumer may spin briefly
// or rely on that producer's own signal. Advisory (producers may push at any
// moment). Consumer only.
func (q *Queue[T]) Empty() bool {
	s := q.headSeg()
	if s == nil {
		return q.tail.Load() == nil
	}
	if atomic.LoadUint32(&s.slots[q.pos].ready) != 0 {
		return false
	}
	return s.claim.Load()&countMask == q.pos
}

// Len returns the number of values pushed and not yet popped. It counts a
// Push from its claim, so it may briefly include a value Pop cannot return
// yet, and it may read high by up to a segment while a segment is being
// installed. Approximate under concurrency. Safe from any goroutine.
func (q *Queue[T]) Len() int {
	for range 8 {
		popped := q.popped.Load()
		s := q.tail.Load()
		if s == nil {
			return 0
		}
		pushed := s.base.Load() + s.claim.Load()&countMask
		if q.tail.Load() != s {
			continue // s moved on (and may be pooled): read again
		}
		if pushed < popped {
			return 0
		}
		return int(pushed - popped)
	}
	return 0
}

// rewind pools the head segment when everything claimed in it was read, so
// that an idle queue holds no segment. It is a no-op when values (or a
// claimed, unpublished slot) are pending. Consumer only.
//
// Safety: the compare-and-swap of the count from pos to segSize succeeds
// only if exactly pos slots were claimed, all of them read, and seals the
// segment: later claims fail. A segment that is open and not full is the tail
// (invariant 1), and sealing it makes the consumer the one party that moves
// tail off it (invariant 2): to nil, after which the next Push installs a
// fresh first segment.
func (q *Queue[T]) rewind() {
	s := q.head
	if s == nil {
		return
	}
	tag := q.tag.Load()
	if !s.claim.CompareAndSwap(tag|q.pos, tag|segSize) {
		return
	}
	n := q.pos
	q.tail.Store(nil)
	q.head, q.pos = nil, 0
	putSegment(s, n)
}

// ready reports whether Pop would return a value now. Consumer only.
func (q *Queue[T]) ready() bool {
	s := q.headSeg()
	return s != nil && atomic.LoadUint32(&s.slots[q.pos].ready) != 0
}
