//go:build linux

package loop

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The calls made without the runtime's syscall entry (nowake_linux.go)
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
	if n, err := readNB(p[0], buf); err != unix.EAGAIN || n > 0 {
		t.Fatalf("read of an empty pipe: %d, %v; want EAGAIN", n, err)
	}
	fds := []unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLIN}}
	if n, err := pollNow(fds); n != 0 || err != nil {
		t.Fatalf("poll of an empty pipe: %d, %v; want 0, nil", n, err)
	}
	if n, err := writeNB(p[1], []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v; want 5, nil", n, err)
	}
	if n, err := pollNow(fds); n != 1 || err != nil || fds[0].Revents&unix.POLLIN == 0 {
		t.Fatalf("poll after a write: %d, %v, revents %#x; want 1, nil, POLLIN", n, err, fds[0].Revents)
	}
	if n, err := readNB(p[0], buf); n != 5 || err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %d, %v, %q; want 5, nil, hello", n, err, buf[:max(n, 0)])
	}
	if n, err := writeNB(-1, []byte("x")); err != unix.EBADF || n > 0 {
		t.Fatalf("write to a bad descriptor: %d, %v; want EBADF", n, err)
	}
	if n, err := readNB(-1, buf); err != unix.EBADF || n > 0 {
		t.Fatalf("read of a bad descriptor: %d, %v; want EBADF", n, err)
	}
}
