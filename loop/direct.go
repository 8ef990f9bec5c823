package loop

// Direct writes: the sender that wins the drain token on an idle conn seals
// and writes the queue itself, sparing the loop's wake-up (doc.go, "Direct
// writes").

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshrt/mesh/internal/nbio"
)

// maxDirectOut: a direct writer keeps its output buffer up to this size.
const maxDirectOut = 64 << 10

var epoch = time.Now()

// monoNow is a monotonic clock in nanoseconds.
func monoNow() int64 { return int64(time.Since(epoch)) }

// dispatch is run by the sender that just won the drain token: it drains
// and writes itself when that is cheaper than waking the loop, else hands
// the token to the loop. A conn without a dup of its socket yet hands it to
// the loop and may ask for one (wantDup).
func (c *Conn) dispatch(ls *loopState) {
	if d := c.directStart(ls); d != nil {
		c.directFlush(ls, d, nil)
		return
	}
	ls.schedule(c)
}

// directStart is the direct-write test of a sender holding the drain
// token: when the conn may be written directly it returns the conn's dup
// with a reference taken, having moved the loop's lastDirect to now; else
// nil, and the caller hands the token to the loop. A conn without a dup
// yet may ask for one (wantDup).
func (c *Conn) directStart(ls *loopState) *dupSock {
	if !c.direct.Load() || ls.busy.Load() {
		return nil
	}
	now := monoNow()
	last := ls.lastDirect.Load()
	if !directDue(now, c.idleSince.Load(), last) {
		return nil
	}
	d := c.acquireDup()
	if d == nil {
		c.wantDup(now)
		return nil
	}
	if !ls.lastDirect.CompareAndSwap(last, now) {
		d.release()
		return nil
	}
	return d
}

// appendHeld is EnqueueAppend for a sender that took the drain token with
// both lanes empty on a started conn (EnqueueAppend; ls is its loop):
// written directly when directStart allows it, the item is encoded into
// the direct writer's own buffer and sealed alone, never queued (no queue
// lock, chunk or drain of the queue); else it is queued and the token goes
// to the loop, as dispatch would hand it. Order holds: every item queued
// before the token was taken has been drained (the lanes were empty, and a
// drain in progress clears direct before it gives the token up), and items
// queued meanwhile go out after this one (the token's release rechecks the
// lanes). If fn panics, the token and the dup's reference are given back
// before the panic goes on (held): the conn stays usable.
func (c *Conn) appendHeld(ls *loopState, max int, fn func(dst []byte) ([]byte, error)) error {
	var d *dupSock
	held := true // fn runs holding the token (and d's reference)
	defer func() {
		if held {
			// fn panicked: nothing was queued or written.
			if d != nil {
				d.release()
			}
			c.releaseToken(ls)
		}
	}()
	if d = c.directStart(ls); d != nil {
		s := &c.directBufs
		item, err := fn(s.item[:0])
		held = false
		if err != nil || len(item) == 0 {
			d.release()
			c.releaseToken(ls)
			return err
		}
		c.directFlush(ls, d, item) // keeps item's buffer in s (sealItem) and gives the token up
		return nil
	}
	_, err := c.q.pushAppend(max, &c.queued, fn)
	held = false
	if err != nil {
		c.releaseToken(ls) // nothing queued
		return err
	}
	ls.schedule(c)
	return nil
}

