//go:build linux

package node

import (
	"testing"

	"golang.org/x/sys/unix"
)

// A wake that comes after its starter closed the signal (the starter saw
// its process before the waker's write, ran it and ended) writes nothing:
// not to the closed eventfd's number, which the next descriptor the
// process opens takes.
func TestAStarterSignalWakeAfterCloseWritesNowhere(t *testing.T) {
	var s starterSignal
	if err := s.open(func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	old := int(s.f.Fd())
	s.close()
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if fd != old {
		t.Skipf("the closed eventfd's number %d was not reused (got %d): nothing to test", old, fd)
	}
	s.wake()
	var b [8]byte
	if n, err := unix.Read(fd, b[:]); err != unix.EAGAIN {
		t.Fatalf("the descriptor that took the closed eventfd's number was written to: read %d bytes %x, %v", n, b[:n], err)
	}
}
