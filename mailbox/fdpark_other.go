//go:build !linux

package mailbox

import (
	"sync/atomic"
	"time"
)

// Without eventfds every wait parks on the semaphore, and a Waiter on its
// channel (fdpark_linux.go). The pools exist, empty, for the tests.

// fdPoolMax is 0: there is no pool.
const fdPoolMax = 0

type fdWaiter struct{ fd int32 }

type fdPool struct{ made atomic.Int32 }

var mailboxFDs, waiterFDs fdPool

func getFDWaiter() *fdWaiter                 { return nil }
func putFDWaiter(*fdWaiter)                  {}
func getWaiterFD() *fdWaiter                 { return nil }
func putWaiterFD(*fdWaiter)                  {}
func fdWake(int32)                           {}
func (m *Mailbox) parkFD(*fdWaiter)          {}
func (w *fdWaiter) waitUntil(time.Time) bool { return false }
