package loop

// How an idle loop waits: in Go's netpoller instead of gnet's epoll_wait.
//
// gnet's loop goroutine waits for its sockets in epoll_wait(2) on its own
// epoll instance, a blocking system call outside Go's scheduler, and before
// each such wait it calls runtime.Gosched, which puts the loop goroutine on
// the global run queue and wakes an idle thread for any idle P (wakep): on
// a machine with a free core, every message that ends a burst of input woke
// a second thread that found nothing to do. A message for a parked process
// did it again (readying a goroutine calls wakep too). The raw
// crypto/tls pipe pays neither: its reader waits in Go's netpoller, and the
// thread the kernel wakes for the reply runs the reader at once.
//
// So when a loop's callback for socket input ends with nothing left to do,
// the loop goroutine waits for gnet's epoll instance itself to become
// readable (any event gnet would see: socket input, writability gnet asked
// for, a task's eventfd), through a duplicate of that epoll descriptor
// registered with Go's netpoller. The loop goroutine is then parked like any
// net.Conn reader: the kernel wakes one thread for the next input, which
// runs the loop (no wakep), gnet's next epoll_wait(0) returns the event at
// once, and a process readied by that input through the netpoller
// (mailbox.Mailbox.ParkNext waits) runs on the same thread once the loop
// parks again. Neither gnet's Gosched nor its blocking epoll_wait runs while
// the loop waits this way.
//
// gnet's tasks (Execute, its conns' Close, Enroll) are queued and signalled
// on gnet's eventfd only when the loop is not already running tasks; while
// the loop waits here the eventfd is signalled by whoever queues ours
// (kick), and the loop does not wait here at all while a task of ours, a
// close of ours or an enrolment is pending, or the engine is stopping.
//
// A loop that serves a single conn waits for that conn's socket itself
// (waitSocket), not for gnet's epoll instance: in Go's netpoller the
// instance is an epoll inside an epoll, and the kernel's wake-up through
// the two levels cost the peer's write about 2 µs and this side's wake-up
// about 6 µs more than a socket's own (docs/latency.md, "Remote spawn: the
// monitor thread, and the far node's loop"); then gnet's epoll_wait(0) and
// its read ran before the input was seen. The loop takes the conn's read
// duty for itself (dutyLoop: EPOLLIN off in gnet's instance, as for a
// holder in inline.go), waits on a duplicate of the socket of its own, and
// reads and handles the input where it woke, inside the callback it waits
// at the end of, as a holder does (its output is written beside gnet,
// flushBesideHolder), until something needs gnet. What gnet's instance
// would have reported must still end that wait, and does:
//
//   - the conn's input, hang-up or error: the socket's own readiness;
//   - our tasks, closes and timers (all queued through Engine.execute),
//     an enrolment and the engine stopping: kick pokes the wait (a read
//     deadline in the past on the loop's duplicate), and the wait checks
//     owed, enrolling and stopping whenever it would park;
//   - writability gnet asked for: never pending, since the loop waits on
//     the socket only while gnet's outbound buffer is empty (direct), and
//     a write the socket does not take recalls the duty (inline.go,
//     rule 3), which ends the wait;
//   - another conn's input, or a listener's: none, since the wait is only
//     for a loop with one conn (the engine's listeners are Go's, not
//     gnet's), and a second conn comes only through an enrolment;
//   - a process that wants to read the conn inline (ReadInline): it takes
//     the duty over from the loop (dutyLoop → dutyHeld, EPOLLIN already
//     off) and pokes the wait, and the loop goes on waiting on gnet's
//     instance, as before a holder's grant; for sockHoldOff after that the
//     loop does not wait on that socket (its processes read it).
//
// The input is handled inside the netpoller wait (one RawConn.Read), and a
// read that did not fill its buffer took all the socket held: the wait
// parks after it without reading again (readSock), since what comes next
// notifies the wait that is still on.
//
// The loop gives the duty back (EPOLLIN on again, then the duty cleared)
// before it returns to gnet, so gnet never runs with dutyLoop set.
//
// gnet does not expose its epoll or eventfd descriptors; the engine finds
// them once per loop in /proc/self/fd (the epoll instances gnet created,
// told apart by the conn descriptor registered in them, from fdinfo) and
// duplicates them. Where that fails (not Linux, /proc missing) the loop
// waits in gnet's epoll_wait as before.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshrt/mesh/internal/nbio"
)

