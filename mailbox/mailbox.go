package mailbox

// Mailbox: a Queue[any] plus park/wake, close and the selective-receive save
// list.
//
// Invariants.
//
//  1. One owner. Receive, ReceiveMatch and TryReceive run on one goroutine at
//     a time (the process). The save list, the queue's consumer side and a
//     message the owner gave itself (held, PushEncodedOwn, which it calls
//     from inside its own InlineReader's wait) are touched by the owner
//     only, so they need no synchronisation.
//  2. state holds a closed bit (sticky) and at most one parked bit:
//     parkedSema (the owner is, or is about to be, blocked on sema),
//     parkedChan (blocked on wake: for a context that can end, or any wait
//     without a deadline after ParkOnChannel), parkedFD (blocked in Go's
//     netpoller on an eventfd, fdpark_linux.go) or parkedInline (inside its
//     InlineReader's wait, reading the network itself). Only the
//     owner sets a parked bit, and only with a compare-and-swap from 0, so it
//     never parks on a closed mailbox.
//  3. One token per clear. Whoever clears a parked bit, other than the owner
//     itself, hands over exactly one token: an Unlock of sema for parkedSema,
//     a send on wake (capacity 1, never blocks) for parkedChan, a write of
//     the eventfd for parkedFD, a kick of the InlineReader (KickInline) for
//     parkedInline. sema is a
//     sync.Mutex used as a binary semaphore: it is locked while no token is
//     out, the owner takes a token with Lock and a waker gives one with
//     Unlock; Go mutexes are not tied to a goroutine, so this is legal. The
//     zero Mailbox's sema is unlocked: the owner locks it once, before it
//     first publishes parkedSema (semaLocked), and no token can be out
//     before that, since a waker unlocks only for a bit the owner set. So
//     the zero value is ready, whether New made it or it is held inside
//     another struct. When the owner fails to clear its parked bit itself it knows a
//     token is on its way and takes it before going on, so no token ever
//     lingers, a park on sema, wake or an eventfd never wakes spuriously,
//     and sema is never unlocked
//     twice (an Unlock happens only for a parked bit the owner set after it
//     took the previous token). The kick is the one token nobody takes: it
//     ends the reader's wait if it still waits, and a kick that comes after
//     that wait ended ends a later one early, whose owner finds no message
//     and waits again (package loop's ReadInline).
//  4. No lost wake-up. The owner publishes a parked bit (CAS) and then
//     re-checks the queue's next slot; a producer publishes its slot (Queue
//     step P3) and then loads state. All four are sequentially consistent
//     atomics, so either the owner's re-check sees the value, or the
//     producer's load sees the bit and wakes it. This holds in the Queue's
//     window too: a producer between its claim and its publish has not
//     checked state yet, and will after publishing.
//  5. Cost on the send path while the owner runs: one atomic load of state
//     before and one after the Queue push. A wake-up happens only on the
//     transition to parked, once per park.
//  6. Close sets closed and clears the parked bits in one CAS and wakes a
//     parked owner (rule 3). From then on Push refuses messages; a Push that
//     read state just before Close may still enqueue, and that message is
//     discarded like the rest (by the owner's next receive call, or with the
//     Mailbox by GC).
//  7. wake is made lazily by the owner, the first time it parks on it (a
//     context that can end, or after ParkOnChannel), before it sets
//     parkedChan; a waker reads it only after seeing parkedChan, so the
//     atomic orders the two.
//
// Size. The struct is the Queue (six words), state, the save-list pointers,
// sema, the wake pointer, the inbox pointer, the owner's read position in
// it (two int32s), the ParkOnChannel flag, the held flag (in the flag's
// padding) and the InlineReader: 144 bytes, the allocator's 144-byte
// class, and that is all New allocates.
// An idle mailbox holds no queue segment (Queue.rewind runs before each
// park) and, until it first parks on its channel (a
// cancellable wait, or any wait after ParkOnChannel: every group member),
// no channel (about 96 bytes more then).

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// testHookPark, when set by a test, runs each time the owner is about to
// publish parked: tests count parks with it and yield there to widen the
// window between the owner's last empty check and its park.
var testHookPark func()

