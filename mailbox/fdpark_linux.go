package mailbox

// Parking on an eventfd in Go's netpoller, for a wait whose message comes
// from a network event loop (ParkNext).
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
// Eventfds are pooled (fdPoolMax of them, made on demand); a wait that
// finds none free parks on the semaphore as before.

import (
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdWaiter is an eventfd registered with Go's netpoller.
type fdWaiter struct {
	f    *os.File
	rc   syscall.RawConn
	fd   int32 // f's descriptor (f.Fd would make it blocking)
	buf  [8]byte
	read func(uintptr) bool // rc.Read's function, made once
}

// fdPoolMax bounds the eventfds a process keeps for parked owners: at most
// this many owners wait on one at a time; the others use the semaphore.
const fdPoolMax = 256

var fdPool struct {
	mu   sync.Mutex
	free []*fdWaiter
	made int
	off  bool // eventfds cannot be made here
}

// getFDWaiter takes a free eventfd waiter, or makes one under fdPoolMax;
// nil when none can be had.
func getFDWaiter() *fdWaiter {
	fdPool.mu.Lock()
	defer fdPool.mu.Unlock()
	if n := len(fdPool.free); n > 0 {
		w := fdPool.free[n-1]
		fdPool.free[n-1] = nil
		fdPool.free = fdPool.free[:n-1]
		return w
	}
	if fdPool.off || fdPool.made >= fdPoolMax {
		return nil
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		fdPool.off = true
		return nil
	}
	f := os.NewFile(uintptr(fd), "mailbox-eventfd")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		fdPool.off = true
		return nil
	}
	fdPool.made++
	w := &fdWaiter{f: f, rc: rc, fd: int32(fd)}
	w.read = func(fd uintptr) bool {
		// Read first: RawConn.Read forgets a notification that came
		// before it was called.
		_, err := unix.Read(int(fd), w.buf[:])
		return err != unix.EAGAIN && err != unix.EINTR
	}
	return w
}

// putFDWaiter gives back a waiter whose eventfd reads zero.
func putFDWaiter(w *fdWaiter) {
	fdPool.mu.Lock()
	fdPool.free = append(fdPool.free, w)
	fdPool.mu.Unlock()
}

var fdOne = [8]byte{1}

// fdWake hands the token of stateParkedFD: one write to the owner's
// eventfd. The owner does not give the eventfd back before it read it.
func fdWake(fd int32) {
	for {
		if _, err := unix.Write(int(fd), fdOne[:]); err != unix.EINTR {
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
