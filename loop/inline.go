package loop

// Inline reading: a goroutine waiting for input from a conn reads the
// conn's socket itself.
//
// A request's sender that waits for the reply (a process after a remote
// send) would otherwise park, and the reply would cross two goroutines
// before it runs again: the netpoller wakes the loop goroutine, gnet reads
// the socket, the loop decrypts and decodes and wakes the process, and the
// process runs. The raw crypto/tls pipe crosses one: its reader waits in
// Go's netpoller and the thread the kernel wakes runs it at once. So the
// waiter may take the conn's read duty from its loop (ReadInline): it
// waits in Go's netpoller for the socket, and when input comes it runs the
// conn's read path on its own goroutine (read(2), the TLS open, the
// handler's OnData, which delivers to every mailbox as the loop would),
// until its own message is there; then it gives the duty back. In a steady
// ping-pong the loop is not woken at all. docs/latency.md has the
// measurements.
//
// The duty (Conn.duty) is the right to read the socket and to call
// OnData. It is the loop's, except while a holder has it or it lingers
// between two holders:
//
//  1. Taking it. Only while the loop goroutine waits in the netpoller
//     (idleWait.waiting), at a point where gnet has no event of this conn
//     left to handle from its last epoll_wait: at the end of this conn's
//     own OnTraffic (a descriptor comes once per epoll_wait), or in one of
//     our tasks (gnet runs tasks after the batch of I/O events). The loop
//     publishes which (idleWait.parkedIn) before it waits. A taker and the
//     loop agree through idleWait.lend: the taker sets it, checks that the
//     loop still waits, takes the duty and clears EPOLLIN from the socket's
//     registration in gnet's epoll instance, then clears lend; a loop that
//     stops waiting clears waiting and then waits for lend to be clear, so
//     gnet never resumes in the middle of a grant. The conn must be idle
//     for writes too (direct set: gnet's outbound buffer is empty), see 3.
//     A loop that waits on its sole conn's socket holds the duty itself
//     (dutyLoop, EPOLLIN off: idle.go, waitSocket); a taker then takes it
//     over in the grant (dutyLoop → dutyHeld, no epoll_ctl) and pokes the
//     loop's wait, and the loop, which reads the socket only with waiting
//     clear and lend clear, goes on waiting on gnet's instance.
//  2. While a holder has it (or it lingers, rule 4), gnet is never told
//     about the socket's input: EPOLLIN is off. EPOLLERR and EPOLLHUP
//     cannot be masked, but with no EPOLLIN gnet closes the conn on them
//     without reading (gnet v2.9.7, processIO). OnTraffic finding the
//     duty away (which the rule of 1 excludes) closes the conn rather
//     than read beside the holder.
//  3. gnet sets EPOLLIN again by itself when it writes the socket from its
//     outbound buffer (a partial write registers EPOLLIN|EPOLLOUT, the end
//     of the drain EPOLLIN). So the loop never writes a conn through gnet
//     while its duty is away (held or lingering). gnet's buffer is empty
//     then, and flushQueue writes the socket itself (flushBesideHolder); what the socket does
//     not take, and a close, need gnet: the loop, holding the drain token,
//     recalls the duty (dutyRecall, and the holder's wait is ended) and
//     returns keeping the token; the holder, giving the duty back,
//     schedules the conn, and the loop's next flushQueue goes on through
//     gnet. Direct writers write a duplicate of the socket, never gnet.
//  4. Giving it back: when nothing needs the duty home (no recall, the
//     conn not closing, the engine not stopping; no other waiter found it
//     held, inlShared, until a taker finds that mark older than
//     sharedFor; its inline resources not denied, inlRetry; no goroutine
//     parked for input that the loops read for it, nor another holder,
//     which may wait for input on this conn: Engine.ParkBegin; and the
//     holder had inline resources and its wait did not end on the end of
//     input or an error, which gnet must see), the holder leaves it
//     lingering (dutyLinger):
//     nobody reads, EPOLLIN stays off, and no epoll_ctl is made. A waiter
//     (any process waiting on that conn) takes a lingering duty with one
//     CAS and no grant (takeLingering): rule 1's handshake is there so that
//     the mask is set while gnet has no event of the conn to handle, and
//     a lingering duty has been masked since the grant that lent it, so
//     gnet has had no input event of the conn since, and the loop reads a
//     conn only with its duty home (OnTraffic, which counts a lingering
//     duty as away, as rule 2; waitSocket, which takes only a duty at 0).
//     The loop writes beside a lingering duty as beside a holder (rule 3),
//     so gnet's outbound buffer stays empty. The bound: a timer
//     (lingerTick), armed when a duty starts lingering and is not armed,
//     re-armed while it keeps being taken again, reclaims a duty that was
//     not taken again for lingerPeriod, on the timer's goroutine
//     (reclaimDuty: marked returning, EPOLLIN on, then the duty 0); meanwhile input that nobody waits for
//     (a peer's tick, a registry update, a message for a process that is
//     running, a spawn request while the process that an idle starter
//     read for itself runs: package node's spawn_start.go, its rule 4)
//     waits for it. A recall (a spill, a close, a graceful
//     drain; recallDuty) or OnClose's call-back (callBack with dutyEnd,
//     rule 5) reclaims a lingering duty at once instead, and so does a
//     goroutine's ParkBegin (a process that parks, or that takes another
//     conn's duty), which
//     counts its park (Engine.parked) and then looks for lingering duties
//     (Engine.lingering, counted before a duty lingers); a holder counts
//     the duty lingering, leaves it so, then looks at the parks and takes
//     it back if there is one. Likewise a waiter that found the duty held
//     and parks stores inlShared and looks for a lingering duty again; a
//     holder that left it lingering looks at inlShared again. One of the
//     two sees the other, so a parked goroutine's input is never left to
//     the timer.
//     Otherwise the holder marks the duty returning (it has handed
//     over its last input and touches nothing of the input side any more),
//     sets EPOLLIN again (level-triggered: input that came meanwhile is
//     reported at once), then clears the duty, last; a recall is answered
//     by scheduling the conn. No one takes the duty while it is returning
//     (so no grant's mask is undone by the hand-back's unmask), and a loop
//     that is running meanwhile and is handed the input reads it at once:
//     the returning mark ordered the holder's last reads before its own.
//  5. gnet closes the descriptor right after OnClose, and the number can
//     be reused at once. OnClose recalls the duty and waits, on the loop,
//     until it is back before it does anything else (a lingering duty is
//     reclaimed there and then). Its mark is dutyEnd, not dutyRecall:
//     OnClose keeps no drain token, so the holder's hand-back schedules
//     no drain (one would run with the token free, beside a sender that
//     won it). A holder is never inside OnData, nor
//     touching the descriptor, once Handler.OnClose runs. No duty is taken
//     afterwards (the close ladder is checked under the grant, and the
//     duty never lingers again once it is home at OnClose: only a holder
//     leaves it lingering), and the conn's inline resources are closed
//     there.
//
// A holder waits for the socket itself in Go's netpoller, through a
// duplicate of its descriptor (inlineRes), as a net.Conn reader does: the
// kernel wakes the holder's thread straight from the socket. (An earlier
// version waited on an epoll instance of the conn's own holding the socket
// and an eventfd, one more level of epoll between the peer's write and the
// holder; docs/latency.md measures both.) Whatever else ends a parked
// owner's wait (a local message, a timer, its mailbox closing: a waker
// that ends the InlineParker's park, then calls KickInline), a context
// that can end, and a recall, poke the wait: a read deadline in the past.
//
// What it costs: two epoll_ctl per grant (the mask and the unmask), none
// for a wait that takes a lingering duty (a steady ping-pong's; about 1-4
// µs each on the reference VM, see internal/nbio's BenchmarkSyscallCost),
// up to about two lingerPeriods of delay for input that nobody waits for
// while the duty lingers (a duty lingers only while no goroutine is
// parked for input, nor holds another conn's duty: a node with processes
// parked for their next message gets no lingering, and pays the two
// epoll_ctl), two atomic adds on an engine-wide counter a park and a wait
// (ParkBegin, ParkEnd), and for a park that begins while a duty lingers
// a walk of the conns whose duty may linger and the reclaim's epoll_ctl,
// on the parking goroutine; one runtime timer tick a lingerPeriod while a
// duty keeps lingering; and one descriptor per conn that was ever read
// inline (the duplicate, from the dup budget; a conn denied one is read by
// its loop).

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshrt/mesh/internal/nbio"
)

