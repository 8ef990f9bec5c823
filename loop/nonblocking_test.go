//go:build linux

package loop

import (
	"testing"

	"golang.org/x/sys/unix"
)

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
