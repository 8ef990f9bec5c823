package mailbox

// Mailbox: a Queue[any] plus park/wake, close and the selective-receive save
// queue.
//
// Invariants.
//
//  1. One owner. Receive, ReceiveMatch and TryReceive run on one goroutine at
//     a time (the process). The save list and the queue's consumer side are
//     touched by the owner only, so they need no synchronisation.
//  2. state holds two bits: parked (the owner is, or is about to be, blocked
//     on wake) and closed (sticky). Only the owner sets parked, and only with a
//     compare-and-swap from 0, so it never parks on a closed mailbox.
//  3. Whoever clears parked, other than the owner itself, sends exactly one
//     token on wake (a channel of capacity 1, send never blocks). When the
//     owner fails to clear parked itself it knows a token is on its way and
//     receives it before going on, so no stale token ever lingers and a park
//     never wakes spuriously.
//  4. No lost wake-up. The owner publishes parked (CAS) and then re-checks the
//     queue's head link; a producer links its node (Queue step P2) and then
//     loads state. All four are sequentially consistent atomics, so either
//     the owner's re-check sees the link, or the producer's load sees parked
//     and wakes it. This holds in the Vyukov window too: a producer between
//     its swap and its link has not checked state yet, and will after linking.
//  5. Cost on the send path while the owner runs: one atomic load of state
//     before and one after the Queue push. A channel operation happens only on
//     the transition to parked, once per park.
//  6. Close sets closed and clears parked in one CAS and wakes a parked owner
//     (rule 3). From then on Push refuses messages; a Push that read state
//     just before Close may still enqueue, and that message is discarded like
//     the rest (by the owner's next receive call, or with the Mailbox by GC).
//
// Size. The struct is the Queue (80 bytes with its stub and free chain),
// state, the save-list pointers and the wake channel: 112 bytes, plus the
// channel itself; 224 bytes allocated per New in all. An idle mailbox holds no
// queue node and no free chain (Queue.rewind runs before each park).

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
)

// testHookPark, when set by a test, runs each time the owner is about to
// publish parked: tests count parks with it and yield there to widen the
// window between the owner's last empty check and its park.
var testHookPark func()

// ErrClosed is returned by Receive and ReceiveMatch once the mailbox is closed.
var ErrClosed = errors.New("mailbox: closed")

const (
	stateParked uint32 = 1 << iota // the owner waits on wake (rule 2)
	stateClosed                    // Close was called; sticky
)

// spinRounds bounds how often an owner that found its queue empty yields to
// other goroutines, re-checking, before it parks. A short yield lets a
// producer running on another core land its next message without the owner
// paying a park and a wake-up; it is skipped with GOMAXPROCS=1.
var spinRounds = 4 // a var so tests can force every wait to park

// Mailbox is a process mailbox: many senders, one receiving goroutine (the
// owner). Senders never block and take no lock; the owner blocks in Receive
// until a message arrives, its context ends, or the mailbox is closed.
// Messages from one sender are received in the order that sender pushed them.
//
// Create a Mailbox with New; it must not be copied.
type Mailbox struct {
	q Queue[any]

	state  atomic.Uint32 // stateParked | stateClosed, see invariants 2, 3, 6
	nsaved atomic.Int32  // length of the save list, for Len

	// Owner only: messages ReceiveMatch skipped, in arrival order. Nodes come
	// from the queue's node pool; their next links are only touched by the owner.
	saveHead, saveTail *node[any]

	wake chan struct{} // capacity 1: one token per clear of parked by a non-owner
}

// New returns an empty, open mailbox. Safe from any goroutine.
func New() *Mailbox {
	return &Mailbox{wake: make(chan struct{}, 1)}
}

// Push queues msg for the owner and wakes the owner if it is parked. It
// never blocks, takes no lock and does not allocate in steady state. It
// returns false, without queueing msg, once the mailbox is closed. Safe from
// any goroutine.
func (m *Mailbox) Push(msg any) bool {
	if m.state.Load()&stateClosed != 0 {
		return false
	}
	m.q.Push(msg)
	if m.state.Load()&stateParked != 0 {
		m.wakeOwner()
	}
	return true
}

// wakeOwner clears parked and, if this call cleared it, sends the token.
func (m *Mailbox) wakeOwner() {
	if old := m.state.And(^stateParked); old&stateParked != 0 {
		select {
		case m.wake <- struct{}{}:
		default: // cannot happen by invariant 3; never block a sender
		}
	}
}

// Close closes the mailbox: a parked owner wakes at once, Push returns false
// from now on, and Receive and ReceiveMatch return ErrClosed. Messages still
// queued are discarded. Closing twice is a no-op. Safe from any goroutine.
func (m *Mailbox) Close() {
	for {
		s := m.state.Load()
		if s&stateClosed != 0 {
			return
		}
		if m.state.CompareAndSwap(s, (s|stateClosed)&^stateParked) {
			if s&stateParked != 0 {
				select {
				case m.wake <- struct{}{}:
				default:
				}
			}
			return
		}
	}
}

// Closed reports whether Close has been called. Safe from any goroutine.
func (m *Mailbox) Closed() bool { return m.state.Load()&stateClosed != 0 }

