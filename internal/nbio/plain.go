//go:build !linux || race

package nbio

import "golang.org/x/sys/unix"

// Read is unix.Read (raw_linux.go's is not built here).
func Read(fd int, b []byte) (int, error) { return unix.Read(fd, b) }

// Write is unix.Write.
func Write(fd int, b []byte) (int, error) { return unix.Write(fd, b) }

// PollNow is unix.Poll(fds, 0).
func PollNow(fds []unix.PollFd) (int, error) { return unix.Poll(fds, 0) }
