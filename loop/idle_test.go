package loop

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// After input, a loop waits in Go's netpoller (idle.go) on Linux, and
// whatever reaches it while it waits there is handled: input from the
// peer, a task (Execute), a timer, a close, and a new conn's enrolment.
func TestLoopWaitsInTheNetpollerAndWakesForAnything(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the netpoller wait needs /proc and epoll")
	}
	got := make(chan string, 16)
	echo := func(c *Conn, f []byte) { _ = c.EnqueueNoWait(frame(nil, f)) }
	p := newPair(t, echo, func(_ *Conn, f []byte) { got <- string(f) })
	wait := func(want string) {
		t.Helper()
		select {
		case f := <-got:
			if f != want {
				t.Fatalf("got %q, want %q", f, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q did not arrive", want)
		}
	}
	ls := p.cliConn.ls.Load()
	w := ls.idle.Load()
	if w == nil {
		t.Fatal("the loop found no gnet epoll to wait on")
	}
	// parked checks that the loop goes back to the netpoller after input;
	// a task queued at the wrong moment may send it to gnet's own wait
	// once, so it pings again until it sees the loop there.
	parked := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !w.waiting.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the loop does not wait in the netpoller")
			}
			if err := p.cliConn.Enqueue(context.Background(), frame(nil, []byte("probe"))); err != nil {
				t.Fatal(err)
			}
			wait("probe")
			time.Sleep(time.Millisecond)
		}
	}
	for _, m := range []string{"one", "two", "three"} {
		if err := p.cliConn.Enqueue(context.Background(), frame(nil, []byte(m))); err != nil {
			t.Fatal(err)
		}
		wait(m)
		parked()
	}
	ran := make(chan struct{})
	p.cliConn.Execute(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a task queued while the loop waited did not run")
	}
	if err := p.cliConn.Enqueue(context.Background(), frame(nil, []byte("four"))); err != nil {
		t.Fatal(err)
	}
	wait("four")
	parked()
	fired := make(chan struct{})
	p.cliConn.AfterFunc(time.Millisecond, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("a timer did not fire while the loop waited")
	}
	if err := p.cliConn.Enqueue(context.Background(), frame(nil, []byte("4b"))); err != nil {
		t.Fatal(err)
	}
	wait("4b")
	parked()
	// A second conn between the same engines enrols while loops wait.
	c2, _ := secondConn(t, p, echo, func(_ *Conn, f []byte) { got <- string(f) })
	if err := c2.Enqueue(context.Background(), frame(nil, []byte("five"))); err != nil {
		t.Fatal(err)
	}
	wait("five")
	if c2.ls.Load().idle.Load() == nil {
		t.Fatal("the second conn's loop found no gnet epoll to wait on")
	}
	_ = p.cliConn.Close(nil)
	waitClosed(t, p.cliHandl, "a close asked while the loop waited did not end the conn")
}