// InlineParker is a waiting owner's side of ReadInline: how it parks, so
// that its wakers kick the conn's holder (KickInline), and how it learns
// that its wait is over. *mailbox.Mailbox and *mailbox.Waiter implement
// it; a caller may implement it for a goroutine of its own that reads a
// conn inline while it waits for something else. Called by ReadInline on
// the owner's goroutine only.
type InlineParker interface {
	// InlinePark publishes the owner as parked: a waker that ends the park
	// then calls KickInline on the conn. False when it must not wait (a
	// message is queued, or it is closed).
	InlinePark() bool
	// InlineUnpark takes the parked state back; false when a waker ended
	// it first (its kick may still be on the way).
	InlineUnpark() bool
	// InlineWoken reports that a waker ended the park.
	InlineWoken() bool
	// InlineReady reports that the owner's wait is over: a message is
	// queued or held (package mailbox's PushEncodedOwn), or it is closed.
	InlineReady() bool
}

// Duty states (Conn.duty).
const (
	dutyHeld      int32 = 1 << iota // a holder reads the socket; EPOLLIN is off in gnet's epoll
	dutyRecall                      // the loop wants it back (it holds the drain token, rule 3)
	dutyReturning                   // the holder is done reading and sets EPOLLIN again (rule 4)
	dutyLoop                        // the loop waits on the socket itself and reads it (idle.go, waitSocket); EPOLLIN is off
	dutyLinger                      // lingering: given back by a holder with EPOLLIN left off; nobody reads (rule 4)
	dutyEnd                         // OnClose wants it back (rule 5); unlike dutyRecall, nobody keeps the drain token for it
)

// lingerPeriod bounds a lingering duty (rule 4): the linger timer
// reclaims one that was not taken again for a whole period, so a
// lingering duty lasts one to two periods after the last hand-back. That
// is the delay of input that nobody waits for while the duty lingers (a
// peer's tick, a registry update, a message for a process that is
// running, a spawn request behind a spawned process that runs without
// parking: when it next waits, its park reclaims the duty); input that a
// goroutine waits for never waits for the timer (Engine.ParkBegin). Its
// cost is the timer's ticks while the duty keeps being taken again, a
// goroutine and often a thread's wake-up each: in a steady ping-pong at
// 1 ms they took back all that the saved epoll_ctl gave; at 10 ms the
// idle p50 was 12% under the tree's without lingering (p=0.002), as at
// 20 ms (docs/latency.md, "The lingering duty, landed").
const lingerPeriod = 10 * time.Millisecond

