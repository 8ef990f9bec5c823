//go:build !linux

package mailbox

// Without eventfds every wait parks on the semaphore (fdpark_linux.go).

// fdPoolMax is 0: there is no pool.
const fdPoolMax = 0

type fdWaiter struct{}

func getFDWaiter() *fdWaiter        { return nil }
func putFDWaiter(*fdWaiter)         {}
func fdWake(int32)                  {}
func (m *Mailbox) parkFD(*fdWaiter) {}
