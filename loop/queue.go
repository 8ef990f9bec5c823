package loop

// The per-connection send queue: an intrusive multi-producer single-consumer
// linked queue (D. Vyukov's design) of pooled nodes, each holding a copy of
// one enqueued item.
//
// Invariants:
//   - push may run on any goroutine; pop only on the owning loop.
//   - A producer links its node in two steps (swap head, then store the
//     previous node's next). Between them the consumer sees the queue as
//     empty past that point and stops; the producer then wakes the loop
//     through the conn's scheduled flag (see Conn.Enqueue), so nothing is
//     stranded.
//   - A node returned by pop is no longer referenced by the queue and may be
//     recycled at once.

import (
	"sync"
	"sync/atomic"
)

type qnode struct {
	next atomic.Pointer[qnode]
	b    []byte
}

// maxPooledItem: nodes whose buffer grew past this are not pooled, so one
// large item does not pin memory in the pool.
const maxPooledItem = 64 << 10

var nodePool = sync.Pool{New: func() any { return new(qnode) }}

func getNode(item []byte) *qnode {
	n := nodePool.Get().(*qnode)
	n.b = append(n.b[:0], item...)
	return n
}

func putNode(n *qnode) {
	if cap(n.b) > maxPooledItem {
		n.b = nil
	}
	nodePool.Put(n)
}

type sendQueue struct {
	head atomic.Pointer[qnode] // most recently pushed; producers swap it
	tail *qnode                // oldest; consumer only
	stub qnode
}

func (q *sendQueue) init() {
	q.head.Store(&q.stub)
	q.tail = &q.stub
}

// push appends n. Any goroutine.
func (q *sendQueue) push(n *qnode) {
	n.next.Store(nil)
	prev := q.head.Swap(n)
	prev.next.Store(n)
}

// pop removes the oldest node, or returns nil when the queue is empty or a
// producer is between its two steps. Consumer only.
func (q *sendQueue) pop() *qnode {
	tail := q.tail
	next := tail.next.Load()
	if tail == &q.stub {
		if next == nil {
			return nil
		}
		q.tail = next
		tail = next
		next = next.next.Load()
	}
	if next != nil {
		q.tail = next
		return tail
	}
	if tail != q.head.Load() {
		return nil // a producer is mid-push; it will wake the loop
	}
	q.push(&q.stub)
	next = tail.next.Load()
	if next != nil {
		q.tail = next
		return tail
	}
	return nil
}
