package loop

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A bulk loop runs on an OS thread of its own, through traffic, and
// waits in gnet's epoll_wait; a loop for small items waits in Go's
// netpoller; and the bulk loop's thread ends with its engine.
func TestBulkLoopsRunOnAThreadOfTheirOwn(t *testing.T) {
	sh := newFrameHandler(nil)
	srv, cli := namedEnginePair(t)
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) { c.SetHandler(sh); c.Start() })
	if err != nil {
		t.Fatal(err)
	}
	dial := func(bulk bool) *Conn {
		t.Helper()
		c, err := cli.Dial(context.Background(), addr.String(), "srv")
		if err != nil {
			t.Fatal(err)
		}
		if bulk {
			c.SetBulkOnly()
		}
		c.SetHandler(newFrameHandler(nil))
		c.Start()
		return c
	}
	// tid tells the thread c's loop runs a task on.
	tid := func(c *Conn) int {
		t.Helper()
		got := make(chan int, 1)
		c.Execute(func() { got <- unix.Gettid() })
		select {
		case id := <-got:
			return id
		case <-time.After(20 * time.Second):
			t.Fatal("the loop did not run the probe")
			return 0
		}
	}
	small, bulk := dial(false), dial(true)
	first := tid(bulk)
	// Locked, the bulk loop waits in gnet's epoll_wait, where it wakes on
	// its own thread; the small items' loop in Go's netpoller (idle.go).
	if bulk.ls.Load().idle.Load() != nil {
		t.Errorf("the bulk loop waits in Go's netpoller")
	}
	if small.ls.Load().idle.Load() == nil {
		t.Errorf("the small items' loop has no wait in Go's netpoller")
	}
	// Traffic both ways, the bulk loop's probes between its frames: it
	// stays on its thread.
	for i := range 8 {
		for _, c := range []*Conn{small, bulk} {
			if _, err := c.EnqueueBulk(context.Background(), frame(nil, make([]byte, 64<<10))); err != nil {
				t.Fatal(err)
			}
		}
		if now := tid(bulk); now != first {
			t.Fatalf("round %d: the bulk loop moved from thread %d to %d", i, first, now)
		}
	}
	eventually(t, 20*time.Second, "sixteen frames", func() bool {
		n, _, _ := sh.count()
		return n == 16
	})
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	// The thread ends once its loop's goroutine has (a moment after
	// Close), unless it is the main thread, which the runtime never ends
	// (a locked goroutine that exits there leaves it parked for good).
	if first != os.Getpid() {
		eventually(t, 20*time.Second, "the bulk loop's thread to end", func() bool {
			_, err := os.Stat("/proc/self/task/" + strconv.Itoa(first))
			return os.IsNotExist(err)
		})
	}
}