// testHookSpin, when set by a test, runs at each round of the spin before
// a park.
var testHookSpin func()

// ErrClosed is returned by Receive and ReceiveMatch once the mailbox is closed.
var ErrClosed = errors.New("mailbox: closed")

const (
	stateParkedSema   uint32 = 1 << iota // the owner waits on sema (rule 2)
	stateParkedChan                      // the owner waits on wake and ctx.Done()
	stateClosed                          // Close was called; sticky
	stateParkedFD                        // the owner waits in Go's netpoller on the eventfd in efd (fdpark_linux.go)
	stateParkedInline                    // the owner waits inside its InlineReader's WaitInline: a waker kicks it (KickInline)

	stateParked = stateParkedSema | stateParkedChan | stateParkedFD | stateParkedInline
)

// spinRounds bounds how often an owner that found its queue empty yields to
// other goroutines, re-checking, before it parks. A short yield lets a
// producer running on another core land its next message without the owner
// paying a park and a wake-up; it is skipped with GOMAXPROCS=1.
var spinRounds = 4 // a var so tests can force every wait to park

// procs caches runtime.GOMAXPROCS(0) for wait's choice to spin. Reading it
// takes the scheduler's global lock, the lock every yield of the spin
// (runtime.Gosched puts the goroutine on the global run queue) takes as
// well: read at every wait it was a tenth of a local ping-pong's CPU
// (docs/latency.md). Refreshed by every wait that goes on to park, except
// one after ParkNext (the lock and a store to this shared word at every
// wait of a remote round trip, on both sides, for a wait that does not
// spin anyway), so a change of GOMAXPROCS is seen from the next such park
// on; a stale value only makes a wait spin or not.
var procs atomic.Int32

func init() { procs.Store(int32(runtime.GOMAXPROCS(0))) }

// Mailbox is a process mailbox: many senders, one receiving goroutine (the
// owner). Senders never wait for the owner: Push takes no lock, and
// PushEncoded holds the mailbox's inbox lock only to copy the bytes. The
// owner blocks in Receive until a message arrives, its context ends, or the
// mailbox is closed. Messages from one sender are received in the order that
// sender pushed them, plain and encoded alike.
//
// The zero Mailbox is an empty, open mailbox, ready to be held inside its
// owner's struct (a node's process holds its mailbox so: one allocation for
// both); New returns one of its own. A Mailbox must not be copied.
type Mailbox struct {
	q Queue[any]

	soon atomic.Int32 // > 0: poll this many ns before the next park (ExpectSoon); < 0: park at once (ParkNext); set by any goroutine
	efd  atomic.Int32 // the eventfd the owner waits on while stateParkedFD is set (owner sets it before the bit)

	state  atomic.Uint32 // stateParked* | stateClosed, see invariants 2, 3, 6
	nsaved atomic.Int32  // length of the save list, for Len

	// Owner only: messages ReceiveMatch skipped, in arrival order.
	saveHead, saveTail *saveNode

	sema sync.Mutex    // binary semaphore, locked while no token is out (invariant 3)
	wake chan struct{} // capacity 1, made lazily by the owner (invariant 7)

	inbox atomic.Pointer[inbox] // encoded messages (encoded.go); nil until the first
	rd    encReader             // owner only: read position in inbox

	onChan atomic.Bool // waits with no deadline park on wake (ParkOnChannel); set by any goroutine, never cleared
	held   bool        // owner only: a message the owner gave itself is held in the inbox (PushEncodedOwn)
	// semaLocked: owner only: sema has been locked once, the no-token state
	// (invariant 3); the zero Mailbox's is not yet.
	semaLocked bool

	inline InlineReader // set before the mailbox is shared (SetInlineReader); nil: none
}

// saveNode is one message on the save list. Owner only.
type saveNode struct {
	next *saveNode
	val  any
}

var savePool = sync.Pool{New: func() any { return new(saveNode) }}

// New returns an empty, open mailbox, as the zero Mailbox is. Safe from
// any goroutine.
func New() *Mailbox { return new(Mailbox) }

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

