//go:build linux && !race

package nbio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read is unix.Read for a non-blocking descriptor.
func Read(fd int, b []byte) (int, error) { return readWrite(unix.SYS_READ, fd, b) }

// Write is unix.Write for a non-blocking descriptor.
func Write(fd int, b []byte) (int, error) { return readWrite(unix.SYS_WRITE, fd, b) }

// readWrite makes read(2) or write(2) (trap) of b on fd, raw.
func readWrite(trap uintptr, fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	touch()
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// PollNow is unix.Poll(fds, 0).
func PollNow(fds []unix.PollFd) (int, error) {
	var ts unix.Timespec // zero: return at once (never a shared variable: a write to it would make this block)
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(unsafe.SliceData(fds))), uintptr(len(fds)),
		uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	touch()
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