// sharedFor: after a waiter found another holding a conn's duty, no duty
// of that conn is lent for this long; its waiters park and the loop reads
// for them. With eight callers on one link, lending anyway cost 10-20% of
// the calls/s (docs/latency.md).
const sharedFor = time.Millisecond

// inlineBuf is the ciphertext a holder reads at once.
const inlineBuf = 64 << 10

// inlineBufs are a holder's buffers, pooled between waits: a conn keeps
// none while nobody reads it inline.
type inlineBufs struct {
	in    []byte // ciphertext, inlineBuf
	plain []byte // plaintext gathered for OnData
}

var inlineBufPool = sync.Pool{New: func() any { return &inlineBufs{in: make([]byte, inlineBuf)} }}

// inlineRes is a conn's duplicate of its socket for holders, in Go's
// netpoller. Made by the first holder, closed by OnClose once the duty is
// home, or by inlineIdleCheck; the fields a holder sets are the current
// holder's (holders follow each other through the duty).
type inlineRes struct {
	sock *os.File // the duplicate
	rc   syscall.RawConn
	fd   int // sock's descriptor

	poked  atomic.Bool // a poke set a past deadline: the next wait sets its own
	cancel atomic.Bool // a holder's context ended
	dl     time.Time   // holder: the read deadline set last (zero: none)

	// A context that can end, which the holder's wait must end with, is
	// watched by a registration (context.AfterFunc): its adding and
	// removal are two allocations, a lock and a map insert and delete in
	// the context, about 2 300 instructions a wait, more than a side's
	// mailbox and codec work. A context that came back for the next wait
	// (a process receiving with one context, wait after wait) keeps its
	// registration (ctxStop) until a wait comes with another, or the
	// resources close; any other is registered for the one wait, as
	// before. The kept one's callback acts only while its generation is
	// current (ctxGen, under ctxMu): after a wait dropped it, a callback
	// that runs late (the context's cancel starts it on a goroutine of
	// its own) does not end a later holder's wait.
	ctxMu    sync.Mutex
	ctxGen   uint64          // ctxMu: the kept registration's generation
	ctxDone  <-chan struct{} // holder (and close): the kept registration's context's Done; nil: none kept
	ctxStop  func() bool     // holder (and close): the kept registration's stop
	lastDone <-chan struct{} // holder: the previous wait's context's Done
	ended    bool            // holder: its wait ended on the end of input or an error (giveDuty's home)
	uses     uint64          // holder: waits held (inlineIdleCheck)
	// usesMark is uses at the last idle check. Loop only; uses is read
	// there while no duty is out, after the last holder's hand-back.
	usesMark uint64

	// Holder: the current wait's.
	c      *Conn
	p      InlineParker
	buf    []byte
	n      int
	errno  unix.Errno // the last read's: 0, EAGAIN, or the error that ends the wait
	readFn func(uintptr) bool
}

// inlineClosed marks a conn whose inline resources were closed (OnClose):
// none is made after it.
var inlineClosed = new(inlineRes)

// ReadInline waits for p's next message by reading c's input on the
// calling goroutine, if it can take c's read duty (see the top of this
// file); it reports false, at once, when it cannot, and the caller parks
// as usual. When it took the duty it returns true once p's wait is over
// (InlineReady), ctx ended, its deadline passed, the loop recalled the
// duty, or the input ended or failed (the loop then reports it): the
// caller checks for its message and its context and waits again if need
// be. Call it from the goroutine that owns p, never from a loop.
func (c *Conn) ReadInline(ctx context.Context, p InlineParker) bool {
	dl, _ := ctx.Deadline()
	return c.readInline(ctx, dl, p)
}

// ReadInlineUntil is ReadInline for a wait bounded by a deadline only
// (zero: none), which allocates nothing for it.
func (c *Conn) ReadInlineUntil(deadline time.Time, p InlineParker) bool {
	return c.readInline(context.Background(), deadline, p)
}

// readInline is ReadInline with the context's deadline dl.
func (c *Conn) readInline(ctx context.Context, dl time.Time, p InlineParker) bool {
	ls := c.ls.Load()
	if ls == nil || c.reached(closeRequested) {
		return false
	}
	w := ls.idle.Load()
	if w == nil {
		return false
	}
	if !c.takeLingering() {
		if !c.direct.Load() || !w.waiting.Load() || c.inl.Load() == inlineClosed || c.inlineHeldOff() {
			return false
		}
		if !c.takeDuty(w) {
			if c.duty.Load()&dutyHeld == 0 {
				return false
			}
			// Another waiter reads the conn: with several waiting on one
			// conn, one would read for all and wake the others from its
			// goroutine; the loop does that better (sharedFor). Then the
			// duty may have come to linger (giveDuty): taken, it is not
			// left stranded until the loop reclaims it.
			c.inlShared.Store(max(monoNow(), 1))
			if !c.takeLingering() {
				return false
			}
		}
	}
	// The holder waits for its message, which may come on another conn
	// (a reply from a second node): it counts as parked for the others
	// (rule 4), until giveDuty.
	c.e.ParkBegin()
	// Deferred: a panic in the handler, which the process's goroutine may
	// recover from, must not leave the conn unread and its loop waiting in
	// OnClose; and the input it was handling is half handled, so the conn
	// is closed (on the loop such a panic ends the OS process).
	var r *inlineRes
	defer func() {
		if v := recover(); v != nil {
			_ = c.Close(fmt.Errorf("%w: the handler panicked on a goroutine reading inline: %v", ErrClosed, v))
			c.giveDuty(ls, w, true)
			panic(v)
		}
		c.giveDuty(ls, w, r == nil || r.ended) // no resources: not lent again (inlRetry), so home
	}()
	r = c.inlineRes()
	if r == nil {
		return false
	}
	c.holdDuty(ctx, dl, ls, r, p)
	return true
}

