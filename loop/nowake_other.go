//go:build !linux || race

package loop

import "golang.org/x/sys/unix"

// readNB, writeNB and pollNow are x/sys's calls where nowake_linux.go's
// are not built: off Linux, and under the race detector (x/sys's calls
// tell it of the I/O).

func readNB(fd int, b []byte) (int, error)  { return unix.Read(fd, b) }
func writeNB(fd int, b []byte) (int, error) { return unix.Write(fd, b) }

func pollNow(fds []unix.PollFd) (int, error) { return unix.Poll(fds, 0) }