// directFlush drains the queue, or with item set seals that item alone
// (appendHeld), on the calling goroutine: one TLS write and one write(2)
// on the dup'd socket. What the socket does not take goes to spill and the
// token to the loop (direct writes stop until gnet's buffer is empty
// again). Caller holds the drain token and a reference to d.
func (c *Conn) directFlush(ls *loopState, d *dupSock, item []byte) {
	c.nDirect.Add(1)
	c.dbgWriteEnter("direct")
	// Urgent items only: bulk items go through the loop, which keeps the
	// socket's unsent limit short while they flow (paceBulk); written here
	// they would fill the kernel's queue (the recheck below hands them to
	// the loop).
	var earlier, sealed []byte
	var werr error
	if item != nil {
		earlier, sealed, werr = c.sealItem(&c.directBufs, c.directOut, item)
	} else {
		earlier, sealed, werr = c.sealQueue(&c.directBufs, c.directOut, false, false, false)
	}
	rest := earlier
	if len(earlier) > 0 {
		rest = c.writeFD("direct", d.fd, earlier)
	}
	if len(rest) == 0 {
		rest = c.writeFD("direct", d.fd, sealed)
	} else {
		rest = append(rest, sealed...)
	}
	d.release()
	if len(rest) > 0 {
		c.direct.Store(false)
		c.spill = append(c.spill, rest...)
	}
	if cap(sealed) <= maxDirectOut {
		c.directOut = sealed[:0]
	}
	// No idleSince store here (a clock read and an atomic exchange on each
	// side of a round trip): dispatch moved its loop's lastDirect to this
	// write's start, and lastDirect only moves forward, so the conn's next
	// direct write needs directSpacing since this one's start, which is
	// more than directIdleGap (TestDirectSpacingCoversIdleGap): storing
	// the start in idleSince would change no decision. The end would, for
	// a write that took over directSpacing-directIdleGap: then the
	// sender's next message may go out directly as well. A sender
	// streaming items that each take that long to write may so write a
	// few in a row where the loop would have batched them (a review
	// counted a few tens more direct writes in streams of 3 000 items);
	// the stream still settles on the loop, and items other senders queue
	// meanwhile go to the loop (below).
	c.dbgWriteLeave()
	if werr != nil {
		c.direct.Store(false)
		_ = c.Close(fmt.Errorf("%w: write: %w", ErrTLS, werr))
	}
	if len(c.spill) > 0 {
		ls.schedule(c) // keep the token: the loop sends the spill first
		return
	}
	c.releaseToken(ls)
}

// releaseToken gives up the drain token held by a sender, handing it to
// the loop instead if there is work for it: items queued meanwhile, a
// close, or output a Read produced while the token was held (doc.go,
// "Direct writes").
func (c *Conn) releaseToken(ls *loopState) {
	c.scheduled.Store(false)
	if (c.queued.Load() > 0 || c.bulkQueued.Load() > 0 || c.reached(draining) || c.ad.PendingOutput()) &&
		c.scheduled.CompareAndSwap(false, true) {
		ls.schedule(c) // busy, draining or closing: the loop takes over
	}
}

// writeFD writes b to fd (non-blocking) and returns what it did not take.
// path names the writer for the meshdebug checks.
func (c *Conn) writeFD(path string, fd int, b []byte) []byte {
	for len(b) > 0 {
		n, err := nbio.Write(fd, b)
		if n > 0 {
			c.dbgHanded(path, b[:n])
			b = b[n:]
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break // EAGAIN, or an error the loop's write will meet and report
		}
	}
	return b
}

// The dup of the socket (doc.go, "Direct writes"). gnet may close its own
// fd at any time on the loop, and the number can then be reused at once, so
// a direct writer never writes gnet's fd: it writes a dup, reference
// counted, which the last of its users closes. A dup costs a file
// descriptor for as long as it lives, so a conn gets one only when direct
// writes are wanted again and again (wantDup), and gives it back after
// dupIdle without one: an idle conn, or one whose sends all come from its
// loop's callbacks, holds just its socket. (Made at every OnOpen, dups
// doubled the descriptors of a cluster: 100 in-process nodes needed 19 800
// for their 4 950 links, past this machine's limit of 20 000.)

// dupWantWindow: a sender that finds no dup asks the loop for one when the
// conn's previous such want came less than this long ago. A tick every few
// seconds never gets a dup; request traffic gets one at its second message.
const dupWantWindow = time.Second

// dupIdle: the loop drops a conn's dup after this long without a direct
// write (a var for tests).
var dupIdle = 5 * time.Second

