//go:build linux

package nbio

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The calls made without the runtime's syscall entry (raw_linux.go)
// behave as x/sys's: EAGAIN on an empty non-blocking descriptor, the bytes
// written, poll's readiness, and errors a caller compares with unix's.
func TestNoWakeCallsOnANonBlockingPipe(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Skip("no pipe2:", err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := make([]byte, 16)
	if n, err := Read(p[0], buf); err != unix.EAGAIN || n > 0 {
		t.Fatalf("read of an empty pipe: %d, %v; want EAGAIN", n, err)
	}
	fds := []unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLIN}}
	if n, err := PollNow(fds); n != 0 || err != nil {
		t.Fatalf("poll of an empty pipe: %d, %v; want 0, nil", n, err)
	}
	if n, err := Write(p[1], []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v; want 5, nil", n, err)
	}
	if n, err := PollNow(fds); n != 1 || err != nil || fds[0].Revents&unix.POLLIN == 0 {
		t.Fatalf("poll after a write: %d, %v, revents %#x; want 1, nil, POLLIN", n, err, fds[0].Revents)
	}
	if n, err := Read(p[0], buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %d, %v, %q; want 5, nil, hello", n, err, buf[:max(n, 0)])
	}
	if n, err := Write(-1, []byte("x")); err != unix.EBADF || n != -1 {
		t.Fatalf("write to a bad descriptor: %d, %v; want -1, EBADF", n, err)
	}
	if n, err := PollNow([]unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLIN}}); n != 0 || err != nil {
		t.Fatalf("poll of an emptied pipe: %d, %v; want 0, nil", n, err)
	}
	if n, err := Read(-1, buf); err != unix.EBADF || n != -1 {
		t.Fatalf("read of a bad descriptor: %d, %v; want EBADF", n, err)
	}
}

// The eventfd calls made without the runtime's syscall entry
// (raw_linux.go) behave as x/sys's: EAGAIN on an empty eventfd, the
// token written and read once, errors a caller compares with unix's.
func TestNoWakeCallsOnAnEventfd(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Skip("no eventfd:", err)
	}
	defer unix.Close(fd)
	var buf [8]byte
	one := [8]byte{1} // an eventfd's token, little-endian
	if n, err := Read(fd, buf[:]); err != unix.EAGAIN || n > 0 {
		t.Fatalf("read of an empty eventfd: %d, %v; want EAGAIN", n, err)
	}
	if n, err := Write(fd, one[:]); n != 8 || err != nil {
		t.Fatalf("write: %d, %v; want 8, nil", n, err)
	}
	if n, err := Read(fd, buf[:]); n != 8 || err != nil || buf[0] != 1 {
		t.Fatalf("read: %d, %v, %v; want 8, nil, the token", n, err, buf)
	}
	if n, err := Read(fd, buf[:]); err != unix.EAGAIN || n > 0 {
		t.Fatalf("second read: %d, %v; want EAGAIN", n, err)
	}
	if _, err := Write(fd, buf[:4]); err != unix.EINVAL {
		t.Fatalf("a short write: %v; want EINVAL", err)
	}
}
