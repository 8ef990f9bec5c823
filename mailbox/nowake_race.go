//go:build linux && race

package mailbox

import "golang.org/x/sys/unix"

// readNB and writeNB are x/sys's calls under the race detector, which
// they tell of the I/O (nowake_linux.go has the calls made otherwise).

func readNB(fd int, b []byte) (int, error)  { return unix.Read(fd, b) }
func writeNB(fd int, b []byte) (int, error) { return unix.Write(fd, b) }