// inlineHeldOff reports that no duty of c is lent now: its inline
// resources were denied (inlRetry) or a waiter found the duty held by
// another less than sharedFor ago (inlShared). Both are 0 when unset, and
// set back to 0 once passed, so the steady case reads no clock (a clock
// read is tens of ns in a VM, and this runs at every wait of a round
// trip). Holder-to-be.
func (c *Conn) inlineHeldOff() bool {
	retry, shared := c.inlRetry.Load(), c.inlShared.Load()
	if retry == 0 && shared == 0 {
		return false
	}
	now := monoNow()
	if (retry != 0 && now < retry) || (shared != 0 && now-shared < int64(sharedFor)) {
		return true
	}
	c.inlRetry.CompareAndSwap(retry, 0)
	c.inlShared.CompareAndSwap(shared, 0)
	return false
}

// takeDuty takes c's read duty while c's loop waits (rule 1). Holder.
func (c *Conn) takeDuty(w *idleWait) bool {
	if !w.lend.CompareAndSwap(false, true) {
		return false
	}
	ok := w.waiting.Load() && w.lendable(c) && c.direct.Load() && !c.reached(closeRequested)
	switch {
	case !ok:
	case c.duty.CompareAndSwap(0, dutyHeld):
		if w.setEvents(c.gc.Fd(), 0) != nil {
			c.duty.Store(0)
			ok = false
		} else {
			c.grants.Add(1)
		}
	case c.duty.CompareAndSwap(dutyLoop, dutyHeld):
		// The loop waits on the socket (idle.go, waitSocket), EPOLLIN
		// off already: it is told to wait on gnet's instance instead.
		w.takenOver.Add(1)
		c.inlTakeover.Store(max(monoNow(), 1))
		if s := w.sock.Load(); s != nil {
			s.poke()
		}
	default:
		ok = false
	}
	w.lend.Store(false)
	return ok
}

// giveDuty gives the duty back (rule 4); home: it does not linger (the
// holder's wait ended on the end of input or an error, which the loop
// must see to close the conn: with EPOLLIN off it would not, and the
// next holder would read the end again). Holder.
func (c *Conn) giveDuty(ls *loopState, w *idleWait, home bool) {
	e := c.e
	e.ParkEnd() // readInline's ParkBegin: the holder's own wait is over
	if !home && e.parked.Load() == 0 && c.inlShared.Load() == 0 && c.inlRetry.Load() == 0 && !c.reached(closeRequested) && !e.stopping.Load() {
		// Nothing needs the duty home: it lingers, EPOLLIN still off.
		c.lingers.Add(1)   // before it lingers: the linger timer compares it after it sees dutyLinger
		e.lingering.Add(1) // before it lingers: ParkBegin looks at it after it counts its park
		if h := testHookBeforeLinger.Load(); h != nil {
			(*h)(c)
		}
		if c.duty.CompareAndSwap(dutyHeld, dutyLinger) {
			// A waiter that found the duty held (inlShared) and parks
			// stores inlShared and then looks for a lingering duty
			// (readInline), and a goroutine that parks for input the loop
			// reads for it counts its park and then looks at
			// Engine.lingering (ParkBegin): either it sees this one and
			// takes or reclaims it, or this sees its mark and gives the
			// duty back as below, unless the waiter or the loop took it
			// meanwhile.
			if e.parked.Load() == 0 && c.inlShared.Load() == 0 && !c.reached(closeRequested) {
				c.armLinger()
				return
			}
			if !c.duty.CompareAndSwap(dutyLinger, dutyHeld) {
				return // taken again, or reclaimed by the loop: they counted it off
			}
		}
		e.lingering.Add(-1)
	}
	// A running loop sees the input as soon as EPOLLIN is set, before the
	// duty is clear: dutyReturning tells its OnTraffic that the holder
	// reads no more (readerAway).
	c.duty.Or(dutyReturning)
	if err := w.setEvents(c.gc.Fd(), gnetReadEvents); err != nil {
		// Input would never be read again: end the conn, loudly.
		c.inlineFailed.Add(1)
		_ = c.Close(fmt.Errorf("%w: restoring its input events: %w", ErrClosed, err))
	}
	if c.duty.Swap(0)&dutyRecall != 0 {
		ls.schedule(c) // the loop kept the drain token for this
	}
}

// takeLingering takes c's lingering duty (rule 4): one CAS, no epoll_ctl,
// and no grant from the loop (rule 1): EPOLLIN has been off since the
// grant that lent the duty, so gnet has no event of c to handle, and the
// loop reads c only with the duty home. Holder-to-be, after its checks of
// the close ladder: a close requested after them recalls the duty from
// the new holder as from any.
func (c *Conn) takeLingering() bool {
	if c.duty.Load() == dutyLinger && c.duty.CompareAndSwap(dutyLinger, dutyHeld) {
		c.e.lingering.Add(-1)
		return true
	}
	return false
}

