package mailbox

// Queue: an unbounded multi-producer single-consumer FIFO after Dmitry
// Vyukov's non-intrusive MPSC queue, with pooled nodes.
//
// Shape. The queue is a singly linked list. head (consumer-owned) points at a
// dummy node whose value has already been taken; head.next is the next value
// to pop. tail (shared) points at the last node linked in. The zero Queue has
// head == tail == nil, which every reader maps to &q.stub, the dummy embedded
// in the Queue itself, so the zero value is ready to use with no allocation.
//
// Push (any goroutine, no mutex, no loop):
//
//	n.val = v; n.next = nil        // n is private to this producer
//	prev := tail.Swap(n)           // (P1) n is now the tail; prev is ours alone
//	prev.next.Store(n)             // (P2) link: n becomes visible to the consumer
//
// Pop (consumer only):
//
//	n := head.next.Load()          // (C1) nil: nothing linked after the dummy
//	head = n; v := n.val; n.val = zero; recycle(old head)
//
// Memory ordering. Go's sync/atomic operations are sequentially consistent.
// The producer writes n.val before the release-store P2, and the consumer
// reads n.val only after the acquire-load C1 that observed n, so the value is
// published without a lock. P1 is a swap, not a compare-and-swap, so no
// producer ever retries, and the node a producer gets back from P1 is owned
// by that producer alone until P2: the consumer cannot move past prev while
// prev.next is nil, and no other producer can obtain prev from the swap again.
//
// The window. Between P1 and P2 the node is in the list but unreachable: tail
// has moved but prev.next is still nil. A Pop in that window reports false
// (so do Pops for pushes made after it, by other producers, until P2 lands).
// Pop is therefore only "linearizable per completed Push of one producer":
// once Push returns, a later Pop sees that value or an earlier one. Empty
// reports the window as not empty (tail != head). Anything that parks the
// consumer must let each producer check for a parked consumer AFTER its own P2
// (Mailbox does; see mailbox.go), then a Pop that missed a half-linked node
// is always followed by that producer's wake-up.
//
// Allocation. Nodes come from one sync.Pool per element type, shared by every
// Queue of that type. The consumer gathers freed dummies in a private chain
// and hands the pool 32 at a time as one item; a producer takes a chain, keeps
// one node and puts the rest back (into its P's private slot, so its next
// Push is a cheap pool hit). Recycling is safe without hazard pointers because no operation
// ever dereferences a node it did not get exclusively: producers touch only
// their fresh node and the prev handed to them by the swap (linked before
// they let go of it), and the consumer frees a dummy only after moving past it
// (so its next was linked, and its producer is done with it). In steady state
// Push and Pop allocate nothing. The embedded stub is never pooled; rewind
// puts it back as the dummy when the consumer finds the queue drained, so an
// idle queue holds no pooled node at all.

import (
	"reflect"
	"sync"
	"sync/atomic"
)

// node is one link of the list. next is written by the producer that owns the
// node's successor (P2) and by the consumer when it recycles the node.
type node[T any] struct {
	next atomic.Pointer[node[T]]
	val  T
}

// pools holds one *sync.Pool of *node[T] per element type T.
var pools sync.Map // reflect.Type -> *sync.Pool

func poolFor[T any]() *sync.Pool {
	t := reflect.TypeFor[T]()
	if p, ok := pools.Load(t); ok {
		return p.(*sync.Pool)
	}
	p, _ := pools.LoadOrStore(t, &sync.Pool{New: func() any { return new(node[T]) }})
	return p.(*sync.Pool)
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
	head   *node[T]      // dummy; nil means &stub
	popped atomic.Uint64 // values taken out; stored by the consumer only
	stub   node[T]       // the dummy of a fresh or drained queue; never pooled
	free   *node[T]      // freed nodes, linked by next, not yet in the pool
	nfree  int           // length of free

	// Producer side: shared by every producer.
	tail   atomic.Pointer[node[T]] // last linked-in node; nil means &stub
	pushed atomic.Uint64           // values put in, counted before P1
	pool   atomic.Pointer[sync.Pool]
}

// nodePool returns the node pool for T, cached on the queue after first use.
func (q *Queue[T]) nodePool() *sync.Pool {
	if p := q.pool.Load(); p != nil {
		return p
	}
	p := poolFor[T]()
	q.pool.Store(p)
	return p
}

