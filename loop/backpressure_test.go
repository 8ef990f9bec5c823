package loop

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshrt/mesh/tlsconn"
)

// deafPeer is a TLS server that completes TLS and the name hook, then never
// reads again. It returns its address and a stop function.
func deafPeer(t *testing.T) (string, func()) { return tlsPeer(t, nil) }

// tlsPeer is a raw TLS server (not an engine): on each connection, with a
// 16 KiB socket receive buffer, it completes TLS and the name hook, hands
// the raw TCP conn to accepted (if not nil) and reads nothing itself. It
// returns its address and a stop function that closes the listener and
// every conn, and waits for its goroutine.
func tlsPeer(t *testing.T, accepted func(*net.TCPConn)) (string, func()) {
	t.Helper()
	cert, err := tlsconn.NewCertificate(0)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			tcp := nc.(*net.TCPConn)
			_ = tcp.SetReadBuffer(16 << 10)
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			tc := tls.Server(nc, tlsconn.ServerConfig(cert))
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				continue
			}
			_, _ = nameHook("deaf")(context.Background(), tc, false, nil)
			_ = nc.SetDeadline(time.Time{})
			if accepted != nil {
				accepted(tcp)
			}
		}
	}()
	return ln.Addr().String(), func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// outboundBuffered reads gnet's unsent byte count on the conn's loop.
func outboundBuffered(c *Conn) int {
	ch := make(chan int, 1)
	c.Execute(func() { ch <- c.gc.OutboundBuffered() })
	select {
	case n := <-ch:
		return n
	case <-time.After(5 * time.Second):
		return -1
	}
}

// enqueuer is one way of queueing an item: Enqueue, or EnqueueAppend with
// an encoder that appends it.
type enqueuer struct {
	name string
	call func(c *Conn, ctx context.Context, item []byte) error
}

var enqueuers = []enqueuer{
	{"Enqueue", func(c *Conn, ctx context.Context, item []byte) error { return c.Enqueue(ctx, item) }},
	{"EnqueueAppend", func(c *Conn, ctx context.Context, item []byte) error {
		return c.EnqueueAppend(ctx, len(item), func(dst []byte) ([]byte, error) { return append(dst, item...), nil })
	}},
}

// Senders to a peer that reads nothing block at the high-water mark
// (whichever way they queue), the queue stays bounded, another peer on the
// same loop is served meanwhile, and Close releases a blocked sender.
func TestBackpressureBlocksOnlyTheSlowPeersSenders(t *testing.T) {
	for _, via := range enqueuers {
		t.Run(via.name, func(t *testing.T) { backpressureBlocksOnlyTheSlowPeersSenders(t, via.call) })
	}
}

func backpressureBlocksOnlyTheSlowPeersSenders(t *testing.T, enqueue func(*Conn, context.Context, []byte) error) {
	const high, low = 256 << 10, 64 << 10
	deafAddr, stopDeaf := deafPeer(t)
	defer stopDeaf()
	// A healthy echo peer on its own engine.
	echoSrv, err := New(WithLoops(1), WithHook(nameHook("echo")))
	if err != nil {
		t.Fatal(err)
	}
	defer echoSrv.Close()
	echoAddr, err := echoSrv.Listen("127.0.0.1:0", func(c *Conn) {
		c.SetHandler(newFrameHandler(func(c *Conn, f []byte) { _ = c.Enqueue(context.Background(), frame(nil, f)) }))
		c.Start()
	})
	if err != nil {
		t.Fatal(err)
	}
	// The client engine has ONE loop serving both links.
	cli, err := New(WithLoops(1), WithHook(nameHook("cli")), WithWaterMarks(high, low))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	slow, err := cli.Dial(ctx, deafAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	slow.SetHandler(newFrameHandler(nil))
	slow.Start()
	healthyH := newFrameHandler(nil)
	healthy, err := cli.Dial(ctx, echoAddr.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	healthy.SetHandler(healthyH)
	healthy.Start()

	// Four senders push into the deaf peer until they block.
	const senders = 4
	item := frame(nil, make([]byte, 1000))
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				err := enqueue(slow, sctx, item)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("blocked sender got %v, want context.DeadlineExceeded", err)
		}
	}
	if q := slow.Queued(); q > high+senders*len(item) {
		t.Fatalf("queued %d bytes, bound is %d", q, high+senders*len(item))
	}
	if ob := outboundBuffered(slow); ob < 0 || ob > 2*high+64<<10 {
		t.Fatalf("gnet holds %d unsent bytes, bound is about %d", ob, 2*high)
	}

	// Meanwhile the healthy peer on the same loop still round-trips.
	const rounds = 200
	for i := range rounds {
		if err := healthy.Enqueue(ctx, frame(nil, []byte("ping"))); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "echo", func() bool {
			n, _, _ := healthyH.count()
			return n == i+1
		})
	}

	// Closing the slow conn releases a sender blocked without a deadline.
	blocked := make(chan error, 1)
	go func() { blocked <- enqueue(slow, ctx, item) }()
	_ = slow.Close(errTestReason)
	select {
	case err := <-blocked:
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Fatalf("sender released with %v, want nil or ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked sender not released by Close")
	}
}