// Len returns the number of messages queued, including those a selective
// receive skipped. Approximate under concurrency. Safe from any goroutine.
func (m *Mailbox) Len() int {
	return m.q.Len() + int(m.nsaved.Load())
}

// Receive returns the oldest message, blocking until one arrives. A message
// already queued is returned even if ctx is done; otherwise Receive returns
// ctx's error (wrapped, so errors.Is(err, context.DeadlineExceeded) works)
// when ctx ends first, and ErrClosed once the mailbox is closed. Owner only.
func (m *Mailbox) Receive(ctx context.Context) (any, error) {
	for {
		if m.state.Load()&stateClosed != 0 {
			m.discard()
			return nil, ErrClosed
		}
		if v, ok := m.take(); ok {
			return v, nil
		}
		if err := m.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// ReceiveMatch returns the oldest message for which match returns true,
// blocking until one arrives. Messages it does not match stay queued in their
// arrival order, ahead of anything that arrives later, and later calls of
// Receive, ReceiveMatch and TryReceive see them first. match runs on the
// owner's goroutine, may be called again on a message it already rejected,
// and must not call the mailbox's receive methods; a nil match matches every
// message. Errors are those of Receive. Owner only.
func (m *Mailbox) ReceiveMatch(ctx context.Context, match func(any) bool) (any, error) {
	if match == nil {
		return m.Receive(ctx)
	}
	if m.state.Load()&stateClosed != 0 {
		m.discard()
		return nil, ErrClosed
	}
	var prev *node[any]
	for n := m.saveHead; n != nil; prev, n = n, n.next.Load() {
		if match(n.val) {
			return m.unsave(prev, n), nil
		}
	}
	for {
		if m.state.Load()&stateClosed != 0 {
			m.discard()
			return nil, ErrClosed
		}
		v, ok := m.q.Pop()
		if !ok {
			if err := m.wait(ctx); err != nil {
				return nil, err
			}
			continue
		}
		// Save first, then match: a panicking match loses no message.
		prev = m.saveTail
		n := m.save(v)
		if match(v) {
			return m.unsave(prev, n), nil
		}
	}
}

// TryReceive returns the oldest message without blocking, or false when none
// is queued or the mailbox is closed. Owner only.
func (m *Mailbox) TryReceive() (any, bool) {
	if m.state.Load()&stateClosed != 0 {
		m.discard()
		return nil, false
	}
	return m.take()
}

// take returns the oldest message: the save list first, then the queue.
func (m *Mailbox) take() (any, bool) {
	if n := m.saveHead; n != nil {
		return m.unsave(nil, n), true
	}
	return m.q.Pop()
}

// save appends v to the save list and returns its node.
func (m *Mailbox) save(v any) *node[any] {
	n := m.q.newNode(v)
	if m.saveTail == nil {
		m.saveHead = n
	} else {
		m.saveTail.next.Store(n)
	}
	m.saveTail = n
	m.nsaved.Add(1)
	return n
}

// unsave removes n, whose predecessor on the save list is prev (nil for the
// head), frees its node and returns its value.
func (m *Mailbox) unsave(prev, n *node[any]) any {
	next := n.next.Load()
	if prev == nil {
		m.saveHead = next
	} else {
		prev.next.Store(next)
	}
	if m.saveTail == n {
		m.saveTail = prev
	}
	m.nsaved.Add(-1)
	v := n.val
	m.q.freeNode(n)
	return v
}

// discard drops every queued and saved message so the garbage collector can
// reclaim them. Owner only, on a closed mailbox.
func (m *Mailbox) discard() {
	for m.saveHead != nil {
		m.unsave(nil, m.saveHead)
	}
	for {
		if _, ok := m.q.Pop(); !ok {
			break
		}
	}
	m.q.rewind()
}

// wait blocks until the queue may hold a message (or the mailbox closed), and
// returns ctx's error, wrapped, if ctx ends first. A nil error does not
// promise a message: the caller loops. Owner only.
func (m *Mailbox) wait(ctx context.Context) error {
	if runtime.GOMAXPROCS(0) > 1 {
		for range spinRounds {
			runtime.Gosched()
			if m.q.ready() {
				return nil
			}
		}
	}
	done := ctx.Done()
	select {
	case <-done:
		return fmt.Errorf("mailbox: receive: %w", ctx.Err())
	default:
	}
	m.q.rewind()
	if testHookPark != nil {
		testHookPark()
	}
	if !m.state.CompareAndSwap(0, stateParked) {
		return nil // closed; the caller sees it
	}
	// Invariant 4: re-check after publishing parked.
	if m.q.ready() {
		m.unpark()
		return nil
	}
	select {
	case <-m.wake:
		return nil
	case <-done:
		m.unpark()
		return fmt.Errorf("mailbox: receive: %w", ctx.Err())
	}
}

// unpark clears parked on the owner's behalf; if a producer or Close cleared
// it first, it takes the token that one sends (invariant 3).
func (m *Mailbox) unpark() {
	if !m.state.CompareAndSwap(stateParked, 0) {
		<-m.wake
	}
}
