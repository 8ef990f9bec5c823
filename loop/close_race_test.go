package loop

import (
	"context"
	"testing"
	"time"
)

// Regression tests from the review of the close path.

// A sender's direct write holds the drain token while another goroutine
// enqueues B and then closes: B was queued before the close, so it must
// reach the peer before close_notify.
func TestCloseSendsAnItemQueuedDuringADirectWrite(t *testing.T) {
	sh := newFrameHandler(nil)
	c := dialNamed(t, sh)
	inDrain, release := make(chan struct{}), make(chan struct{})
	first := true
	c.SetDrain(func(dst []byte, items [][]byte) []byte {
		if ls := c.ls.Load(); first && ls != nil && !ls.busy.Load() { // off the loop: a direct write
			first = false
			close(inDrain)
			<-release
		}
		for _, it := range items {
			dst = append(dst, it...)
		}
		return dst
	})
	c.SetHandler(newFrameHandler(nil))
	c.Start()
	eventually(t, 10*time.Second, "direct writes enabled", c.direct.Load)
	giveDup(t, c)
	go func() { _ = c.Enqueue(context.Background(), frame(nil, []byte("A"))) }()
	<-inDrain
	if err := c.Enqueue(context.Background(), frame(nil, []byte("B"))); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(errTestReason)
	eventually(t, 10*time.Second, "the loop to see the close", func() bool { return c.reached(closing) })
	close(release)
	select {
	case <-sh.closedC:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer never saw the close")
	}
	if n, _, _ := sh.count(); n != 2 {
		t.Fatalf("the peer got %d of the 2 frames queued before Close", n)
	}
}

// Engine.Close right after Dial returned, before its caller set a handler,
// must not panic.
func TestEngineCloseBeforeTheHandlerIsSet(t *testing.T) {
	srv, err := New(WithLoops(1), WithHook(nameHook("srv")))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := New(WithLoops(1), WithHook(nameHook("cli")))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) { c.SetHandler(newFrameHandler(nil)); c.Start() })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Dial(context.Background(), addr.String(), "srv"); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
}
