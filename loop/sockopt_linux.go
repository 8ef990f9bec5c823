package loop

import "golang.org/x/sys/unix"

// unreadBytes returns the bytes the socket fd has received and this side
// has not read yet (SIOCINQ).
func unreadBytes(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.SIOCINQ) }
