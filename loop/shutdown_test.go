package loop

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Regression: Close handed the queue and close_notify to gnet and closed
// at once, and gnet dropped what the socket could not take: the tail of a
// large transfer never arrived. Shutdown delivers all of it to a peer that
// keeps reading, however slowly.
func TestShutdownDeliversEverythingQueuedToAReadingPeer(t *testing.T) {
	const frameSize, frames = 16 << 10, 768 // 12 MiB
	p := newPair(t, func(*Conn, []byte) {
		time.Sleep(50 * time.Microsecond) // a slow reader: the socket backs up
	}, nil, WithWaterMarks(8<<20, 2<<20))
	payload := make([]byte, frameSize)
	item := frame(nil, payload)
	for range frames {
		if err := p.cliConn.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.cliConn.Shutdown(ctx, errTestReason); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	select {
	case <-p.srvHandler.closedC:
	case <-ctx.Done():
		t.Fatal("the peer never saw the close")
	}
	p.srvHandler.mu.Lock()
	got, bytes := p.srvHandler.frames, p.srvHandler.bytes
	p.srvHandler.mu.Unlock()
	if got != frames || bytes != frames*frameSize {
		t.Fatalf("the peer got %d frames (%d bytes) of %d (%d bytes)", got, bytes, frames, frames*frameSize)
	}
	_, n, reason := p.cliHandl.count()
	if n != 1 || !errors.Is(reason, errTestReason) {
		t.Fatalf("OnClose: %d calls, reason %v; want 1, %v", n, reason, errTestReason)
	}
	if err := p.cliConn.Enqueue(context.Background(), item); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue after Shutdown = %v, want ErrClosed", err)
	}
}