// armLinger arms c's linger timer (lingerTick) unless it is armed. A
// holder that left the duty lingering, or the timer.
func (c *Conn) armLinger() {
	// A load first: a steady ping-pong's hand-backs find the timer armed,
	// and a load, unlike a failing compare-and-swap, is no locked
	// instruction. A disarm after the load sees the duty lingering and
	// arms the timer again (lingerTick), as after a failed swap.
	if !c.lingerArmed.Load() && c.lingerArmed.CompareAndSwap(false, true) {
		c.lingerSeen.Store(c.lingers.Load())
		t := c.lingerT.Load()
		if t == nil {
			// Made stopped, then published, then reset: a tick never finds
			// lingerT unset. Only the armer makes it: the next armer comes
			// after the timer disarmed (lingerArmed).
			t = time.AfterFunc(time.Hour, c.lingerTick)
			t.Stop()
			c.lingerT.Store(t)
		}
		t.Reset(c.lingerFor)
	}
}

// lingerTick is the linger timer (rule 4): a duty lingering with no
// hand-back since the timer was armed, or since its last tick, is
// reclaimed; one that lingers after a new hand-back keeps the timer
// armed; otherwise it is disarmed (a holder that leaves the duty
// lingering arms it again). A runtime timer's goroutine, not the loop: a
// tick that finds the duty taken again touches only atomics, and a
// reclaim wakes the loop only if input is there. A conn timer
// (Conn.AfterFunc) woke the loop at every tick, which cost a steady
// ping-pong more than the epoll_ctl it saved at a period of 500 µs
// (system calls 12.75-19 a round trip against 12.3 without lingering,
// context switches 4.4-6.0 against 2.2: docs/latency.md).
func (c *Conn) lingerTick() {
	if c.duty.Load() == dutyLinger {
		if n := c.lingers.Load(); n != c.lingerSeen.Load() {
			c.lingerSeen.Store(n)
			c.lingerT.Load().Reset(c.lingerFor)
			return
		}
		c.reclaimDuty()
	}
	if h := testHookTickDisarm.Load(); h != nil {
		(*h)(c)
	}
	c.lingerArmed.Store(false)
	if c.duty.Load() == dutyLinger {
		c.armLinger() // it lingered after the look above and found the timer armed
	}
}

// reclaimDuty brings a lingering duty home as a holder's hand-back does
// (rule 4): claimed (marked returning), EPOLLIN on again, then the duty
// cleared, and c scheduled if the loop recalled the duty meanwhile (it
// keeps the drain token for that). False when the duty was not lingering
// (a holder took it again, or it was home). Any goroutine:
// dutyLinger|dutyReturning is neither lingering nor home, so no holder
// takes the duty and no grant is made in between; the loop, which may be
// handed the input as soon as EPOLLIN is set, reads it then (readerAway
// is false), as after a holder's hand-back; and OnClose waits until the
// duty is home, so the descriptor is gnet's throughout. After OnClose no
// duty lingers (rule 5): a late call finds none.
func (c *Conn) reclaimDuty() bool {
	if !c.claimLingering() {
		return false
	}
	c.finishReclaim()
	return true
}

// ReclaimLingering brings c's read duty home if it lingers (rule 4), as
// the linger timer would: for a caller that is about to stop waiting on c
// and must not leave c's input unread behind it. It reports whether it
// did; a duty that a holder took meanwhile stays with it. Any goroutine.
func (c *Conn) ReclaimLingering() bool { return c.reclaimDuty() }

// InlineGrants reports how many times c's read duty was lent by a grant
// from its loop (rule 1): each costs two epoll_ctl, the mask and the
// unmask when the duty comes home; a lingering duty taken again costs
// none. For tests and probes. Any goroutine.
func (c *Conn) InlineGrants() uint64 { return c.grants.Load() }

// claimLingering is reclaimDuty's first step: a lingering duty marked
// returning, and counted off. Any goroutine.
func (c *Conn) claimLingering() bool {
	if c.duty.Load() != dutyLinger || !c.duty.CompareAndSwap(dutyLinger, dutyLinger|dutyReturning) {
		return false
	}
	c.e.lingering.Add(-1)
	c.lingerReclaims.Add(1)
	return true
}

// finishReclaim is the rest of reclaimDuty, after claimLingering. The
// claimer, which must not hold Engine.lingerMu (a failure closes c).
func (c *Conn) finishReclaim() {
	ls := c.ls.Load()
	var err error
	if w := ls.idle.Load(); w == nil {
		err = ErrClosed // the engine stopped its loops: cannot happen, OnClose ran first
	} else {
		err = w.setEvents(c.gc.Fd(), gnetReadEvents)
	}
	if err != nil {
		c.inlineFailed.Add(1)
		_ = c.Close(fmt.Errorf("%w: restoring its input events: %w", ErrClosed, err))
	}
	if c.duty.Swap(0)&dutyRecall != 0 {
		ls.schedule(c)
	}
}

// ParkBegin tells e that the calling goroutine parks until input that
// e's loops read for it comes (a process that waits for its next message
// without reading a conn inline), and ParkEnd that the park is over. No
// read duty lingers on e's conns meanwhile (inline.go, rule 4): a
// lingering one would leave that input unread until the linger timer's
// reclaim, one to two lingerPeriods. ParkBegin reclaims those that
// linger now, and a holder gives the duty home while a park is counted.
// Every ParkBegin must be followed by one ParkEnd. Any goroutine; a nil e
// does nothing (a node on an in-memory network has no engine).
func (e *Engine) ParkBegin() {
	if e == nil {
		return
	}
	e.parked.Add(1)
	if e.lingering.Load() == 0 {
		return
	}
	// A duty lingered when this park began (one that a holder's
	// hand-back left while nothing was parked). Claimed under the lock,
	// finished after it.
	var buf [8]*Conn
	claimed := buf[:0]
	e.lingerMu.Lock()
	for _, c := range e.lingerConns {
		if c.claimLingering() {
			claimed = append(claimed, c)
		}
	}
	e.lingerMu.Unlock()
	for _, c := range claimed {
		c.finishReclaim()
	}
}

