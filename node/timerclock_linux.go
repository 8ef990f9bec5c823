//go:build linux

package node

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fdClock is the Linux timerClock: a timerfd read through Go's poller,
// with the same deadline set as the read's deadline (see timerClock).
type fdClock struct {
	f   *os.File        // owns the timerfd
	raw syscall.RawConn // f's: its Control fails once f is closed, so a late arm never reaches a reused fd
	buf [8]byte         // the expiration count; wait's alone
}

// newTimerClock returns the precise clock, or the portable one if the
// timerfd cannot be made or polled (out of file descriptors or epoll
// watches): timers still fire, up to a millisecond later.
func newTimerClock() timerClock {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newChanClock()
	}
	f := os.NewFile(uintptr(fd), "mesh-timers")
	raw, err := f.SyscallConn()
	if err == nil {
		// os.NewFile keeps a file the poller refused (epoll_ctl out of
		// watches or memory); its reads would fail at once, forever.
		// Only a polled file takes a deadline.
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		_ = f.Close()
		return newChanClock()
	}
	return &fdClock{f: f, raw: raw}
}

func (c *fdClock) arm(when int64) {
	var its unix.ItimerSpec // zero: disarmed
	deadline := time.Time{}
	if when != 0 {
		d := time.Until(time.Unix(0, when))
		if d <= 0 {
			d = 1 // due: a zero value would disarm it
		}
		its.Value = unix.NsecToTimespec(int64(d))
		deadline = time.Unix(0, when)
	}
	// Settime fails only for a closed fd or a bad value; neither loses a
	// wake-up: the read deadline below is set either way.
	_ = c.raw.Control(func(fd uintptr) { _ = unix.TimerfdSettime(int(fd), 0, &its, nil) })
	_ = c.f.SetReadDeadline(deadline)
}

func (c *fdClock) wait() bool {
	_, err := c.f.Read(c.buf[:])
	switch {
	case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		return true
	case errors.Is(err, os.ErrClosed):
		return false
	default:
		// Not seen with a polled timerfd; never spin on it.
		time.Sleep(time.Millisecond)
		return true
	}
}

func (c *fdClock) close() { _ = c.f.Close() }
