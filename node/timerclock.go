package node

import "time"

// A timerClock wakes the timer goroutine at the earliest pending deadline.
//
// Go's own timers fire up to a millisecond late on Linux when the process
// is idle: an idle runtime waits in epoll_wait, whose timeout is in whole
// milliseconds, so a timer due in 300 µs is seen after one. That is every
// SendAfter's p50 lateness on an idle node (BenchmarkSendAfter in bench/).
// On Linux the clock is therefore a timerfd registered with Go's poller
// (timerclock_linux.go): the kernel makes it readable at the deadline and
// epoll_wait returns then, not at the next whole millisecond (tens of
// microseconds late at p50 on this project's test machine, where the
// runtime timer was 0.5 ms late: docs/services.md). The same wait also carries
// the deadline as a read deadline, a runtime timer, because a process whose
// threads are all busy polls the network only now and then but checks its
// timers at every scheduling point. Whichever is seen first wakes it.
//
// arm and close are called with timerSet.mu held, so the armed deadline
// is the heap's earliest after every change of it (an earlier timer arms
// it from SendAfter; the goroutine arms it after each round); wait is the
// timer goroutine's alone. A wake-up before the deadline is harmless: the
// goroutine finds nothing due and arms the clock again.
type timerClock interface {
	// arm sets the next wake-up to when (unix nanoseconds); 0 disarms it.
	arm(when int64)
	// wait blocks until the armed deadline or close; false after close.
	wait() bool
	// close ends every wait, now and later.
	close()
}

// chanClock is the portable timerClock: a runtime timer and a channel.
type chanClock struct {
	t      *time.Timer // its channel has no buffer (Go 1.23): a Reset never leaves a stale tick
	closed chan struct{}
}

func newChanClock() *chanClock {
	c := &chanClock{t: time.NewTimer(time.Hour), closed: make(chan struct{})}
	c.t.Stop()
	return c
}

func (c *chanClock) arm(when int64) {
	if when == 0 {
		c.t.Stop()
		return
	}
	c.t.Reset(time.Until(time.Unix(0, when)))
}

func (c *chanClock) wait() bool {
	select {
	case <-c.closed: // before a tick that may be ready too
		return false
	default:
	}
	select {
	case <-c.t.C:
	case <-c.closed:
		return false
	}
	return true
}

func (c *chanClock) close() {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	c.t.Stop()
}
