//go:build linux && !race

package mailbox

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// An eventfd's read and write never block here (EFD_NONBLOCK), so they
// are made without the runtime's syscall entry, which wakes the runtime's
// monitor thread when it sleeps: after a wake-up for a message, nearly
// always (package loop's nowake_linux.go has the why and
// docs/latency.md the measurements). Under the race detector x/sys's
// calls are used instead (nowake_race.go), for their annotations of the
// I/O.

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
