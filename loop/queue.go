package loop

// The per-connection send queue: mailbox.Queue (lock-free MPSC, pooled
// nodes) of pooled buffers, each holding a copy of one enqueued item.
//
// Invariants:
//   - push may run on any goroutine; pop only on the owning loop.
//   - A producer links its node in two steps; between them pop reports the
//     queue empty past that point. The producer then wakes the loop through
//     the conn's scheduled flag (see Conn.Enqueue: it checks the flag after
//     its push completes), so nothing is stranded.
//   - A buffer returned by pop is no longer referenced by the queue and may
//     be recycled once the drain function has run.

import (
	"sync"

	"github.com/meshrt/mesh/mailbox"
)

type qnode struct {
	b []byte
}

// maxPooledItem: buffers that grew past this are not pooled, so one large
// item does not pin memory in the pool.
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
	q mailbox.Queue[*qnode]
}

func (q *sendQueue) init() {}

// push appends n. Any goroutine.
func (q *sendQueue) push(n *qnode) { q.q.Push(n) }

// pop removes the oldest item, or returns nil when none is linked in yet.
// Consumer only.
func (q *sendQueue) pop() *qnode {
	n, ok := q.q.Pop()
	if !ok {
		return nil
	}
	return n
}
