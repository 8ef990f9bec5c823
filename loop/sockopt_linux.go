package loop

import "golang.org/x/sys/unix"

// unreadBytes returns the bytes the socket fd has received and this side
// has not read yet (SIOCINQ).
func unreadBytes(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.SIOCINQ) }

// setThreadNice sets the calling OS thread's niceness to n (Linux keeps
// a niceness per thread).
func setThreadNice(n int) error { return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), n) }

// threadNice returns the calling OS thread's niceness (the system call
// returns 20 - nice).
func threadNice() (int, error) {
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	return 20 - p, err
}
