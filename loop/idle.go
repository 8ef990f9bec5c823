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
// gnet does not expose its epoll or eventfd descriptors; the engine finds
// them once per loop in /proc/self/fd (the epoll instances gnet created,
// told apart by the conn descriptor registered in them, from fdinfo) and
// duplicates them. Where that fails (not Linux, /proc missing) the loop
// waits in gnet's epoll_wait as before.

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/meshrt/mesh/internal/nbio"
)

// idleWait is one loop's wait in Go's netpoller. Made on the loop; its
// fields are constant after that but for the counters.
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
}

// wait parks the loop goroutine until gnet's epoll instance has an event,
// unless stop says not to wait. in is the conn whose input callback it
// ends, nil at the end of a task. Loop only.
func (w *idleWait) wait(ls *loopState, in *Conn) {
	w.parkedIn.Store(in)
	w.anyConn.Store(in == nil)
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
}