// dupSock is a dup of a conn's socket. refs counts its users: 1 for the
// conn while c.dup points to it, plus one per direct writer; the last
// release closes fd. A dupSock is never reused once its refs reached 0.
type dupSock struct {
	fd   int
	refs atomic.Int32
}

// acquireDup returns the conn's dup with a reference taken, or nil if it
// has none. Any goroutine.
func (c *Conn) acquireDup() *dupSock {
	d := c.dup.Load()
	if d == nil {
		return nil
	}
	for {
		r := d.refs.Load()
		if r <= 0 {
			return nil // dropped meanwhile
		}
		if d.refs.CompareAndSwap(r, r+1) {
			return d
		}
	}
}

// release drops a reference; the last one closes the descriptor.
func (d *dupSock) release() {
	if d.refs.Add(-1) == 0 {
		_ = syscall.Close(d.fd)
		dups.give()
	}
}

// wantDup notes that a sender wanted to write directly at now and found no
// dup; a second want within dupWantWindow asks the loop to make one. Any
// goroutine.
func (c *Conn) wantDup(now int64) {
	prev := c.dupWant.Swap(now)
	if prev == 0 || now-prev >= int64(dupWantWindow) || now < c.dupRetry.Load() {
		return
	}
	if c.dupAsked.CompareAndSwap(false, true) {
		c.exec(c.makeDup)
	}
}

// makeDup gives the conn a dup of its socket, within the process's budget
// (dups), and arms the idle check. Loop only.
func (c *Conn) makeDup() {
	defer c.dupAsked.Store(false)
	if c.dup.Load() != nil || c.reached(closing) {
		return
	}
	if !dups.take() {
		c.dupRetry.Store(monoNow() + int64(dupIdle))
		return
	}
	fd, err := unix.FcntlInt(uintptr(c.gc.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil && !nonBlocking(fd) {
		// Someone made the socket blocking (a File taken of the conn
		// before gnet had it, say): a direct write, made raw
		// (package nbio), could then block holding its P. No dup.
		_ = unix.Close(fd)
		err = errBlockingSocket
	}
	if err != nil {
		dups.give()
		c.dupRetry.Store(monoNow() + int64(dupIdle))
		return
	}
	d := &dupSock{fd: fd}
	d.refs.Store(1)
	c.dup.Store(d)
	c.dupMark = c.nDirect.Load()
	c.AfterFunc(dupIdle, c.dupIdleCheck)
}

// errBlockingSocket refuses a blocking socket a duplicate for direct
// writes or inline reads.
var errBlockingSocket = errors.New("loop: socket is not non-blocking")

// nonBlocking reports whether fd's open file description has O_NONBLOCK.
func nonBlocking(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// dupIdleCheck drops the dup if no direct write used it since the last
// check, else checks again after dupIdle. Loop only (a conn timer).
func (c *Conn) dupIdleCheck() {
	if c.dup.Load() == nil {
		return
	}
	if n := c.nDirect.Load(); n != c.dupMark {
		c.dupMark = n
		c.AfterFunc(dupIdle, c.dupIdleCheck)
		return
	}
	c.dropDup()
}

// dropDup gives up the conn's reference to its dup: closed now, or by the
// direct writer still using it. Loop only (makeDup and gnet's OnClose).
func (c *Conn) dropDup() {
	if d := c.dup.Swap(nil); d != nil {
		d.release()
	}
}

// dups is the process's budget of socket dups: at most a quarter of its
// file descriptor limit, so that dups never cost a connection its socket.
// A conn denied one keeps working; its senders wake the loop instead.
var dups dupBudget

type dupBudget struct {
	once  sync.Once
	limit atomic.Int64
	open  atomic.Int64
}

func (b *dupBudget) take() bool {
	b.once.Do(func() {
		limit := int64(1 << 62)
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < 1<<62 {
			limit = int64(rl.Cur) / 4
		}
		b.limit.Store(limit)
	})
	if b.open.Add(1) > b.limit.Load() {
		b.open.Add(-1)
		return false
	}
	return true
}

func (b *dupBudget) give() { b.open.Add(-1) }