// ParkEnd ends a park that ParkBegin began. Any goroutine; a nil e does
// nothing.
func (e *Engine) ParkEnd() {
	if e != nil {
		e.parked.Add(-1)
	}
}

// listLingering puts c on e.lingerConns, once: c's duty was lent, so it
// may linger. Holder, with the duty (OnClose, which takes c off, waits
// for it).
func (c *Conn) listLingering() {
	if c.lingerListed.Load() || !c.lingerListed.CompareAndSwap(false, true) {
		return
	}
	e := c.e
	e.lingerMu.Lock()
	e.lingerConns = append(e.lingerConns, c)
	e.lingerMu.Unlock()
}

// unlistLingering takes c off e.lingerConns and stops its linger timer
// (a tick that looked before the close, or a hand-back's arm that did,
// may still run it once more: it finds the duty home and disarms). Loop
// only, in OnClose, with the duty home (endInline): no duty of c lingers
// again.
func (c *Conn) unlistLingering() {
	if t := c.lingerT.Load(); t != nil {
		t.Stop()
	}
	if !c.lingerListed.Load() {
		return
	}
	e := c.e
	e.lingerMu.Lock()
	e.lingerConns = removeConn(e.lingerConns, c)
	e.lingerMu.Unlock()
}

// holdDuty is the holder's wait: park the owner (its wakers kick the conn),
// wait for the socket or a wake-up, read and hand the input to the
// handler, until the owner's wait is over. Holder, with the duty.
func (c *Conn) holdDuty(ctx context.Context, dl time.Time, ls *loopState, r *inlineRes, p InlineParker) {
	done := ctx.Done()
	if done != r.ctxDone {
		r.dropCtx() // before the resets below: its callback is done with, or ignored
	}
	// Loads first: in a steady ping-pong neither flag is set, and a
	// load is no locked instruction. A poke or a late cancel that comes
	// after the load ends this wait early, as one after a swap would.
	if r.cancel.Load() {
		r.cancel.Store(false)
	}
	r.ended = false
	if (r.poked.Load() && r.poked.Swap(false)) || !dl.Equal(r.dl) {
		_ = r.sock.SetReadDeadline(dl)
		r.dl = dl
	}
	stop := noStop
	switch {
	case done == nil:
	case done == r.ctxDone:
		// The kept registration watches it: it may have poked before
		// the resets above, but only after the context ended, seen here.
		select {
		case <-done:
			return
		default:
		}
	case done == r.lastDone:
		r.keepCtx(ctx, done) // after the resets: a poke is not undone
	default:
		stop = context.AfterFunc(ctx, func() { r.cancel.Store(true); r.poke() })
	}
	r.lastDone = done
	bufs := inlineBufPool.Get().(*inlineBufs)
	r.c, r.p, r.buf = c, p, bufs.in
	c.holder = p
	r.uses++
	c.dbgReadEnter(false)
	defer func() {
		c.dbgReadLeave()
		stop()
		r.c, r.p, r.buf = nil, nil, nil
		c.holder = nil
		inlineBufPool.Put(bufs)
	}()
	for p.InlinePark() {
		r.n, r.errno = 0, 0
		werr := r.rc.Read(r.readFn)
		// A waker that ended the park first kicks: that kick, if it comes
		// after this wait, ends a later wait early, which waits again.
		p.InlineUnpark()
		if r.n > 0 {
			c.readHeld(ls, bufs, r.buf[:r.n])
		} else if werr != nil {
			// A deadline, ours or a poke's: a poke's can land after a
			// later holder set its own, so the next one sets its own.
			r.poked.Store(true)
			break
		} else if r.errno != unix.EAGAIN {
			if r.errno != 0 {
				// The read took the socket's pending error (a reset),
				// which gnet's read would not see: record it as gnet would.
				c.setReason(fmt.Errorf("%w: %w", ErrPeerClosed, os.NewSyscallError("read", r.errno)))
			}
			r.ended = true // the duty goes home, EPOLLIN on: gnet sees the end
			break          // the end of input or an error: the loop sees the end and closes the conn
		}
		if p.InlineReady() || r.stopping() {
			break
		}
	}
}

// read is r's RawConn.Read function: it reads the socket; with nothing to
// read it stops the wait only when a waker ended the owner's park or the
// wait is to end.
func (r *inlineRes) read(uintptr) bool {
	for {
		n, err := nbio.Read(r.fd, r.buf)
		r.n, r.errno = n, errnoOf(err)
		if r.errno != unix.EINTR {
			break
		}
	}
	if r.errno == unix.EAGAIN {
		r.n = 0
		return r.p.InlineWoken() || r.stopping()
	}
	if r.n < 0 {
		r.n = 0
	}
	return true
}

// errnoOf returns err as an errno: the error of a read or write of a
// descriptor is one (0 for nil; EIO for anything else, which cannot
// happen). Compared as an integer, not as an interface value against an
// errno converted to one: three such comparisons were a runtime call each
// in every wait of a round trip.
func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return unix.EIO
}

