//go:build linux

package mailbox

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The eventfd calls made without the runtime's syscall entry
// (nowake_linux.go) behave as x/sys's: EAGAIN on an empty eventfd, the
// token written and read once, errors a caller compares with unix's.
func TestNoWakeCallsOnAnEventfd(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Skip("no eventfd:", err)
	}
	defer unix.Close(fd)
	var buf [8]byte
	if n, err := readNB(fd, buf[:]); err != unix.EAGAIN || n > 0 {
		t.Fatalf("read of an empty eventfd: %d, %v; want EAGAIN", n, err)
	}
	if n, err := writeNB(fd, fdOne[:]); n != 8 || err != nil {
		t.Fatalf("write: %d, %v; want 8, nil", n, err)
	}
	if n, err := readNB(fd, buf[:]); n != 8 || err != nil || buf[0] != 1 {
		t.Fatalf("read: %d, %v, %v; want 8, nil, the token", n, err, buf)
	}
	if n, err := readNB(fd, buf[:]); err != unix.EAGAIN || n > 0 {
		t.Fatalf("second read: %d, %v; want EAGAIN", n, err)
	}
	if _, err := writeNB(fd, buf[:4]); err != unix.EINVAL {
		t.Fatalf("a short write: %v; want EINVAL", err)
	}
}