// newNode takes a node from the pool holding v, with a nil next. What the
// pool hands out is a chain of free nodes (see freeNode); newNode keeps the
// first and puts the rest back, which lands in this P's private pool slot, so
// the next Push on this P finds it without touching other Ps.
func (q *Queue[T]) newNode(v T) *node[T] {
	p := q.nodePool()
	n := p.Get().(*node[T])
	if rest := n.next.Load(); rest != nil {
		n.next.Store(nil)
		p.Put(rest)
	}
	n.val = v
	return n
}

// freeChain is how many freed nodes the consumer gathers before handing them
// to the pool as one item: one pool operation per freeChain messages on the
// consumer side, and producers on another P steal a whole chain at a time.
const freeChain = 32

// freeNode clears n and adds it to the consumer's free chain, handing the
// chain to the pool once it is full. n must be unreachable from every
// producer (see the header comment). Consumer only.
func (q *Queue[T]) freeNode(n *node[T]) {
	var zero T
	n.val = zero
	n.next.Store(q.free)
	q.free = n
	if q.nfree++; q.nfree == freeChain {
		q.flushFree()
	}
}

// flushFree hands the consumer's partial free chain to the pool. Consumer only.
func (q *Queue[T]) flushFree() {
	if q.free != nil {
		q.nodePool().Put(q.free)
		q.free, q.nfree = nil, 0
	}
}

// testHookLink, when set by a test, runs between a Push's swap and its link
// (the window), so tests can yield there.
var testHookLink func()

// Push appends v at the tail. It never blocks, takes no lock and does not
// allocate in steady state. Safe from any goroutine.
func (q *Queue[T]) Push(v T) {
	n := q.newNode(v)
	q.pushed.Add(1)
	prev := q.tail.Swap(n) // P1
	if testHookLink != nil {
		testHookLink()
	}
	if prev == nil {
		prev = &q.stub
	}
	prev.next.Store(n) // P2
}

// headNode returns the current dummy. Consumer only.
func (q *Queue[T]) headNode() *node[T] {
	if q.head == nil {
		q.head = &q.stub
	}
	return q.head
}

// Pop removes and returns the value at the head. It returns false when no
// value is linked in yet: the queue is empty, or a Push is between its two
// steps (see Empty). Consumer only.
func (q *Queue[T]) Pop() (T, bool) {
	h := q.headNode()
	n := h.next.Load() // C1
	if n == nil {
		var zero T
		return zero, false
	}
	q.head = n
	v := n.val
	var zero T
	n.val = zero
	q.popped.Store(q.popped.Load() + 1)
	if h != &q.stub {
		q.freeNode(h)
	}
	return v, true
}

// Empty reports whether the queue holds nothing, counting a Push that is in
// progress as not empty: when Pop returns false but Empty returns false too,
// a producer is about to link its value and the consumer may spin briefly or
// rely on that producer's own signal. Advisory (producers may push at any
// moment). Consumer only.
func (q *Queue[T]) Empty() bool {
	h := q.headNode()
	if h.next.Load() != nil {
		return false
	}
	t := q.tail.Load()
	if t == nil {
		t = &q.stub
	}
	return t == h
}

// Len returns the number of values pushed and not yet popped. It counts a
// Push from its start, so it may briefly include a value Pop cannot return
// yet. Approximate under concurrency. Safe from any goroutine.
func (q *Queue[T]) Len() int {
	popped := q.popped.Load()
	pushed := q.pushed.Load()
	if pushed < popped { // popped read first; cannot happen, but stay safe
		return 0
	}
	return int(pushed - popped)
}

// rewind makes the embedded stub the dummy again when the queue is drained,
// returning the pooled dummy and the free chain to the pool, so that an idle
// queue holds no node. It is a no-op when values (or a half-linked Push) are pending.
// Consumer only.
//
// Safety: the stub is not in the list (head moved past it), so the consumer
// may clear stub.next. The compare-and-swap succeeds only if no producer has
// swapped tail since h became the last node; a producer that swaps later gets
// &stub as its prev and links there, which the consumer reads from the new
// head. The freed h is reachable from no producer: the only producer that
// could have got it from P1 is the one that appended h itself, and it linked
// h into its predecessor before h became the head.
func (q *Queue[T]) rewind() {
	h := q.headNode()
	if h == &q.stub || h.next.Load() != nil {
		return
	}
	q.stub.next.Store(nil)
	if q.tail.CompareAndSwap(h, &q.stub) {
		q.head = &q.stub
		q.freeNode(h)
	}
	q.flushFree()
}

// ready reports whether Pop would return a value now. Consumer only.
func (q *Queue[T]) ready() bool { return q.headNode().next.Load() != nil }
