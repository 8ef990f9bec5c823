package loop

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

var errTestReason = errors.New("test reason")

func TestCloseDeliversOnCloseOnceWithReason(t *testing.T) {
	tests := []struct {
		name        string
		closeServer bool // else the client closes
	}{
		{"client closes", false},
		{"server closes", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, nil, nil)
			local, remote := p.cliConn, p.srvConn
			lh, rh := p.cliHandl, p.srvHandler
			if tt.closeServer {
				local, remote, lh, rh = remote, local, rh, lh
			}
			_ = remote
			if err := local.Close(errTestReason); err != nil {
				t.Fatal(err)
			}
			_ = local.Close(errors.New("second reason is ignored"))
			for _, h := range []*frameHandler{lh, rh} {
				select {
				case <-h.closedC:
				case <-time.After(10 * time.Second):
					t.Fatal("OnClose not delivered")
				}
			}
			_, n, reason := lh.count()
			if n != 1 || !errors.Is(reason, errTestReason) {
				t.Fatalf("local OnClose: %d calls, reason %v; want 1, %v", n, reason, errTestReason)
			}
			_, n, reason = rh.count()
			if n != 1 || !errors.Is(reason, ErrPeerClosed) {
				t.Fatalf("remote OnClose: %d calls, reason %v; want 1, ErrPeerClosed", n, reason)
			}
			err := local.Enqueue(context.Background(), []byte("x"))
			if !errors.Is(err, ErrClosed) || !errors.Is(err, errTestReason) {
				t.Fatalf("Enqueue after close = %v, want ErrClosed wrapping the reason", err)
			}
			// Engine.Close after the conns closed still finishes cleanly.
			if err := p.client.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.client.Close(); err != nil {
				t.Fatal("second Close:", err)
			}
			_, n, _ = lh.count()
			if n != 1 {
				t.Fatalf("OnClose ran %d times", n)
			}
		})
	}
}

func TestEngineCloseClosesLiveConns(t *testing.T) {
	p := newPair(t, nil, nil)
	if err := p.client.Close(); err != nil {
		t.Fatal(err)
	}
	_, n, reason := p.cliHandl.count()
	if n != 1 || !errors.Is(reason, ErrEngineClosed) {
		t.Fatalf("OnClose after Engine.Close: %d calls, reason %v", n, reason)
	}
	select {
	case <-p.srvHandler.closedC:
	case <-time.After(10 * time.Second):
		t.Fatal("peer did not see the close")
	}
	if _, err := p.client.Dial(context.Background(), "127.0.0.1:1", nil); !errors.Is(err, ErrEngineClosed) {
		t.Fatalf("Dial after Close = %v, want ErrEngineClosed", err)
	}
}

func TestCloseBeforeStartDeliversOnCloseOffLoop(t *testing.T) {
	srv, err := New(WithLoops(1))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := New(WithLoops(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) {
		c.SetHandler(newFrameHandler(nil))
		c.Start()
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cli.Dial(context.Background(), addr.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newFrameHandler(nil)
	c.SetHandler(h)
	_ = c.Close(errTestReason)
	_, n, reason := h.count()
	if n != 1 || !errors.Is(reason, errTestReason) {
		t.Fatalf("OnClose: %d calls, reason %v", n, reason)
	}
	c.Start() // a no-op on a closed conn
	if _, n, _ = h.count(); n != 1 {
		t.Fatalf("OnClose ran %d times", n)
	}
}

func TestCloseSendsWhatWasQueuedBeforeIt(t *testing.T) {
	for round := range 20 {
		p := newPair(t, nil, nil)
		const items = 200
		for i := range items {
			if err := p.cliConn.Enqueue(context.Background(), frame(nil, []byte{byte(i)})); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.cliConn.Close(errTestReason); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.srvHandler.closedC:
		case <-time.After(10 * time.Second):
			t.Fatal("server never saw the close")
		}
		if frames, _, _ := p.srvHandler.count(); frames != items {
			t.Fatalf("round %d: the peer got %d of the %d items queued before Close", round, frames, items)
		}
	}
}

// A close that finds more than one drain quantum queued seals all of it
// before close_notify: the loop's passes take the urgent lane a quantum at
// a time, the close takes everything (nothing goes out after it). The
// items are queued and the close made inside one loop callback, so the
// close finds them all still queued; the conn's drain function counts what
// it is handed (what the socket then delivers of a cut is gnet's
// business).
func TestCloseSealsEverythingQueuedPastOneQuantum(t *testing.T) {
	c := dialNamed(t, newFrameHandler(nil))
	var drained atomic.Int64
	c.SetDrain(func(dst []byte, items [][]byte) []byte {
		for _, it := range items {
			drained.Add(int64(len(it)))
			dst = append(dst, it...)
		}
		return dst
	})
	h := newFrameHandler(nil)
	c.SetHandler(h)
	c.Start()
	item := frame(nil, make([]byte, 1<<10))
	const items = 4 * drainQuantum >> 10
	c.Execute(func() {
		for range items {
			if err := c.EnqueueNoWait(item); err != nil {
				t.Error(err)
				return
			}
		}
		c.closeOnLoop(errTestReason)
	})
	select {
	case <-h.closedC:
	case <-time.After(10 * time.Second):
		t.Fatal("the conn never closed")
	}
	if got, want := drained.Load(), int64(items*len(item)); got != want {
		t.Fatalf("the close sealed %d of the %d bytes queued before it", got, want)
	}
}