// wakeOwner clears the parked bits and, if this call cleared one, hands the
// owner its token.
func (m *Mailbox) wakeOwner() {
	m.giveToken(m.state.And(^stateParked))
}

// giveToken hands over the token for the parked bit set in old, the state
// this caller just cleared it from (invariant 3).
func (m *Mailbox) giveToken(old uint32) {
	switch {
	case old&stateParkedSema != 0:
		m.sema.Unlock()
	case old&stateParkedFD != 0:
		fdWake(m.efd.Load())
	case old&stateParkedInline != 0:
		m.inline.KickInline()
	case old&stateParkedChan != 0:
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
			m.giveToken(s)
			return
		}
	}
}

// Closed reports whether Close has been called. Safe from any goroutine.
func (m *Mailbox) Closed() bool { return m.state.Load()&stateClosed != 0 }

// Len returns the number of messages queued, including those a selective
// receive skipped, but not one the owner gave itself while reading inline
// and has not received yet (PushEncodedOwn: it is received within the
// same receive call). Approximate under concurrency. Safe from any goroutine.
func (m *Mailbox) Len() int {
	return m.q.Len() + int(m.nsaved.Load()) + m.queuedExtra()
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

// ExpectSoon tells the mailbox that the owner expects a message within
// about d (it has just sent a request across the network): the next time the
// owner would park waiting, it polls for up to d first. The poll costs CPU
// for at most d; catching the reply in it saves the wake-up of a parked
// goroutine, which dominates a round trip between nodes. It has no effect
// with GOMAXPROCS=1. Safe from any goroutine (a process may send from
// several).
func (m *Mailbox) ExpectSoon(d time.Duration) { m.setSoon(int32(min(max(d, 0), maxSoon))) }

// maxSoon bounds ExpectSoon's poll (soon holds nanoseconds in 32 bits).
const maxSoon = time.Second

// ParkNext makes the owner's next wait park at once, skipping the short
// spin (a few yields looking for a message) that waits do first. Use it
// when the next message will come from a goroutine that readies the owner
// and then gives it its own thread, such as a network event loop
// delivering a reply: spinning then only takes a core from that thread and
// from the threads of the far side. It cancels an ExpectSoon not yet used
// and applies to one wait. Safe from any goroutine (a process may send
// from several).
func (m *Mailbox) ParkNext() { m.setSoon(-1) }

// An InlineReader waits for an owner's next message by reading, on the
// owner's goroutine, the network input most likely to bring it (package
// loop's Conn.ReadInline: the link the owner's last request went out on),
// instead of parking while a network event loop reads it: the reply then
// costs no hand-off between goroutines. The mailbox asks it in the first
// wait after ParkNext. WaitInline reports false, at once, when it cannot
// read; else it returns once it waited, with or without a message (the
// owner checks, and waits again as usual if need be), and it must end
// its wait when ctx ends or when the owner's park is ended by a waker
// (m is its InlineParker; a waker that ends the park calls KickInline).
type InlineReader interface {
	// WaitInline is the wait. Called on the owner's goroutine.
	WaitInline(ctx context.Context, m *Mailbox) bool
	// KickInline ends the owner's WaitInline, if it waits: called once by
	// a waker that ended the owner's inline park (InlineUnpark then
	// fails), on the waker's goroutine. It must not block.
	KickInline()
	// ParkBegin and ParkEnd bracket every park of the owner that does not
	// read inline (without ParkNext, after WaitInline reported false, or
	// after it returned with no message): its next message, if it comes
	// from the network, is read by others, and they should not keep it
	// waiting (package loop's Engine.ParkBegin). Called on the owner's
	// goroutine; they must return promptly.
	ParkBegin()
	ParkEnd()
}

// SetInlineReader sets the mailbox's InlineReader (see there). Call it
// before the mailbox is shared with other goroutines.
func (m *Mailbox) SetInlineReader(r InlineReader) { m.inline = r }

// InlineReader returns the mailbox's InlineReader (nil: none). Safe from
// any goroutine once the mailbox is shared (SetInlineReader comes before).
func (m *Mailbox) InlineReader() InlineReader { return m.inline }

// setSoon stores v unless it is there already: most sends find it set, and
// skipping the store keeps the cache line shared.
func (m *Mailbox) setSoon(v int32) {
	if m.soon.Load() != v {
		m.soon.Store(v)
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
	var prev *saveNode
	for n := m.saveHead; n != nil; prev, n = n, n.next {
		if match(n.val) {
			return m.unsave(prev, n), nil
		}
	}
	for {
		if m.state.Load()&stateClosed != 0 {
			m.discard()
			return nil, ErrClosed
		}
		v, ok := m.pop()
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
	return m.pop()
}

// save appends v to the save list and returns its node.
func (m *Mailbox) save(v any) *saveNode {
	n := savePool.Get().(*saveNode)
	n.val = v
	if m.saveTail == nil {
		m.saveHead = n
	} else {
		m.saveTail.next = n
	}
	m.saveTail = n
	m.nsaved.Add(1)
	return n
}

// unsave removes n, whose predecessor on the save list is prev (nil for the
// head), pools its node and returns its value.
func (m *Mailbox) unsave(prev, n *saveNode) any {
	if prev == nil {
		m.saveHead = n.next
	} else {
		prev.next = n.next
	}
	if m.saveTail == n {
		m.saveTail = prev
	}
	m.nsaved.Add(-1)
	v := n.val
	*n = saveNode{}
	savePool.Put(n)
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
	m.dropInbox()
}

// wait blocks until the queue may hold a message (or the mailbox closed), and
// returns ctx's error, wrapped, if ctx ends first. A nil error does not
// promise a message: the caller loops. Owner only.
func (m *Mailbox) wait(ctx context.Context) error {
	parkNext := false
	if m.soon.Load() < 0 {
		m.soon.Store(0) // ParkNext
		parkNext = true
	} else if procs.Load() > 1 {
		for range spinRounds {
			if testHookSpin != nil {
				testHookSpin()
			}
			runtime.Gosched()
			if m.q.ready() {
				return nil
			}
		}
		if soon := time.Duration(m.soon.Swap(0)); soon > 0 {
			// The owner expects a reply very soon (ExpectSoon): poll for
			// it rather than park. Being readied from a park makes the
			// runtime wake an idle OS thread (wakep), several µs on each
			// side of a network round trip; a poll that catches the reply
			// pays none of it.
			end := time.Now().Add(soon)
			for time.Now().Before(end) {
				runtime.Gosched()
				if m.q.ready() {
					return nil
				}
			}
		}
	}
	// Before parking, or returning because ctx ended (the spin above can
	// outlast a short deadline), give back what an idle owner needs not
	// hold: the drained queue segment and the inbox chunk.
	if !parkNext {
		procs.Store(int32(runtime.GOMAXPROCS(0)))
	}
	m.q.rewind()
	m.rewindInbox()
	done := ctx.Done()
	select {
	case <-done:
		return fmt.Errorf("mailbox: receive: %w", ctx.Err())
	default:
	}
	if testHookPark != nil {
		testHookPark()
	}
	if parkNext && m.inline != nil && m.inline.WaitInline(ctx, m) {
		if m.held || m.q.ready() || m.state.Load()&stateClosed != 0 || ctx.Err() != nil {
			return nil // the caller checks the queue and ctx
		}
		// The reader gave up without the message (its link's loop wanted
		// the link back, or a stale wake): the park after ParkNext.
	}
	if m.inline == nil {
		return m.park(ctx, done, parkNext)
	}
	m.inline.ParkBegin()
	err := m.park(ctx, done, parkNext)
	m.inline.ParkEnd()
	return err
}

// park is wait's park: on the channel (ParkOnChannel), an eventfd (after
// ParkNext), the channel for a context that can end, or the semaphore.
// Owner only.
func (m *Mailbox) park(ctx context.Context, done <-chan struct{}, parkNext bool) error {
	if done == nil && m.onChan.Load() {
		m.parkChan()
		return nil
	}
	if parkNext && done == nil {
		// The message comes from a network loop: wait where that loop
		// can ready the owner without waking a thread (fdpark_linux.go).
		if w := getFDWaiter(); w != nil {
			m.parkFD(w)
			putFDWaiter(w)
			return nil
		}
	}
	bit := stateParkedSema
	if done != nil {
		if m.wake == nil {
			m.wake = make(chan struct{}, 1)
		}
		bit = stateParkedChan
	} else if !m.semaLocked {
		// The zero value's sema is free: lock it, the no-token state,
		// before the first parkedSema is published (invariant 3).
		m.sema.Lock()
		m.semaLocked = true
	}
	if !m.state.CompareAndSwap(0, bit) {
		return nil // closed; the caller sees it
	}
	// Invariant 4: re-check after publishing parked.
	if m.q.ready() {
		m.unpark(bit)
		return nil
	}
	if done == nil {
		m.sema.Lock() // the token: a producer or Close cleared bit
		return nil
	}
	select {
	case <-m.wake:
		return nil
	case <-done:
		m.unpark(bit)
		return fmt.Errorf("mailbox: receive: %w", ctx.Err())
	}
}

// ParkOnChannel makes every later wait of the owner with no deadline park
// on the mailbox's channel, the way a wait with a cancellable context does,
// instead of on its semaphore (or an eventfd after ParkNext). Waking an
// owner parked on a semaphore walks the runtime's process-wide tree of
// semaphore waiters, a cost that grows with the number of goroutines parked
// that way (with 100 000 parked, a few µs a wake-up, most of a fan-out's
// CPU); a channel has a queue of its own, and its wake-up costs the same
// however many are parked. Meant for owners that many goroutines, or one
// fanning out, wake (process-group members). It cannot be undone. Safe
// from any goroutine.
func (m *Mailbox) ParkOnChannel() {
	if !m.onChan.Load() {
		m.onChan.Store(true)
	}
}

// parkChan is wait's park after ParkOnChannel: parkedChan with no context
// (invariants 2-4 and 7, the token a send on wake). Owner only.
func (m *Mailbox) parkChan() {
	if m.wake == nil {
		m.wake = make(chan struct{}, 1)
	}
	if !m.state.CompareAndSwap(0, stateParkedChan) {
		return // closed; the caller sees it
	}
	if m.q.ready() { // invariant 4
		m.unpark(stateParkedChan)
		return
	}
	<-m.wake
}

// unpark clears the owner's parked bit on its own behalf; if a producer or
// Close cleared it first, it takes the token that one hands over
// (invariant 3).
func (m *Mailbox) unpark(bit uint32) {
	if m.state.CompareAndSwap(bit, 0) {
		return
	}
	if bit == stateParkedSema {
		m.sema.Lock()
	} else {
		<-m.wake
	}
}

// The InlineParker side of a mailbox (package loop's ReadInline), for an
// InlineReader's wait: a park (invariants 2-4) whose token is a kick of
// the InlineReader (KickInline), so that a waker ends the reader's wait
// as it ends any park. Owner only, inside WaitInline.

// InlinePark publishes the owner as parked inline; false when it must not
// wait: a message is queued (the bit was taken back) or the mailbox is
// closed.
func (m *Mailbox) InlinePark() bool {
	if m.inline == nil {
		return false // nobody to kick it: a misuse outside WaitInline
	}
	if m.held {
		return false // its message is held (PushEncodedOwn)
	}
	if !m.state.CompareAndSwap(0, stateParkedInline) {
		return false // closed
	}
	if m.q.ready() && m.state.CompareAndSwap(stateParkedInline, 0) {
		return false // invariant 4
	}
	return true
}

// InlineUnpark takes the parked bit back; false when a waker cleared it
// first: that waker kicks the InlineReader, once (a kick that comes after
// the reader's wait ended ends a later wait early, which waits again).
func (m *Mailbox) InlineUnpark() bool { return m.state.CompareAndSwap(stateParkedInline, 0) }

// InlineWoken reports that a waker cleared the parked bit (a message came,
// or the mailbox closed).
func (m *Mailbox) InlineWoken() bool { return m.state.Load()&stateParkedInline == 0 }

// InlineReady reports that a message is queued or held (PushEncodedOwn),
// or the mailbox is closed.
func (m *Mailbox) InlineReady() bool {
	return m.held || m.q.ready() || m.state.Load()&stateClosed != 0
}