// sockHoldOff: after a holder took a conn's duty over from the loop's
// socket wait, the loop does not wait on that conn's socket for this long.
// A conn that processes read inline (a ping-pong's echo reads its requests
// itself) would otherwise pay a takeover, whose poke wakes the loop, each
// time its loop read an input; the loop's socket wait is for conns that no
// process reads (the far node of a remote spawn).
//
// A variable for tests only, set before any engine of theirs starts.
var sockHoldOff = 10 * time.Millisecond

// idleWait is one loop's wait in Go's netpoller. Made on the loop; its
// descriptors are constant after that; the socket wait's fields below
// change, each as its comment says.
type idleWait struct {
	ep   *os.File        // duplicate of gnet's epoll descriptor, in Go's netpoller
	rc   syscall.RawConn // ep's
	efd  int             // duplicate of gnet's eventfd: writing it wakes gnet
	epfd int             // ep's descriptor (for epoll_ctl: inline.go)

	pfd     [1]unix.PollFd     // loop only: wait's poll(2) argument
	readyFn func(uintptr) bool // loop only: made once by ready
	polled  bool               // loop only: wait's poll(2) was done

	waiting atomic.Bool // the loop goroutine is in wait (or about to be)

	// Lending the read duty while the loop waits (inline.go, rule 1).
	lend     atomic.Bool          // a taker is granting itself a duty: the loop does not resume until it is clear
	parkedIn atomic.Pointer[Conn] // the conn whose OnTraffic the loop waits at the end of; nil: a task, any conn
	anyConn  atomic.Bool          // the loop waits at the end of a task

	// The socket wait (waitSocket).
	sock      atomic.Pointer[loopSock] // the duplicate the loop waits on now; nil: none (kick pokes it)
	sk        *loopSock                // loop only: the loop's duplicate of its sole conn's socket
	skRetry   int64                    // loop only: monoNow before which no duplicate is asked for again
	sockBuf   []byte                   // loop only: ciphertext read by waitSocket
	sockRead  func(uintptr) bool       // loop only: waitSocket's RawConn.Read function
	takenOver atomic.Uint64            // holders that took a duty over from the socket wait (tests)
	sockWaits atomic.Uint64            // socket waits begun (tests)
	epollCtls atomic.Uint64            // setEvents calls (tests)
	sockReads atomic.Uint64            // reads of the socket wait, input or not (tests)
}

// loopSock is the loop's own duplicate of its sole conn's socket, in Go's
// netpoller (from the dup budget): separate from the holders' (inlineRes),
// so that a holder taking the duty over never waits behind the loop's read
// lock nor sees its deadline. Made and closed on the loop.
type loopSock struct {
	r     *inlineRes // the duplicate (only sock, rc, fd and close are used)
	c     *Conn
	poked atomic.Bool // a poke set a past deadline: the next wait clears it
	n     int         // loop only: the last read's bytes, not yet handled
	errno unix.Errno  // loop only: the last read's error: 0, EAGAIN, or one that ends the wait
	// handled is set (loop only) when readSock handled input and the loop
	// must go back to gnet.
	handled bool
}

// testHookPoke, when a test sets it, runs in loopSock.poke between its
// two stores (poked, then the deadline): a test runs the socket wait
// there, as a wait runs while the poker's goroutine is descheduled at
// that point.
var testHookPoke atomic.Pointer[func(*loopSock)]

// poke ends the loop's wait on s (or its next one, which then waits
// again). Any goroutine; on a closed duplicate it does nothing.
func (s *loopSock) poke() {
	s.poked.Store(true)
	if h := testHookPoke.Load(); h != nil {
		(*h)(s)
	}
	_ = s.r.sock.SetReadDeadline(time.Unix(1, 0))
}

// fdSet lists the open descriptors of the process (Linux; nil when
// /proc/self/fd cannot be read), each with whether it is an epoll instance
// when that is asked for, or not in before.
func fdSet(before map[int]bool) map[int]bool {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	s := make(map[int]bool, len(ents))
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			old, seen := before[n]
			s[n] = old
			if !seen {
				s[n] = fdKind(n) == "anon_inode:[eventpoll]"
			}
		}
	}
	return s
}

// newEpolls returns the epoll descriptors open now that were not epoll
// descriptors in before (fdSet's).
func newEpolls(before map[int]bool) []int {
	if before == nil {
		return nil
	}
	var eps []int
	for fd, ep := range fdSet(nil) {
		if ep && !before[fd] {
			eps = append(eps, fd)
		}
	}
	return eps
}

func fdKind(fd int) string {
	s, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return s
}

