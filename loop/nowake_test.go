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
	if n, err := writeNB(-1, []byte("x")); err != unix.EBADF || n != -1 {
		t.Fatalf("write to a bad descriptor: %d, %v; want -1, EBADF", n, err)
	}
	if n, err := pollNow([]unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLIN}}); n != 0 || err != nil {
		t.Fatalf("poll of an emptied pipe: %d, %v; want 0, nil", n, err)
	}
	if n, err := readNB(-1, buf); err != unix.EBADF || n != -1 {
		t.Fatalf("read of a bad descriptor: %d, %v; want EBADF", n, err)
	}
}

// A socket someone made blocking gets no duplicate for inline reads (a
// holder's reads are raw: one that blocked would hold its P), and
// nonBlocking tells the two apart.
func TestABlockingSocketGetsNoInlineDuplicate(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skip("no socketpair:", err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if nonBlocking(fds[0]) {
		t.Fatal("a blocking socket reported non-blocking")
	}
	if r, err := makeInlineRes(fds[0]); err != errBlockingSocket {
		if r != nil {
			_ = r.sock.Close()
		}
		t.Fatalf("makeInlineRes of a blocking socket: %v; want errBlockingSocket", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	if !nonBlocking(fds[0]) {
		t.Fatal("a non-blocking socket reported blocking")
	}
	r, err := makeInlineRes(fds[0])
	if err != nil {
		t.Fatalf("makeInlineRes of a non-blocking socket: %v", err)
	}
	_ = r.sock.Close()
}
