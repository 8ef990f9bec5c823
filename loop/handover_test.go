package loop

import (
	"context"
	"testing"
	"time"
)

// A sender that wins the drain token on a conn not yet started leaves the
// drain to OnOpen; if the conn starts between its look at the loop and
// that hand-over, OnOpen has already passed, and the sender drains
// (dispatches) the queue itself: the item goes out, not left queued with
// the token taken and nobody to drain it.
func TestATokenWonAsTheConnStartsIsDrainedByItsSender(t *testing.T) {
	for range 5 {
		h := newFrameHandler(nil)
		c := dialNamed(t, h)
		c.SetHandler(newFrameHandler(nil))
		var started bool
		hook := func(hc *Conn) {
			if hc != c || started {
				return
			}
			started = true
			c.Start()
			opened := make(chan struct{})
			c.Execute(func() { close(opened) }) // runs after OnOpen
			<-opened
		}
		testHookOpenOwed.Store(&hook)
		err := c.Enqueue(context.Background(), frame(nil, []byte("first")))
		testHookOpenOwed.Store(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !started {
			t.Fatal("the sender found the conn's loop at its first look: the hand-over was not exercised")
		}
		eventually(t, 5*time.Second, "the frame queued as the conn started", func() bool { n, _, _ := h.count(); return n == 1 })
		_ = c.Close(nil)
	}
}

// The same, with the conn started only after the sender handed its token
// over: OnOpen drains the queue, and the item goes out.
func TestATokenWonBeforeTheConnStartsIsDrainedByOnOpen(t *testing.T) {
	h := newFrameHandler(nil)
	c := dialNamed(t, h)
	c.SetHandler(newFrameHandler(nil))
	if err := c.EnqueueAppend(context.Background(), 16, func(dst []byte) ([]byte, error) { return frame(dst, []byte("first")), nil }); err != nil {
		t.Fatal(err)
	}
	if !c.openOwed.Load() {
		t.Fatal("the token won before the start was not handed to OnOpen")
	}
	c.Start()
	eventually(t, 5*time.Second, "the frame queued before the start", func() bool { n, _, _ := h.count(); return n == 1 })
	if c.openOwed.Load() {
		t.Fatal("OnOpen left the hand-over flag set")
	}
	_ = c.Close(nil)
}