// stopping reports that the holder's wait is to end without its message:
// its context ended, the loop recalled the duty (dutyRecall) or OnClose
// called it back (dutyEnd), or the conn is closing.
func (r *inlineRes) stopping() bool {
	return r.cancel.Load() || r.c.duty.Load()&(dutyRecall|dutyEnd) != 0 || r.c.reached(closeRequested)
}

// poke ends the current holder's wait (or the next one's, harmlessly: a
// wait that ends early is waited again). Any goroutine.
func (r *inlineRes) poke() {
	r.poked.Store(true)
	_ = r.sock.SetReadDeadline(time.Unix(1, 0))
}

// KickInline ends the wait of a goroutine reading c inline (ReadInline),
// if one waits: a waker that ended an InlineParker's park calls it. A
// kick that comes after that wait ended ends the next holder's wait early,
// which then waits again. Any goroutine.
func (c *Conn) KickInline() {
	if r := c.inl.Load(); r != nil && r != inlineClosed {
		r.poke()
	}
}

// testHookBesideHolder, when a test sets it, runs in flushBesideHolder
// after its writes, just before it gives the drain token up: a test
// enqueues there, as a sender does whose push lands while the loop's
// goroutine is descheduled at that point.
var testHookBesideHolder atomic.Pointer[func(*Conn)]

// testHookBeforeLinger, when a test sets it, runs in giveDuty after the
// hand-back counted the duty lingering and before it lingers.
var testHookBeforeLinger atomic.Pointer[func(*Conn)]

// testHookTickDisarm, when a test sets it, runs in lingerTick just before
// the timer disarms.
var testHookTickDisarm atomic.Pointer[func(*Conn)]

// flushBesideHolder is flushQueue while a holder has c's read duty
// (rule 3). gnet's outbound buffer is empty then (only the loop fills it,
// and only with the duty home), so the loop writes the socket itself, as a
// direct writer does, without gnet: the spill of an earlier direct write,
// then what it seals now. What the socket does not take becomes the
// spill, and the duty is recalled: gnet must hold the rest, and the
// holder's hand-back schedules c for it (the token stays taken
// meanwhile). A close or a graceful drain recalls the duty at once. It
// reports false when the duty came home meanwhile (flushQueue goes on as
// usual). Loop only, holding the drain token.
func (c *Conn) flushBesideHolder(ls *loopState) bool {
	if c.reached(closeRequested) {
		return c.recallDuty()
	}
	c.dbgBesideGnet()
	c.dbgWriteEnter("beside")
	c.paceBulk(c.bulkQueued.Load() > 0)
	earlier, sealed, err := c.sealQueue(&ls.s, ls.out, false, true, true)
	fd := c.gc.Fd()
	rest := c.writeFD("beside", fd, c.spill)
	if len(rest) == 0 {
		rest = c.writeFD("beside", fd, earlier)
	} else {
		rest = append(rest, earlier...)
	}
	if len(rest) == 0 {
		rest = c.writeFD("beside", fd, sealed)
	} else {
		rest = append(rest, sealed...)
	}
	c.spill = append(c.spill[:0], rest...)
	ls.out = sealed[:0]
	if cap(ls.out) > 8<<20 {
		ls.out = nil
	}
	c.idleSince.Store(monoNow())
	c.dbgWriteLeave()
	if err != nil {
		// Release the token first, as flushQueue does before it seals:
		// closeOnLoop takes it back and finishClose recalls the duty.
		c.direct.Store(false)
		c.scheduled.Store(false)
		c.closeOnLoop(fmt.Errorf("%w: write: %w", ErrTLS, err))
		return true
	}
	if len(c.spill) > 0 {
		c.direct.Store(false) // senders hand the token to the loop, which sends the spill first
		if !c.recallDuty() {
			ls.schedule(c) // came home meanwhile: the next pass, through gnet
		}
		return true
	}
	c.paceBulk(c.bulkQueued.Load() > 0)
	more := c.queued.Load() > 0 || c.bulkQueued.Load() > 0
	if more {
		c.direct.Store(false) // off while data flows, as after flushQueue's pass
	}
	if h := testHookBesideHolder.Load(); h != nil {
		(*h)(c)
	}
	// The token first, then the queue again: a sender that pushed while
	// the token was still taken left its item to this pass (it saw c
	// scheduled), and a look before the release misses it; nothing would
	// send it until the next push.
	c.scheduled.Store(false)
	more = more || c.queued.Load() > 0 || c.bulkQueued.Load() > 0
	if (more || c.ad.PendingOutput()) && c.scheduled.CompareAndSwap(false, true) {
		ls.schedule(c) // the rest: the next pass
	} else if !more && !c.reached(closing) && c.gc.OutboundBuffered() == 0 {
		// Drained, as at the end of flushQueue's pass: direct writes again.
		// A duty that lingers from holder to holder may stay away for long,
		// and only a pass through gnet (with the duty home) would set it.
		c.dbgGnetEmpty()
		c.direct.Store(true)
	}
	return true
}

// readerAway reports whether a holder reads c's input now, or may at
// any time: it has the duty, or the duty lingers (a holder may take it
// without the loop), and it is not on its way home (a holder giving it
// back has read and handed over its last input, and touches nothing of
// c's input side any more; a lingering duty being reclaimed is the
// loop's). Any goroutine; the loop's OnTraffic uses it.
func (c *Conn) readerAway() bool {
	d := c.duty.Load()
	return d&(dutyHeld|dutyLinger) != 0 && d&dutyReturning == 0
}

