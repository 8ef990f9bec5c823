//go:build linux && !race

package loop

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// System calls that cannot block, made without the runtime's syscall
// entry.
//
// A system call made through package syscall or x/sys enters the
// runtime's syscall state (entersyscall), and that entry wakes the
// runtime's monitor thread (sysmon) when it sleeps deeply, which it does
// whenever it last found every P idle: between the two halves of a round
// trip, nearly always. So the first read after a wake-up for input paid a
// futex wake before it read, and the monitor then polled every 20 µs for
// a while on the other core (nanosleep), the core the other side of the
// round trip needs. The calls below are made on descriptors that never
// block (non-blocking sockets and eventfds, a poll with a zero timeout,
// epoll_ctl), as the runtime's own netpoller makes its calls, so the
// scheduler need not know of them. docs/latency.md has the measurements.
// Under the race detector x/sys's calls are used instead
// (nowake_other.go), for their annotations of the I/O.
//
// Two things follow. The descriptors must stay non-blocking: a raw call
// that blocked would hold its P, and the next stop-the-world would wait
// for it (the duplicates share gnet's O_NONBLOCK; makeDup and
// makeInlineRes refuse a socket without it). And a monitor left asleep
// does not preempt: a goroutine that computes for long right after a raw
// read, with every P busy, runs on until the runtime's next timer or
// system call wakes the monitor (a review's probe, GOMAXPROCS=1: a
// readied goroutine waited 300 ms behind one computing for 300 ms, against
// 12-14 ms with x/sys's read). A node's own timers and its loops' system
// calls bound that in practice; a process that computes for long should
// still yield now and then, as everywhere in Go.

// readNB is unix.Read for a non-blocking descriptor.
func readNB(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// writeNB is unix.Write for a non-blocking descriptor.
func writeNB(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// pollNow is unix.Poll(fds, 0): -1 and the error on an error.
func pollNow(fds []unix.PollFd) (int, error) {
	var ts unix.Timespec // zero: return at once (never a shared variable: a write to it would make this block)
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(unsafe.SliceData(fds))), uintptr(len(fds)),
		uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
