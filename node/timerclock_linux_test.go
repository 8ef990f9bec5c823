//go:build linux

package node

import "testing"

// On Linux the timer goroutine sleeps on a timerfd; the portable clock
// is only the fallback for a node out of file descriptors.
func TestTimerClockIsATimerfdOnLinux(t *testing.T) {
	c := newTimerClock()
	defer c.close()
	if _, ok := c.(*fdClock); !ok {
		t.Fatalf("newTimerClock() = %T, want *fdClock", c)
	}
}
