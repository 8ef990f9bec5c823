package loop

import (
	"context"
	"testing"
	"time"
)

// pingPong sends n items from the client and waits for each echo.
func pingPong(t *testing.T, p *pair, got <-chan struct{}, n int) {
	t.Helper()
	item := frame(nil, make([]byte, 64))
	for i := range n {
		if err := p.cliConn.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("reply %d did not arrive", i)
		}
	}
}

func echoPair(t *testing.T) (*pair, chan struct{}) {
	got := make(chan struct{}, 1)
	echo := func(c *Conn, f []byte) { _ = c.EnqueueNoWait(frame(nil, f)) }
	return newPair(t, echo, func(*Conn, []byte) { got <- struct{}{} }), got
}

// A conn gets a dup of its socket only once direct writes are wanted again
// and again, writes through it, and gives it back after dupIdle without a
// direct write: an idle conn holds one descriptor, not two.
func TestDupIsMadeOnDemandAndDroppedWhenIdle(t *testing.T) {
	saved := dupIdle
	dupIdle = 100 * time.Millisecond
	t.Cleanup(func() { dupIdle = saved })
	p, got := echoPair(t)
	if p.cliConn.dup.Load() != nil || p.srvConn.dup.Load() != nil {
		t.Fatal("a conn that has sent nothing holds a dup")
	}
	var d *dupSock
	eventually(t, 20*time.Second, "a dup and direct writes through it", func() bool {
		pingPong(t, p, got, 10)
		d = p.cliConn.dup.Load()
		return d != nil && p.cliConn.nDirect.Load() > 0
	})
	eventually(t, 20*time.Second, "the idle conn's dup dropped", func() bool {
		return p.cliConn.dup.Load() == nil
	})
	if r := d.refs.Load(); r != 0 {
		t.Fatalf("dropped dup has %d references, want 0 (closed)", r)
	}
	// Asked for again by the next run of requests, and still correct.
	eventually(t, 20*time.Second, "a new dup", func() bool {
		pingPong(t, p, got, 10)
		return p.cliConn.dup.Load() != nil
	})
}

// Sends further apart than dupWantWindow never make a dup (a heartbeat
// every few seconds on an otherwise idle link).
func TestNoDupForRareSends(t *testing.T) {
	p, got := echoPair(t)
	pingPong(t, p, got, 1)
	time.Sleep(dupWantWindow + 100*time.Millisecond)
	pingPong(t, p, got, 1)
	if p.cliConn.dup.Load() != nil {
		t.Fatal("two sends a window apart made a dup")
	}
}

// A conn denied a dup by the process's budget keeps working (its sends
// wake the loop), and one closed with a dup gives it back: once both ends
// of the pair closed, every dup they held (direct writes' and their loops'
// socket waits', idle.go) is given back.
func TestDupBudget(t *testing.T) {
	savedIdle := dupIdle
	dupIdle = 100 * time.Millisecond // also the wait before asking again after a denial
	t.Cleanup(func() { dupIdle = savedIdle })
	dups.take() // sets the limit from the rlimit
	dups.give()
	saved := dups.limit.Load()
	t.Cleanup(func() { dups.limit.Store(saved) })
	base := dups.open.Load()
	dups.limit.Store(base)
	p, got := echoPair(t)
	pingPong(t, p, got, 200)
	if p.cliConn.dup.Load() != nil || p.cliConn.nDirect.Load() != 0 {
		t.Fatal("a dup over the budget")
	}
	dups.limit.Store(saved)
	eventually(t, 20*time.Second, "a dup within the budget", func() bool {
		pingPong(t, p, got, 10)
		return p.cliConn.dup.Load() != nil
	})
	_ = p.cliConn.Close(nil)
	<-p.cliConn.gone
	if p.cliConn.dup.Load() != nil {
		t.Fatal("closed conn still holds its dup")
	}
	<-p.srvConn.gone // the peer's close follows
	if n := dups.open.Load(); n != base {
		t.Fatalf("closed conns still hold %d dups (open %d, was %d)", n-base, n, base)
	}
}

// giveDup makes c's dup now, as a run of direct-write wants would, for
// tests whose first send must be able to write directly.
func giveDup(t *testing.T, c *Conn) {
	t.Helper()
	c.exec(c.makeDup)
	eventually(t, 10*time.Second, "a dup", func() bool { return c.dup.Load() != nil })
}