// recallDuty asks a holder of c's read duty to give it back (rule 3); it
// reports false when the duty is home. The holder schedules c when it
// gives it back: the caller keeps the drain token until then. A lingering
// duty is reclaimed at once (rule 4): home, false. Loop only.
func (c *Conn) recallDuty() bool { return c.callBack(dutyRecall) }

// callBack is recallDuty (mark dutyRecall) and OnClose's recall (dutyEnd,
// endInline): it marks a held duty and ends its holder's wait, or reclaims
// a lingering one; false when the duty is home. Only dutyRecall makes the
// holder schedule c as it gives the duty back: OnClose holds no drain
// token, and a drain scheduled without it would run beside a sender that
// won the token (meshdebug's dbgTokenHeld). Loop only.
func (c *Conn) callBack(mark int32) bool {
	for {
		d := c.duty.Load()
		if d == 0 {
			return false
		}
		if d == dutyLinger {
			if c.reclaimDuty() {
				return false
			}
			continue // taken again meanwhile: recall it from its holder
		}
		if d&mark != 0 || c.duty.CompareAndSwap(d, d|mark) {
			if r := c.inl.Load(); r != nil && r != inlineClosed {
				r.poke()
			}
			return true
		}
	}
}

// endInline is OnClose's part (rule 5): it waits until the duty is home,
// then closes the conn's inline resources. Loop only, in gnet's OnClose.
func (c *Conn) endInline() {
	if c.duty.Load() != 0 {
		c.callBack(dutyEnd)
		for c.duty.Load() != 0 {
			runtime.Gosched()
		}
	}
	if r := c.inl.Swap(inlineClosed); r != nil && r != inlineClosed {
		r.close()
	}
	c.unlistLingering()
}

// inlineRes returns c's inline resources, made by the first holder within
// the dup budget; nil when none can be had (then none is asked for again
// before dupIdle). Holder, with the duty: OnClose waits for it, so the
// socket's descriptor is gnet's while the registration is made.
func (c *Conn) inlineRes() *inlineRes {
	if r := c.inl.Load(); r != nil {
		if r == inlineClosed {
			return nil
		}
		return r
	}
	r, err := newInlineRes(c.gc.Fd())
	if err != nil {
		c.inlRetry.Store(monoNow() + int64(dupIdle))
		return nil
	}
	if !c.inl.CompareAndSwap(nil, r) {
		r.close() // cannot happen: only the duty's holder makes one
		return nil
	}
	c.listLingering()
	c.AfterFunc(dupIdle, c.inlineIdleCheck)
	return r
}

// inlineIdleCheck gives back c's inline resources if no holder used them
// since the last check (their descriptors come from the dup budget, which
// direct writes share), else checks again after dupIdle. Loop only (a conn
// timer): no duty is taken while the loop runs, and one held now has a
// holder that counts.
func (c *Conn) inlineIdleCheck() {
	r := c.inl.Load()
	if r == nil || r == inlineClosed {
		return
	}
	if c.duty.Load() != 0 {
		c.AfterFunc(dupIdle, c.inlineIdleCheck) // in use (uses is the holder's now)
		return
	}
	if r.uses != r.usesMark {
		r.usesMark = r.uses
		c.AfterFunc(dupIdle, c.inlineIdleCheck)
		return
	}
	if c.inl.CompareAndSwap(r, nil) {
		r.close()
	}
}

// newInlineRes makes a duplicate of gnet's socket descriptor sfd,
// registered with Go's netpoller, within the dup budget.
func newInlineRes(sfd int) (*inlineRes, error) {
	if !dups.take() {
		return nil, syscall.EMFILE
	}
	r, err := makeInlineRes(sfd)
	if err != nil {
		dups.give()
	}
	return r, err
}

// close gives back r's descriptor. Once no holder can use r; a waker's
// late kick then fails harmlessly on the closed file.
func (r *inlineRes) close() {
	r.dropCtx() // the context, which may live on, keeps nothing of the conn
	r.lastDone = nil
	_ = r.sock.Close()
	dups.give()
}

// noStop is holdDuty's stop when no registration is made for its wait.
func noStop() bool { return true }

// keepCtx registers a holder's context (done its Done) for this wait and
// the next ones with the same (see ctxMu). Holder, with none kept.
func (r *inlineRes) keepCtx(ctx context.Context, done <-chan struct{}) {
	r.ctxMu.Lock()
	r.ctxGen++
	gen := r.ctxGen
	r.ctxMu.Unlock()
	r.ctxStop = context.AfterFunc(ctx, func() {
		r.ctxMu.Lock()
		if r.ctxGen == gen {
			r.cancel.Store(true)
			r.poke()
		}
		r.ctxMu.Unlock()
	})
	r.ctxDone = done
}

// dropCtx ends the kept registration, if any: its callback, if it runs
// after this, does nothing. The holder, or the loop closing r with no
// duty out.
func (r *inlineRes) dropCtx() {
	if r.ctxStop == nil {
		return
	}
	r.ctxMu.Lock()
	r.ctxGen++
	r.ctxMu.Unlock()
	r.ctxStop()
	r.ctxStop, r.ctxDone = nil, nil
}

// readHeld is the holder's readTLS: the input goes to the handler as the
// loop's would. Holder.
func (c *Conn) readHeld(ls *loopState, bufs *inlineBufs, in []byte) {
	c.inCallback.Store(true)
	defer c.inCallback.Store(false)
	c.readTLS(ls, &bufs.plain, in, false)
	if cap(bufs.plain) > 4*readBatch {
		bufs.plain = nil
	}
}