// A peer that reads nothing is cut when Shutdown's ctx ends, and its queue
// is never sealed (no copy of it through TLS on the loop).
func TestShutdownCutsAPeerThatStoppedReading(t *testing.T) {
	deafAddr, stopDeaf := deafPeer(t)
	defer stopDeaf()
	cli, err := New(WithLoops(1), WithHook(nameHook("cli")), WithWaterMarks(256<<10, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c, err := cli.Dial(context.Background(), deafAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newFrameHandler(nil)
	c.SetHandler(h)
	c.Start()
	// A small fixed send buffer: the kernel holds little, so gnet's own
	// buffer fills to the high-water mark and stays there.
	sized := make(chan error, 1)
	c.Execute(func() { sized <- syscall.SetsockoptInt(c.gc.Fd(), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 16<<10) })
	if err := <-sized; err != nil {
		t.Fatal(err)
	}
	item := frame(nil, make([]byte, 1000))
	for tries := 0; ; tries++ {
		if tries > 1<<16 {
			t.Fatal("the queue never filled with gnet holding unsent bytes")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := c.Enqueue(ctx, item)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && outboundBuffered(c) > 0 {
			break // a full queue, and gnet holds what the socket did not take
		} else if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
	}
	queued := c.Queued()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.Shutdown(ctx, errTestReason); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if _, n, _ := h.count(); n != 1 {
		t.Fatalf("OnClose ran %d times before Shutdown returned", n)
	}
	if q := c.Queued(); q != queued {
		t.Fatalf("queued bytes went from %d to %d: the cut sealed the queue", queued, q)
	}
}

// Both ends shut down at once: each side's close_notify closes one
// direction only, so both drains finish and both calls return.
func TestShutdownOnBothEndsAtOnce(t *testing.T) {
	p := newPair(t, nil, nil)
	item := frame(nil, make([]byte, 1000))
	for range 100 {
		if err := p.cliConn.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
		if err := p.srvConn.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*Conn{p.cliConn, p.srvConn} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Shutdown(ctx, errTestReason)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Fatalf("end %d: Shutdown = %v", i, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the shutdowns ran into their deadline")
	}
}

// peerEOF tells a clean close by the peer, after which an empty gnet
// buffer means the socket took everything, from gnet's hang-up path,
// which empties the buffer itself. The cases are the errors gnet v2
// passes to OnClose.
func TestPeerEOF(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"a read found the peer's FIN", os.NewSyscallError("read", io.EOF), true},
		{"the hang-up path dropped the outbound buffer", io.EOF, false},
		{"the peer reset the connection", os.NewSyscallError("read", syscall.ECONNRESET), false},
		{"a write failed", os.NewSyscallError("writev", syscall.EPIPE), false},
		{"the loops are stopping", nil, false},
	} {
		if got := peerEOF(tc.err); got != tc.want {
			t.Errorf("%s: peerEOF(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// A peer that half-closes (FIN) without reading everything, while Shutdown
// lingers with bytes still in gnet's buffer, lost them: Shutdown does not
// return nil (the clean EOF counts as the drain's end only with gnet's
// buffer empty).
func TestShutdownIsNotNilWhenThePeerClosesBeforeTakingEverything(t *testing.T) {
	peer := make(chan *net.TCPConn, 1)
	addr, stopPeer := tlsPeer(t, func(c *net.TCPConn) { peer <- c })
	defer stopPeer()
	cli, err := New(WithLoops(1), WithHook(nameHook("cli")), WithWaterMarks(8<<20, 2<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c, err := cli.Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newFrameHandler(nil)
	c.SetHandler(h)
	c.Start()
	pc := <-peer
	defer pc.Close()
	// tlsPeer's 16 KiB receive buffer is for peers that read nothing. This
	// one reads, and needs room for more than one loopback segment (up to
	// 64 KiB): in a buffer no larger than one, the kernel (its estimate of
	// the segment size then the whole buffer) never announces the window
	// that the reads open, and the sender learns of it only from its
	// zero-window probes, 200 ms apart and more, backing off under load.
	// The drain then ran at some 160 KB/s (ss: the sender's persist timer
	// armed, rwnd_limited 98%, the peer's receive queue empty) in about a
	// third of the runs: 18 s on a quiet machine, past 90 s at load 17.
	if err := pc.SetReadBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	sized := make(chan error, 1)
	c.Execute(func() { sized <- syscall.SetsockoptInt(c.gc.Fd(), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 16<<10) })
	if err := <-sized; err != nil {
		t.Fatal(err)
	}
	item := frame(nil, make([]byte, 16<<10))
	for range 64 { // 1 MiB into gnet's buffer: the peer reads nothing yet
		if err := c.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
	}
	for outboundBuffered(c) <= 0 {
		time.Sleep(time.Millisecond)
	}
	for range 64 { // 1 MiB more: held in the queue while gnet holds bytes
		if err := c.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
	}
	// Last, a 1 MiB item, larger than a drain step (drainQuantum): the step
	// that empties the queue seals all of it, so gnet still holds most of
	// it when close_notify follows. Ending on the small items, that step
	// sealed from one to five of the queue's 64 KiB chunks, as their
	// boundaries fell, and after one or two the socket took nearly all:
	// gnet never held 64 KiB with close_notify sealed, and the wait below
	// ran to its bound (1 run in 10).
	if err := c.Enqueue(context.Background(), frame(nil, make([]byte, 1<<20))); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { res <- c.Shutdown(context.Background(), errTestReason) }()
	// The peer reads slowly (raw bytes, about 3 MiB/s) until told to stop.
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 16<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := pc.Read(buf); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// About a second (3 MiB at the peer's pace); only a failing run
	// reaches the bound.
	deadline := time.Now().Add(90 * time.Second)
	for { // until close_notify is sealed and gnet still holds bytes
		if time.Now().After(deadline) {
			t.Fatal("never saw a lingering conn with gnet holding bytes")
		}
		st := make(chan [2]int, 1)
		c.Execute(func() {
			l, ob := 0, 0
			if c.lingering {
				l = 1
			}
			if !c.reached(socketClosed) {
				ob = c.gc.OutboundBuffered()
			}
			st <- [2]int{l, ob}
		})
		s := <-st
		if s[0] == 1 && s[1] > 64<<10 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-stopped
	if err := pc.CloseWrite(); err != nil { // FIN, the rest never read
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err == nil || !errors.Is(err, ErrClosed) {
			t.Fatalf("Shutdown = %v after the peer's FIN with unsent bytes; want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}
