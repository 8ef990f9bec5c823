package loop

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// A bulk loop yields its OS thread while it moves bulk data, on the sending
// side (after a drain it wrote) and on the receiving side (after a read it
// handed to the handler), so that a thread woken for a small message does
// not wait for the scheduler's next tick (bulkyield.go). The yields are
// counted, not timed: the stream runs until both bulk loops have yielded
// (a hang guard bounds it).
func TestBulkLoopsYieldTheirThreads(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the yield is Linux's sched_yield")
	}
	c, s, _ := yieldPair(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { // a stream that keeps both bulk loops busy
		item := frame(nil, make([]byte, 64<<10))
		for ctx.Err() == nil {
			if _, err := c.EnqueueBulk(ctx, item); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	eventually(t, 20*time.Second, "both bulk loops yield", func() bool {
		return c.ls.Load().yields.Load() > 0 && s.ls.Load().yields.Load() > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The loops of conns for small items never yield, even for megabytes on
// such a conn's bulk lane: they carry the round trips the yield is for.
func TestSmallItemsLoopsDoNotYield(t *testing.T) {
	c, s, sh := yieldPair(t, false)
	payload := make([]byte, 64<<10)
	const frames = 64
	for range frames {
		if _, err := c.EnqueueBulk(context.Background(), frame(nil, payload)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "every frame", func() bool {
		n, _, _ := sh.count()
		return n == frames
	})
	if n, m := c.ls.Load().yields.Load(), s.ls.Load().yields.Load(); n != 0 || m != 0 {
		t.Fatalf("the loops of a conn for small items yielded %d (sending) and %d (receiving) times; want none", n, m)
	}
}

// yieldPair dials a started conn between two engines, bulk-only on both
// sides or on neither, and returns the client's conn, the server's, and the
// server's handler.
func yieldPair(t *testing.T, bulk bool) (cli, srv *Conn, sh *frameHandler) {
	t.Helper()
	se, ce := namedEnginePair(t)
	accepted := make(chan *Conn, 1)
	sh = newFrameHandler(nil)
	addr, err := se.Listen("127.0.0.1:0", func(c *Conn) {
		if bulk {
			c.SetBulkOnly() // as a node does with its peer's companion
		}
		c.SetHandler(sh)
		c.Start()
		accepted <- c
	})
	if err != nil {
		t.Fatal(err)
	}
	cli, err = ce.Dial(context.Background(), addr.String(), "srv")
	if err != nil {
		t.Fatal(err)
	}
	if bulk {
		cli.SetBulkOnly()
	}
	cli.SetHandler(newFrameHandler(nil))
	cli.Start()
	select {
	case srv = <-accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("no conn accepted")
	}
	eventually(t, 20*time.Second, "both conns on their loops", func() bool {
		return cli.ls.Load() != nil && srv.ls.Load() != nil
	})
	return cli, srv, sh
}
