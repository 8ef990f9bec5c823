//go:build !linux

package mailbox

// Without eventfds every wait parks on the semaphore (fdpark_linux.go).

type fdWaiter struct{}

func getFDWaiter() *fdWaiter        { return nil }
func putFDWaiter(*fdWaiter)         {}
func fdWake(int32)                  {}
func (m *Mailbox) parkFD(*fdWaiter) {}
