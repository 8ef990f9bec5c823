//go:build !linux

package node

import "time"

// starterSignal is an idle starter's wake-up (spawn_start_linux.go): here a
// channel.
type starterSignal struct {
	ch    chan struct{}
	cond  func() bool
	until time.Time // the last wait's deadline
}

// open readies s; cond reports whether the wait is over.
func (s *starterSignal) open(cond func() bool) error {
	s.ch, s.cond = make(chan struct{}, 1), cond
	return nil
}

// wake ends the wait, or the next one, once cond holds. Any goroutine,
// after making cond true.
func (s *starterSignal) wake() {
	select {
	case s.ch <- struct{}{}:
	default: // a wake is pending: the wait sees cond
	}
}

// wait blocks until cond holds, or until the deadline passes (zero: none);
// false at the deadline. Owner only.
func (s *starterSignal) wait(deadline time.Time) bool {
	s.until = deadline
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	for !s.cond() {
		select {
		case <-s.ch:
		case <-timeout:
			return s.cond()
		}
	}
	return true
}

// close does nothing here.
func (s *starterSignal) close() {}