// epollTargets lists the descriptors registered in the epoll instance ep
// (its fdinfo's tfd fields).
func epollTargets(ep int) []int {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(ep))
	if err != nil {
		return nil
	}
	var fds []int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "tfd:" {
			if n, err := strconv.Atoi(f[1]); err == nil {
				fds = append(fds, n)
			}
		}
	}
	return fds
}

// findIdleWait makes the idle wait of the loop that serves connFD (gnet's
// descriptor of one of its conns), from the engine's candidate epoll
// descriptors; nil if none fits. Loop only: neither gnet's epoll nor its
// eventfd can close while its loop runs a callback.
func findIdleWait(cands []int, connFD int) *idleWait {
	for _, ep := range cands {
		tfds := epollTargets(ep)
		has, efd := false, -1
		for _, t := range tfds {
			if t == connFD {
				has = true
			} else if fdKind(t) == "anon_inode:[eventfd]" {
				if efd >= 0 {
					efd = -2 // more than one: not gnet's
				} else if efd == -1 {
					efd = t
				}
			}
		}
		if !has || efd < 0 {
			continue
		}
		w, err := dupIdleWait(ep, efd, connFD)
		if err == nil {
			return w
		}
	}
	return nil
}

func dupIdleWait(ep, efd, connFD int) (*idleWait, error) {
	dep, err := unix.FcntlInt(uintptr(ep), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defd, err := unix.FcntlInt(uintptr(efd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		_ = unix.Close(dep)
		return nil, err
	}
	ok := false
	for _, t := range epollTargets(dep) {
		ok = ok || t == connFD
	}
	if !ok || fdKind(defd) != "anon_inode:[eventfd]" {
		_ = unix.Close(dep)
		_ = unix.Close(defd)
		return nil, syscall.EBADF
	}
	// O_NONBLOCK (shared with gnet's descriptor, which only epoll_wait
	// uses) makes os.NewFile register the duplicate with the netpoller.
	if err := unix.SetNonblock(dep, true); err != nil {
		_ = unix.Close(dep)
		_ = unix.Close(defd)
		return nil, err
	}
	f := os.NewFile(uintptr(dep), "gnet-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		_ = unix.Close(defd)
		return nil, err
	}
	return &idleWait{ep: f, rc: rc, efd: defd, epfd: dep}, nil
}

var eventOne = [8]byte{1}

// kick wakes the loop if it waits here. Any goroutine, after queueing.
func (w *idleWait) kick() {
	if w.waiting.Load() {
		_, _ = nbio.Write(w.efd, eventOne[:])
	}
	if s := w.sock.Load(); s != nil {
		s.poke()
	}
}

// wait parks the loop goroutine until gnet's epoll instance has an event,
// unless stop says not to wait; a loop with one conn waits on that conn's
// socket first (waitSocket). in is the conn whose input callback it ends,
// nil at the end of a task. Loop only.
func (w *idleWait) wait(ls *loopState, in *Conn) {
	w.parkedIn.Store(in)
	w.anyConn.Store(in == nil)
	if c := ls.soleConn(in); c != nil && !w.waitSocket(ls, c) {
		w.parkedIn.Store(nil)
		return
	}
	w.waiting.Store(true)
	w.polled = false
	_ = w.rc.Read(w.ready(ls))
	w.waiting.Store(false)
	// A grant that saw waiting set ends before gnet goes on (inline.go).
	for w.lend.Load() {
		runtime.Gosched()
	}
	w.parkedIn.Store(nil)
}

// lendable reports whether the loop waits where c's read duty may be
// taken (inline.go, rule 1). A taker, holding lend.
func (w *idleWait) lendable(c *Conn) bool {
	return w.anyConn.Load() || w.parkedIn.Load() == c
}

// ready returns the function wait's RawConn.Read calls: true (stop
// waiting) when the loop must not wait, or gnet's epoll may have an event.
// The first call asks poll(2), since an event gnet's last epoll_wait
// returned and has not handled yet (the loop is inside its callback for an
// earlier one) does not notify again; a later call follows a notification
// from the netpoller and returns true at once (rarely one that came while
// the loop was running: then gnet finds nothing and waits in epoll_wait).
func (w *idleWait) ready(ls *loopState) func(uintptr) bool {
	if w.readyFn == nil {
		e := ls.e
		w.readyFn = func(fd uintptr) bool {
			if w.polled || ls.owed.Load() > 0 || e.stopping.Load() || e.enrolling.Load() > 0 {
				return true
			}
			w.polled = true
			w.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
			// n is -1 on an error (EINTR included): the loop goes on to
			// gnet's own poll, the safe side (an event pending in gnet's
			// instance would not notify the netpoller again).
			n, _ := nbio.PollNow(w.pfd[:])
			return n != 0
		}
	}
	return w.readyFn
}

// close gives back the duplicates. After the loops stopped.
func (w *idleWait) close() {
	_ = w.ep.Close()
	_ = unix.Close(w.efd)
	w.dropSock(nil)
}

// stop reports whether the loop must go back to gnet: a task of ours or a
// close is owed, a conn enrols, or the engine stops.
func (w *idleWait) stop(ls *loopState) bool {
	e := ls.e
	return ls.owed.Load() > 0 || e.stopping.Load() || e.enrolling.Load() > 0
}

// soleConn returns the loop's only conn when the loop may wait on its
// socket at the end of the callback for in (nil: a task): it serves no
// other, it is not a bulk-only conn, and in is nil or that conn. Loop only.
func (ls *loopState) soleConn(in *Conn) *Conn {
	if len(ls.conns) != 1 {
		return nil
	}
	c := ls.conns[0]
	if (in != nil && in != c) || c.bulkOnly.Load() {
		return nil
	}
	return c
}

// sockFor returns the loop's duplicate of c's socket, made at the first
// wait for c (a duplicate of an earlier sole conn is closed then); nil when
// the dup budget or the netpoller refused one lately. Loop only, with c's
// socket gnet's (OnClose has not run).
func (w *idleWait) sockFor(c *Conn) *loopSock {
	if w.sk != nil && w.sk.c == c {
		return w.sk
	}
	w.dropSock(nil)
	if w.skRetry != 0 {
		if monoNow() < w.skRetry {
			return nil
		}
		w.skRetry = 0
	}
	r, err := newInlineRes(c.gc.Fd())
	if err != nil {
		w.skRetry = monoNow() + int64(dupIdle)
		return nil
	}
	w.sk = &loopSock{r: r, c: c}
	if w.sockBuf == nil {
		w.sockBuf = make([]byte, inlineBuf)
	}
	return w.sk
}

// dropSock closes the loop's duplicate if it is c's (any conn's for nil).
// On the loop (OnClose calls it before gnet closes c's descriptor, and the
// loop does not wait on the duplicate then), or from Engine.close once the
// loops stopped.
func (w *idleWait) dropSock(c *Conn) {
	if s := w.sk; s != nil && (c == nil || s.c == c) {
		w.sk = nil
		s.r.close()
	}
}

// waitSocket is the loop's wait on the socket of its sole conn c (the top
// of this file): it takes c's read duty for the loop, waits for the socket
// in Go's netpoller, and reads and handles c's input itself, until gnet is
// needed; then it gives the duty back and reports false (the loop returns
// to gnet). It reports true when the loop is to wait on gnet's epoll
// instance instead: the engine stops, c is not idle for writes, a holder
// took c's duty over from the loop less than sockHoldOff ago, no duplicate
// could be had, a holder has the duty or it lingers (inline.go, rule 4),
// gnet's instance refused the mask, or a holder took the duty over during
// the wait. Loop only, at
// the end of a callback, with nothing left to drain or run (idleWait).
func (w *idleWait) waitSocket(ls *loopState, c *Conn) bool {
	if !c.direct.Load() || c.reached(closeRequested) || c.gc.OutboundBuffered() > 0 || w.stop(ls) {
		return true
	}
	if t := c.inlTakeover.Load(); t != 0 {
		if monoNow()-t < int64(sockHoldOff) {
			return true
		}
		c.inlTakeover.CompareAndSwap(t, 0)
	}
	s := w.sockFor(c)
	if s == nil || !c.duty.CompareAndSwap(0, dutyLoop) {
		return true
	}
	fd := c.gc.Fd()
	if w.setEvents(fd, 0) != nil {
		c.duty.Store(0)
		return true
	}
	if w.sockRead == nil {
		w.sockRead = w.readSock(ls)
	}
	w.sockWaits.Add(1)
	w.sock.Store(s)
	for {
		if s.poked.Swap(false) {
			_ = s.r.sock.SetReadDeadline(time.Time{})
		}
		s.n, s.errno = 0, 0
		w.waiting.Store(true)
		werr := s.r.rc.Read(w.sockRead)
		w.waiting.Store(false)
		for w.lend.Load() {
			runtime.Gosched()
		}
		if c.duty.Load()&dutyLoop == 0 {
			// Taken over by a holder (inline.go, takeDuty): EPOLLIN stays
			// off until it gives the duty back.
			w.sock.Store(nil)
			return true
		}
		if s.handled {
			// readSock handled input and found the loop must go back to
			// gnet.
			s.handled = false
			break
		}
		if werr != nil {
			// A poke's deadline. Cleared here, before the checks below,
			// and not only when poked is seen: a poke stores poked and then
			// sets the deadline, so a wait that took poked and cleared the
			// deadline in between would otherwise keep a past deadline
			// with poked clear, and every later Read would fail at once
			// without reading (a deaf loop, spinning; review). Whatever
			// the poker wanted it changed before its deadline, so the
			// checks below see it.
			s.poked.Store(false)
			_ = s.r.sock.SetReadDeadline(time.Time{})
		}
		if werr != nil || s.errno == unix.EAGAIN {
			// A poke (a kick, or a late poke meant for an earlier wait),
			// or readSock found a reason to stop.
			if w.stop(ls) || c.duty.Load()&dutyRecall != 0 || c.reached(closeRequested) {
				break
			}
			continue
		}
		if s.errno != 0 {
			// The read took the socket's pending error (a reset): gnet's
			// own read would see only the end of input, so the reason is
			// recorded here, as gnet would have given it (OnClose).
			c.setReason(fmt.Errorf("%w: %w", ErrPeerClosed, os.NewSyscallError("read", s.errno)))
		}
		break // the end of input or an error: gnet sees the end too, and closes the conn
	}
	w.sock.Store(nil)
	if err := w.setEvents(fd, gnetReadEvents); err != nil {
		// Input would never be read again: end the conn, loudly.
		c.inlineFailed.Add(1)
		_ = c.Close(fmt.Errorf("%w: restoring its input events: %w", ErrClosed, err))
	}
	if c.duty.Swap(0)&dutyRecall != 0 {
		ls.schedule(c) // the loop kept the drain token for this (flushBesideHolder)
	}
	return false
}

// readSock returns waitSocket's RawConn.Read function: it reads the
// socket unless a holder took the duty over, handles what it read, and
// with nothing to read it parks the loop unless it must go back to gnet
// (stop). While it reads, waiting is clear, so that no taker grants itself
// the duty meanwhile (inline.go, rule 1).
//
// Input is handled inside the wait (one RawConn.Read), not after it: a
// read that did not fill the buffer took everything the socket had, and
// what comes after it notifies the netpoller, which this wait hears since
// it did not begin again (RawConn.Read forgets a notification that came
// before it was called, so a new wait must read first). So the wait parks
// after such a read without the read that would find nothing (EAGAIN): one
// system call less per request, as a spawn request the far loop answers.
func (w *idleWait) readSock(ls *loopState) func(uintptr) bool {
	return func(uintptr) bool {
		s := w.sk
		for {
			w.waiting.Store(false)
			for w.lend.Load() {
				runtime.Gosched()
			}
			if s.c.duty.Load()&dutyLoop == 0 {
				return true
			}
			for {
				n, err := nbio.Read(s.r.fd, w.sockBuf)
				w.sockReads.Add(1)
				s.n, s.errno = n, errnoOf(err)
				if s.errno != unix.EINTR {
					break
				}
			}
			if s.n < 0 {
				s.n = 0
			}
			if s.errno != unix.EAGAIN {
				if s.n == 0 {
					return true // the end of input, or an error
				}
				drained := s.n < len(w.sockBuf)
				if !w.handleSock(ls, s) {
					s.handled = true
					return true
				}
				if !drained {
					continue
				}
				// Drained: as after a read that found nothing (handleSock
				// left s.errno EAGAIN).
			}
			w.waiting.Store(true)
			return w.stop(ls) || s.c.duty.Load()&dutyRecall != 0
		}
	}
}

// handleSock hands the input readSock read (s.n bytes) to the conn, and
// reports whether the loop may go on waiting on the socket: nothing was
// recalled, the conn's writes are still idle, and no task, close or
// after-flush work waits for gnet. Loop only, inside the socket wait.
func (w *idleWait) handleSock(ls *loopState, s *loopSock) bool {
	c := s.c
	ls.enter()
	c.dbgReadEnter(true)
	c.readTLS(ls, &ls.rbuf, w.sockBuf[:s.n], true)
	c.dbgReadLeave()
	ls.leave()
	s.n, s.errno = 0, unix.EAGAIN
	return c.duty.Load()&dutyRecall == 0 && c.direct.Load() && !c.reached(closeRequested) &&
		!ls.busy.Load() && len(ls.after) == 0 && !w.stop(ls)
}
