package mailbox

// Parking on an eventfd in Go's netpoller, for a wait whose message comes
// from a network event loop (ParkNext, Waiter).
//
// Readying a parked goroutine (a mutex Unlock, a channel send) puts it on
// the readier's run queue and, when a P is idle, wakes an idle thread for
// it (the runtime's wakep): on a machine with a free core, every reply
// delivered by a loop woke a thread that found nothing to do, since the
// loop's own thread ran the owner next anyway. A goroutine readied by the
// netpoller is not handed around that way: the thread that polls runs it.
// So after ParkNext the owner waits on an eventfd registered with Go's
// netpoller, and the waker writes it: the loop that delivered the message
// parks in the netpoller itself right after (package loop, idle.go), and
// its thread's next poll finds the owner ready and runs it, one thread and
// no wake-up, as a crypto/tls reader waiting in net.Conn.Read would be.
//
// Eventfds are pooled, at most fdPoolMax per pool, made on demand; a wait
// that finds none free parks on the semaphore (a Waiter: on a channel). A
// pool is a sync.Pool: taking and giving back an eventfd takes no
// process-wide lock, and eventfds left unused across two garbage
// collections are closed (their os.File's cleanup) and leave the count.

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshrt/mesh/internal/nbio"
)

// fdWaiter is an eventfd registered with Go's netpoller.
type fdWaiter struct {
	f    *os.File
	rc   syscall.RawConn
	fd   int32 // f's descriptor (f.Fd would make it blocking)
	buf  [8]byte
	read func(uintptr) bool // rc.Read's function, made once
}

// fdPoolMax bounds the eventfds of each pool: at most this many waits use
// one at a time.
const fdPoolMax = 256

// fdPool is a pool of eventfd waiters whose eventfds read zero. Safe from
// any goroutine.
type fdPool struct {
	p    sync.Pool
	made atomic.Int32 // waiters alive: in use, pooled, or not yet collected
	off  atomic.Bool  // eventfds cannot be made here
}

// Two pools: a Waiter sets read deadlines on its eventfd, a mailbox wait
// never does, and neither ever sees the other's.
var mailboxFDs, waiterFDs fdPool

// get takes a free waiter, or makes one under fdPoolMax; nil when none can
// be had.
func (fp *fdPool) get() *fdWaiter {
	if w, _ := fp.p.Get().(*fdWaiter); w != nil {
		return w
	}
	if fp.off.Load() {
		return nil
	}
	if fp.made.Add(1) > fdPoolMax {
		fp.made.Add(-1)
		return nil
	}
	w, err := newFDWaiter()
	if err != nil {
		fp.made.Add(-1)
		fp.off.Store(true)
		return nil
	}
	runtime.AddCleanup(w, func(fp *fdPool) { fp.made.Add(-1) }, fp)
	return w
}

// put gives back a waiter whose eventfd reads zero.
func (fp *fdPool) put(w *fdWaiter) { fp.p.Put(w) }

func newFDWaiter() (*fdWaiter, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "mailbox-eventfd")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	w := &fdWaiter{f: f, rc: rc, fd: int32(fd)}
	w.read = func(fd uintptr) bool {
		// Read first: RawConn.Read forgets a notification that came
		// before it was called.
		_, err := nbio.Read(int(fd), w.buf[:])
		return err != unix.EAGAIN && err != unix.EINTR
	}
	return w, nil
}

// The mailbox's pool and the Waiters'.
func getFDWaiter() *fdWaiter  { return mailboxFDs.get() }
func putFDWaiter(w *fdWaiter) { mailboxFDs.put(w) }
func getWaiterFD() *fdWaiter  { return waiterFDs.get() }
func putWaiterFD(w *fdWaiter) { waiterFDs.put(w) }

// waitUntil takes the token, blocking in the netpoller until a waker wrote
// it or deadline (zero: none) passed; false at the deadline. Waiters only
// (the deadline stays set on the eventfd).
func (w *fdWaiter) waitUntil(deadline time.Time) bool {
	_ = w.f.SetReadDeadline(deadline)
	return w.rc.Read(w.read) == nil
}

var fdOne = [8]byte{1}

// fdWake hands the token of stateParkedFD: one write to the owner's
// eventfd. The owner does not give the eventfd back before it read it.
func fdWake(fd int32) {
	for {
		if _, err := nbio.Write(int(fd), fdOne[:]); err != unix.EINTR {
			return
		}
	}
}

// parkFD is wait's park on w (invariants 2-4 with w's eventfd as the
// token): publish the bit, recheck, then read the eventfd, which blocks in
// the netpoller until a waker wrote it. Owner only.
func (m *Mailbox) parkFD(w *fdWaiter) {
	m.efd.Store(w.fd)
	if !m.state.CompareAndSwap(0, stateParkedFD) {
		return // closed
	}
	if m.q.ready() && m.state.CompareAndSwap(stateParkedFD, 0) {
		return
	}
	// Parked, or a waker cleared the bit and writes the eventfd once.
	_ = w.rc.Read(w.read)
}
