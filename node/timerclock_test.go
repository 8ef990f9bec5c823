package node

import (
	"testing"
	"time"
)

// Both clocks keep the contract the timer goroutine relies on: a wait
// ends at the armed deadline, an earlier deadline armed meanwhile ends a
// wait on a later one, and close ends every wait. No test here waits for
// a deadline that is not already due or an hour away.
func TestTimerClocks(t *testing.T) {
	clocks := map[string]func() timerClock{
		"portable": func() timerClock { return newChanClock() },
		"platform": newTimerClock,
	}
	for name, mk := range clocks {
		t.Run(name, func(t *testing.T) {
			t.Run("a due deadline ends the wait", func(t *testing.T) {
				c := mk()
				defer c.close()
				c.arm(time.Now().Add(-time.Second).UnixNano())
				if !c.wait() {
					t.Fatal("wait reported close")
				}
			})
			for _, first := range []struct {
				name string
				when int64
			}{
				{"an earlier deadline armed meanwhile ends a wait on a later one", time.Now().Add(time.Hour).UnixNano()},
				{"a disarmed clock waits until armed", 0},
			} {
				t.Run(first.name, func(t *testing.T) {
					c := mk()
					defer c.close()
					c.arm(first.when)
					done := make(chan bool)
					go func() { done <- c.wait() }()
					stillWaiting(t, done)
					c.arm(time.Now().UnixNano())
					if !<-done {
						t.Fatal("wait reported close")
					}
				})
			}
			t.Run("close ends a wait and every later one", func(t *testing.T) {
				c := mk()
				c.arm(time.Now().Add(time.Hour).UnixNano())
				done := make(chan bool)
				go func() { done <- c.wait() }()
				stillWaiting(t, done)
				c.close()
				if <-done {
					t.Fatal("a wait across close did not report it")
				}
				c.arm(time.Now().UnixNano()) // harmless after close
				if c.wait() {
					t.Fatal("a wait after close did not report it")
				}
				c.close() // twice is harmless
			})
		})
	}
}

// stillWaiting fails if the wait whose result done carries has ended
// within a short look; most often the waiter is then blocked in it, so the
// step after this one acts on a waiting clock.
func stillWaiting(t *testing.T, done <-chan bool) {
	t.Helper()
	select {
	case <-done:
		t.Fatal("the wait ended early")
	case <-time.After(20 * time.Millisecond):
	}
}
