//go:build linux

package node

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshrt/mesh/internal/nbio"
)

// starterSignal is an idle starter's wake-up: an eventfd of its own in Go's
// netpoller (spawn_start.go says why the netpoller). Nothing ever reads it:
// each write to an eventfd notifies epoll again (edge-triggered, as Go
// registers it) whatever its count, and the starter learns what it was
// handed from the starter itself (cond), never from the count. So a
// hand-off is one write, and a wait parks without a system call, where a
// wait that takes a token reads the eventfd twice (the token, and the
// EAGAIN before it parks).
type starterSignal struct {
	f     *os.File
	rc    syscall.RawConn
	ready func(uintptr) bool // rc.Read's function: cond
	write func(uintptr) bool // rc.Write's function: the wake's write
	until time.Time          // the read deadline set on f (zero: none)
}

// open makes s's eventfd; cond reports whether the wait is over. An error
// leaves s closed.
func (s *starterSignal) open(cond func() bool) error {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "starter-eventfd")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return err
	}
	s.f, s.rc = f, rc
	s.ready = func(uintptr) bool { return cond() }
	s.write = func(fd uintptr) bool {
		for {
			if _, err := nbio.Write(int(fd), starterOne[:]); err != unix.EINTR {
				return true
			}
		}
	}
	return nil
}

var starterOne = [8]byte{1}

// wake ends the wait, or the next one, once cond holds: one write. Any
// goroutine, after making cond true. The starter may see cond, end and
// close its eventfd before the write: the write goes through the file
// (RawConn.Write), whose reference keeps the descriptor's number from
// being closed under it and reused (a write after the close does
// nothing), never to the bare number.
func (s *starterSignal) wake() { _ = s.rc.Write(s.write) }

// wait blocks until cond holds, or until the deadline passes (zero: none);
// false at the deadline. A deadline is set on the eventfd only when it
// moves: the caller passes one that changes rarely. The netpoller forgets
// a notification that came before the wait (RawConn.Read resets it), but
// cond is asked after that, so a wake whose cond it misses notifies after
// it. Owner only.
func (s *starterSignal) wait(deadline time.Time) bool {
	if !deadline.Equal(s.until) {
		_ = s.f.SetReadDeadline(deadline)
		s.until = deadline
	}
	return s.rc.Read(s.ready) == nil
}

// close gives the eventfd back. Owner only, when no wake can come.
func (s *starterSignal) close() {
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
}