func TestBackpressureReleasesSendersWhenThePeerReads(t *testing.T) {
	const high, low = 64 << 10, 16 << 10
	var mu sync.Mutex
	received := 0
	p := newPair(t, func(c *Conn, f []byte) {
		mu.Lock()
		received++
		mu.Unlock()
	}, nil, WithWaterMarks(high, low))
	item := frame(nil, make([]byte, 512))
	const total = 4000 // 2 MB through a 64 KiB window
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range total / 4 {
				if err := p.cliConn.Enqueue(context.Background(), item); err != nil {
					t.Error(err)
					return
				}
				if q := p.cliConn.Queued(); q > high+4*len(item) {
					t.Errorf("queued %d over the bound", q)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 20*time.Second, "all items", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received == total
	})
}

// A peer that stops reading while gnet holds part of a write: the loop
// waits for the socket briefly a few times, then backs off, instead of
// waking every socketWait for as long as the peer stays silent.
func TestStalledSocketBacksOff(t *testing.T) {
	deafAddr, stopDeaf := deafPeer(t)
	defer stopDeaf()
	// A high-water mark far above what the socket holds, so gnet's
	// backlog stays under it and the socket-wait path is the one taken.
	cli, err := New(WithLoops(1), WithHook(nameHook("cli")), WithWaterMarks(256<<20, 128<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c, err := cli.Dial(context.Background(), deafAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetHandler(newFrameHandler(nil))
	c.Start()
	item := frame(nil, make([]byte, 1000))
	for sent := 0; outboundBuffered(c) == 0; sent++ {
		if sent > 1<<20 {
			t.Fatal("the socket never filled")
		}
		for range 100 {
			if err := c.Enqueue(context.Background(), item); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.Enqueue(context.Background(), item); err != nil { // something left to flush
		t.Fatal(err)
	}
	before := c.nSocketWait.Load()
	time.Sleep(200 * time.Millisecond)
	// Without the back-off this is ~2000 (one per 100 µs); with it, the few
	// waits before backing off.
	if n := c.nSocketWait.Load() - before; n > 50 {
		t.Fatalf("%d socket waits in 200 ms while the peer read nothing, want a few", n)
	}
}

// SendWaits counts the enqueues that found their own lane at the
// high-water mark (each waited, whatever came of it), not one that found
// only the other lane full.
func TestSendWaitsCountsOnlyEnqueuesThatWaited(t *testing.T) {
	e := &Engine{opts: defaultOptions()}
	e.opts.high = 1 << 10
	c := &Conn{e: e, drain: concatItems, done: make(chan struct{})}
	c.bulkQueued.Store(2 << 10) // the bulk lane is full
	if err := c.Enqueue(context.Background(), []byte("urgent")); err != nil {
		t.Fatal(err)
	}
	if err := c.EnqueueAppend(context.Background(), 16, func(dst []byte) ([]byte, error) { return append(dst, "urgent"...), nil }); err != nil {
		t.Fatal(err)
	}
	if n := c.SendWaits(); n != 0 {
		t.Fatalf("SendWaits = %d after urgent items with only the bulk lane full; want 0", n)
	}
	c.queued.Store(2 << 10) // now the urgent lane is full too
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // each wait ends at once
	if err := c.Enqueue(ctx, []byte("waits")); err == nil {
		t.Fatal("Enqueue into a full lane with a done context succeeded")
	}
	if err := c.EnqueueAppend(ctx, 16, func(dst []byte) ([]byte, error) { return append(dst, "waits"...), nil }); err == nil {
		t.Fatal("EnqueueAppend into a full lane with a done context succeeded")
	}
	if _, err := c.EnqueueBulk(ctx, []byte("waits")); err == nil {
		t.Fatal("EnqueueBulk into a full lane with a done context succeeded")
	}
	if n := c.SendWaits(); n != 3 {
		t.Fatalf("SendWaits = %d after three enqueues into full lanes; want 3", n)
	}
}

// A sender that waits for room counts one wait, however often the loop
// wakes it while its lane stays full.
func TestSendWaitsCountsAWaitOnceHoweverOftenItIsWoken(t *testing.T) {
	e := &Engine{opts: defaultOptions()}
	e.opts.high, e.opts.low = 1<<10, 1<<9
	c := &Conn{e: e, drain: concatItems, done: make(chan struct{})}
	c.bulkQueued.Store(2 << 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := c.EnqueueBulk(ctx, []byte("x")); done <- err }()
	for range 5 { // the urgent lane is empty: each drain wakes the bulk waiter, which waits on
		eventually(t, 5*time.Second, "a waiter", func() bool { return c.waiters.Load() })
		c.wakeSenders()
	}
	cancel()
	<-done
	if n := c.SendWaits(); n != 1 {
		t.Fatalf("SendWaits = %d for one enqueue woken 5 times; want 1", n)
	}
}

// EnqueueNoWait never waits: while the conn's loop cannot drain (a task
// holds it here, as a loop starved of CPU would be), its items take the
// queue up to the hard limit, four times the high-water mark, and the one
// that finds the queue there closes the conn with ErrSlowConsumer instead
// of queueing: memory stays bounded, and the handler's OnClose gets that
// reason. Enqueue, beside it, waits at the high-water mark. So a sender
// that streams must use Enqueue: one that streams with EnqueueNoWait has
// its conn cut whenever it outruns the loop by that much
// (TestKicksRacingTheSocketWaitNeverLeaveItDeaf's stream did, on a loaded
// machine).
func TestEnqueueNoWaitCutsTheConnPastTheHardLimit(t *testing.T) {
	const high = 1 << 20
	p := newPair(t, nil, nil, WithLoops(1), WithWaterMarks(high, high/2))
	c := p.srvConn
	held, hold := make(chan struct{}), make(chan struct{})
	c.Execute(func() { close(held); <-hold })
	<-held
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	item := frame(nil, make([]byte, 64<<10-4))

	// Enqueue fills the queue to the high-water mark and then waits.
	for c.Queued() < high {
		if err := c.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- c.Enqueue(ctx, item) }()
	eventually(t, 10*time.Second, "Enqueue waiting at the high-water mark", func() bool { return c.SendWaits() == 1 })
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue at the high-water mark returned %v, want it to wait until its context ended", err)
	}

	// EnqueueNoWait queues past it, up to the hard limit, then cuts.
	var err error
	for err == nil {
		if c.Queued() > 4*high+len(item) {
			t.Fatalf("%d bytes queued, past the hard limit (%d) by more than an item", c.Queued(), 4*high)
		}
		err = c.EnqueueNoWait(item)
	}
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("EnqueueNoWait past the hard limit returned %v, want ErrClosed wrapping ErrSlowConsumer", err)
	}
	if n := c.Queued(); n < 4*high {
		t.Fatalf("cut at %d bytes queued, under the hard limit (%d)", n, 4*high)
	}
	release()
	waitClosed(t, p.srvHandler, "the cut conn did not close")
	if _, _, reason := p.srvHandler.count(); !errors.Is(reason, ErrSlowConsumer) {
		t.Fatalf("OnClose reason %v, want ErrSlowConsumer", reason)
	}
}
