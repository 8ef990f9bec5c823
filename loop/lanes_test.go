package loop

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Items queued before Start: an urgent item, a megabyte of bulk items, then
// another urgent item. The later urgent item overtakes the bulk items (the
// first drain writes every urgent item and only a quantum of bulk), the
// earlier one stays ahead of them, and each lane keeps its order.
func TestUrgentItemsOvertakeBulkButNotWhatCameBefore(t *testing.T) {
	var mu sync.Mutex
	var got []string
	sh := newFrameHandler(func(_ *Conn, f []byte) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%c%d", f[0], binary.BigEndian.Uint32(f[1:])))
		mu.Unlock()
	})
	c := dialNamed(t, sh)
	mk := func(lane byte, seq, size int) []byte {
		p := make([]byte, size)
		p[0] = lane
		binary.BigEndian.PutUint32(p[1:], uint32(seq))
		return frame(nil, p)
	}
	ctx := context.Background()
	const bulkItems = 16 // 1 MiB
	if err := c.Enqueue(ctx, mk('U', 0, 64)); err != nil {
		t.Fatal(err)
	}
	for i := range bulkItems {
		if _, err := c.EnqueueBulk(ctx, mk('B', i, 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Enqueue(ctx, mk('U', 1, 64)); err != nil {
		t.Fatal(err)
	}
	c.SetHandler(newFrameHandler(nil))
	c.Start()
	eventually(t, 20*time.Second, "every frame", func() bool {
		n, _, _ := sh.count()
		return n == bulkItems+2
	})
	want := []string{"U0", "U1"}
	for i := range bulkItems {
		want = append(want, fmt.Sprintf("B%d", i))
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("arrival order %v\nwant %v", got, want)
	}
}

// Under concurrent senders on both lanes every frame arrives once, in order
// per sender.
func TestBothLanesKeepOrderPerSender(t *testing.T) {
	const perSender = 300
	order := newOrderCheck(4)
	p := newPair(t, order.frame, nil)
	var wg sync.WaitGroup
	for s := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size, enqueue := 64, p.cliConn.Enqueue
			if s%2 == 1 {
				size = 32 << 10
				enqueue = func(ctx context.Context, item []byte) error {
					_, err := p.cliConn.EnqueueBulk(ctx, item)
					return err
				}
			}
			payload := make([]byte, size)
			for i := range perSender {
				binary.BigEndian.PutUint32(payload, uint32(s))
				binary.BigEndian.PutUint32(payload[4:], uint32(i))
				if err := enqueue(context.Background(), frame(nil, payload)); err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 30*time.Second, "all frames", func() bool {
		n, _, _ := p.srvHandler.count()
		return n == 4*perSender
	})
	if bad, _ := order.result(); bad != 0 {
		t.Fatalf("%d frames out of order", bad)
	}
}

// EnqueueBulkFill's items take their place on the bulk lane like
// EnqueueBulk's, whether fill stays within size (a pooled buffer), grows
// past it (a buffer of its own) or is given more than a pooled buffer
// holds; an empty item queues nothing and has passed. Four senders, one
// per way in, every frame arrives once and in order per sender.
func TestEnqueueBulkFillKeepsItsPlaceOnTheBulkLane(t *testing.T) {
	const perSender = 200
	order := newOrderCheck(4)
	p := newPair(t, order.frame, nil)
	if tk, err := p.cliConn.EnqueueBulkFill(context.Background(), 64, func(dst []byte) []byte { return dst }); tk != 0 || err != nil || !p.cliConn.BulkPassed(tk) {
		t.Fatalf("an empty fill: ticket %d, err %v; want 0 (passed), nil", tk, err)
	}
	var wg sync.WaitGroup
	for s := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				payload := make([]byte, 64)
				var err error
				switch s {
				case 0:
					binary.BigEndian.PutUint32(payload, uint32(s))
					binary.BigEndian.PutUint32(payload[4:], uint32(i))
					err = p.cliConn.Enqueue(context.Background(), frame(nil, payload))
				case 1:
					payload = make([]byte, 20<<10)
					binary.BigEndian.PutUint32(payload, uint32(s))
					binary.BigEndian.PutUint32(payload[4:], uint32(i))
					_, err = p.cliConn.EnqueueBulk(context.Background(), frame(nil, payload))
				default:
					// Sender 2: items of 1-64 KiB in a buffer asked for 8 KiB
					// (some outgrow it); sender 3: 100 KiB asked for as such.
					size, n := 8<<10, 1<<10+(i*997)%(63<<10)
					if s == 3 {
						size, n = 100<<10, 100<<10-4
					}
					var tk BulkTicket
					tk, err = p.cliConn.EnqueueBulkFill(context.Background(), size, func(dst []byte) []byte {
						dst = binary.BigEndian.AppendUint32(dst, uint32(n))
						dst = binary.BigEndian.AppendUint32(dst, uint32(s))
						dst = binary.BigEndian.AppendUint32(dst, uint32(i))
						return append(dst, make([]byte, n-8)...)
					})
					if err == nil && tk == 0 {
						t.Errorf("sender %d item %d: ticket 0", s, i)
					}
				}
				if err != nil {
					t.Errorf("sender %d: %v", s, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 60*time.Second, "all frames", func() bool {
		n, _, _ := p.srvHandler.count()
		return n == 4*perSender
	})
	if bad, next := order.result(); bad != 0 {
		t.Fatalf("%d frames out of order (next per sender %v)", bad, next)
	}
}

// EnqueueBulkFill queues what fill appended to the buffer it was given, or
// to what append grew it into, and refuses any other buffer fill returns:
// a part of the one given (the queue would later pool the chunk while that
// part is queued) or a buffer of fill's own (the queue would pool it once
// drained, while fill's owner still has it). A refused fill queues
// nothing. The conn is not started, so what is queued stays there.
func TestEnqueueBulkFillRefusesABufferItWasNotGiven(t *testing.T) {
	c := dialNamed(t, newFrameHandler(nil))
	defer func() { _ = c.Close(nil) }()
	item := frame(nil, make([]byte, 1000))
	own := make([]byte, 0, chunkSize)
	for _, tc := range []struct {
		name string
		fill func(dst []byte) []byte
	}{
		{"a buffer of fill's own, a chunk's size", func([]byte) []byte { return append(own[:0], item...) }},
		{"a buffer of fill's own, smaller", func([]byte) []byte { return append(make([]byte, 0, 2000), item...) }},
		{"the given buffer past its start", func(dst []byte) []byte { return append(dst, item...)[4:] }},
	} {
		if tk, err := c.EnqueueBulkFill(context.Background(), 8<<10, tc.fill); !errors.Is(err, errFillMoved) || tk != 0 {
			t.Errorf("%s: ticket %d, err %v; want 0, errFillMoved", tc.name, tk, err)
		}
		if q := c.Queued(); q != 0 {
			t.Fatalf("%s: %d bytes queued after a refused fill", tc.name, q)
		}
	}
	want := 0
	for _, tc := range []struct {
		name string
		size int
		fill func(dst []byte) []byte
	}{
		{"in place", 8 << 10, func(dst []byte) []byte { return append(dst, item...) }},
		{"in place, capacity cut", 8 << 10, func(dst []byte) []byte { b := append(dst, item...); return b[:len(b):len(b)] }},
		{"grown by append", 8 << 10, func(dst []byte) []byte { return append(dst, make([]byte, chunkSize+1)...) }},
		{"a chunk of its own, in place", 2 * chunkSize, func(dst []byte) []byte { return append(dst, make([]byte, chunkSize+1)...) }},
	} {
		tk, err := c.EnqueueBulkFill(context.Background(), tc.size, tc.fill)
		if err != nil || tk == 0 {
			t.Fatalf("%s: ticket %d, err %v; want queued", tc.name, tk, err)
		}
		want += len(tc.fill(nil))
		if q := c.Queued(); q != want {
			t.Fatalf("%s: %d bytes queued, want %d", tc.name, q, want)
		}
	}
}

// WithSocketBuffers' short kernel queues apply only while bulk data flows:
// a started conn keeps the kernel's settings (a socket's TCP_NOTSENT_LOWAT
// reads 0 or the sysctl's value until set); the sending side's unsent limit
// is short while its bulk lane has items and back to the kernel's after a
// pass that finds none; the receiving side's buffer is short from
// ShortenReceive on. 0 leaves the kernel's setting.
func TestSocketBuffersAreShortOnlyWhileBulkFlows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_NOTSENT_LOWAT is read back on Linux only")
	}
	sockopts := func(c *Conn, before func()) (rcv, lowat int) {
		t.Helper()
		got := make(chan [2]int, 1)
		c.Execute(func() {
			if before != nil {
				before()
			}
			fd := c.gc.Fd()
			r, err1 := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF)
			l, err2 := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, tcpNotSentLowat)
			if err1 != nil || err2 != nil {
				t.Errorf("getsockopt: %v, %v", err1, err2)
			}
			got <- [2]int{r, l}
		})
		v := <-got
		return v[0], v[1]
	}
	const short = 2 * 96 << 10 // Linux doubles SO_RCVBUF for its bookkeeping
	// The receiving loop blocks in its handler until released, so the
	// socket backs up and the sending loop waits with bulk items queued.
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	p := newPair(t, func(*Conn, []byte) { <-release }, nil, WithSocketBuffers(96<<10, 24<<10))
	t.Cleanup(unblock) // before the pair's cleanup, which waits for the loops

	_, kernel := sockopts(p.cliConn, nil) // the sending side's
	for _, c := range []*Conn{p.cliConn, p.srvConn} {
		if rcv, lowat := sockopts(c, nil); rcv == short || lowat == 24<<10 {
			t.Errorf("started: SO_RCVBUF %d, TCP_NOTSENT_LOWAT %d; want the kernel's (not %d, not %d)", rcv, lowat, short, 24<<10)
		}
	}
	c := p.cliConn
	const bulkItems = 64 // 4 MiB: far more than the socket takes
	for range bulkItems {
		if _, err := c.EnqueueBulkNoWait(frame(nil, make([]byte, 64<<10))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "the loop to wait on the socket with bulk queued", func() bool {
		return c.bulkWait.Load() && c.bulkQueued.Load() > 0
	})
	if _, lowat := sockopts(c, nil); lowat != 24<<10 {
		t.Errorf("bulk items queued: TCP_NOTSENT_LOWAT %d, want %d", lowat, 24<<10)
	}
	unblock()
	eventually(t, 20*time.Second, "every bulk frame", func() bool {
		n, _, _ := p.srvHandler.count()
		return n == bulkItems
	})
	eventually(t, 20*time.Second, "the unsent limit to be lifted", func() bool {
		_, lowat := sockopts(c, nil)
		return lowat == kernel
	})
	if rcv, _ := sockopts(p.srvConn, p.srvConn.ShortenReceive); rcv != short {
		t.Errorf("after ShortenReceive with nothing unread: SO_RCVBUF %d, want %d", rcv, short)
	}
	p = newPair(t, nil, nil, WithSocketBuffers(0, 0))
	c = p.cliConn
	_, kernel = sockopts(c, nil)
	ticket, err := c.EnqueueBulk(context.Background(), frame(nil, make([]byte, 100)))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the bulk item to pass", func() bool { return c.BulkPassed(ticket) })
	if rcv, lowat := sockopts(c, c.ShortenReceive); rcv == short || lowat != kernel {
		t.Errorf("0, 0 given, bulk sent and ShortenReceive: SO_RCVBUF %d, TCP_NOTSENT_LOWAT %d; want the kernel's", rcv, lowat)
	}
}

// A sender that keeps its later items behind its bulk items (on the bulk
// lane until BulkPassed, then on the urgent lane) keeps its order while
// another sender's urgent items overtake its bulk data.
func TestBulkPassedKeepsASendersLaterItemsBehind(t *testing.T) {
	const perSender = 400
	order := newOrderCheck(2)
	p := newPair(t, order.frame, nil)
	c := p.cliConn
	if !c.BulkPassed(0) {
		t.Fatal("the zero ticket has not passed")
	}
	var wg sync.WaitGroup
	wg.Add(2)
	var urgentAfterBulk int
	go func() { // sender 0: every eighth item bulk, the rest behind it
		defer wg.Done()
		var last BulkTicket
		for i := range perSender {
			size := 64
			if i%8 == 0 {
				size = 40 << 10
			}
			payload := make([]byte, size)
			binary.BigEndian.PutUint32(payload, 0)
			binary.BigEndian.PutUint32(payload[4:], uint32(i))
			item := frame(nil, payload)
			var err error
			switch {
			case size > 64 || !c.BulkPassed(last):
				var tk BulkTicket
				tk, err = c.EnqueueBulk(context.Background(), item)
				if tk <= last {
					t.Errorf("ticket %d after %d", tk, last)
				}
				last = tk
			default:
				if last != 0 {
					urgentAfterBulk++
				}
				err = c.Enqueue(context.Background(), item)
			}
			if err != nil {
				t.Errorf("enqueue: %v", err)
				return
			}
		}
	}()
	go func() { // sender 1: small urgent items
		defer wg.Done()
		payload := make([]byte, 64)
		for i := range perSender {
			binary.BigEndian.PutUint32(payload, 1)
			binary.BigEndian.PutUint32(payload[4:], uint32(i))
			if err := c.Enqueue(context.Background(), frame(nil, payload)); err != nil {
				t.Errorf("enqueue: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	eventually(t, 30*time.Second, "all frames", func() bool {
		n, _, _ := p.srvHandler.count()
		return n == 2*perSender
	})
	if bad, next := order.result(); bad != 0 {
		t.Fatalf("%d frames out of order (next %v)", bad, next)
	}
	t.Logf("sender 0: %d small items went on the urgent lane after a bulk item had passed", urgentAfterBulk)
}

// A bulk item's ticket passes once a drain took it, not before.
func TestBulkTicketPassesWhenDrained(t *testing.T) {
	sh := newFrameHandler(nil)
	c := dialNamed(t, sh)
	t1, err := c.EnqueueBulk(context.Background(), frame(nil, make([]byte, 100)))
	if err != nil {
		t.Fatal(err)
	}
	t2, err := c.EnqueueBulkNoWait(frame(nil, make([]byte, 100)))
	if err != nil {
		t.Fatal(err)
	}
	if t1 != 1 || t2 != 2 {
		t.Fatalf("tickets %d, %d; want 1, 2", t1, t2)
	}
	if c.BulkPassed(t1) || c.BulkPassed(t2) {
		t.Fatal("a bulk item passed before the conn started")
	}
	c.SetHandler(newFrameHandler(nil))
	c.Start()
	eventually(t, 20*time.Second, "the bulk items to pass", func() bool { return c.BulkPassed(t2) })
	eventually(t, 20*time.Second, "both frames", func() bool {
		n, _, _ := sh.count()
		return n == 2
	})
}

// While the loop waits for a backed-up socket with bulk items queued, an
// urgent item does not wait for the timer: it is written (behind what gnet
// holds, ahead of the bulk items still queued) as soon as it is queued.
// The receiving loop is blocked, so the socket stays backed up and no
// timer-driven drain can take it.
func TestUrgentItemGoesOutDuringASocketWaitWithBulkQueued(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	p := newPair(t, func(*Conn, []byte) { <-release }, nil)
	t.Cleanup(unblock) // before the pair's cleanup, which waits for the loops
	c := p.cliConn
	payload := make([]byte, 64<<10)
	for range 64 { // 4 MiB: far more than the socket buffers hold
		if _, err := c.EnqueueBulkNoWait(frame(nil, payload)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "the loop to wait on the socket with bulk queued", func() bool {
		return c.bulkWait.Load() && c.bulkQueued.Load() > 0
	})
	if err := c.Enqueue(context.Background(), frame(nil, []byte("urgent"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the urgent item to be written", func() bool { return c.queued.Load() == 0 })
	if c.bulkQueued.Load() == 0 {
		t.Fatal("the bulk lane drained while the receiver was blocked")
	}
	unblock()
}

// A bulk-only conn (SetBulkOnly) is served by the engine's bulk loops (one
// here, as the engine has one loop), which no other conn shares, and keeps the kernel's socket
// queues whatever it carries: a stream on it never holds up the reading or
// writing of the conns that carry small items, and is not slowed by the
// short queues those get.
func TestBulkOnlyConnsHaveALoopOfTheirOwnAndTheKernelsQueues(t *testing.T) {
	sh := newFrameHandler(nil)
	dial := bulkPair(t, sh, WithSocketBuffers(96<<10, 24<<10))
	small, bulk, bulk2 := dial(false), dial(true), dial(true)
	if small.ls.Load() == bulk.ls.Load() {
		t.Fatal("a bulk-only conn shares the loop of a conn for small items")
	}
	if bulk.ls.Load() != bulk2.ls.Load() {
		t.Fatal("two bulk-only conns of a one-loop engine are on two loops; want its one bulk loop")
	}
	var kernelRcv, kernelLowat int
	probe := func(c *Conn, do func()) (rcv, lowat int) {
		t.Helper()
		got := make(chan [2]int, 1)
		c.Execute(func() {
			if do != nil {
				do()
			}
			fd := c.gc.Fd()
			r, _ := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF)
			l, _ := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, tcpNotSentLowat)
			got <- [2]int{r, l}
		})
		select {
		case v := <-got:
			return v[0], v[1]
		case <-time.After(20 * time.Second):
			t.Fatal("the loop did not run the probe")
			return 0, 0
		}
	}
	kernelRcv, kernelLowat = probe(bulk, nil)
	if rcv, lowat := probe(bulk, func() { bulk.paceBulk(true); bulk.ShortenReceive() }); rcv != kernelRcv || lowat != kernelLowat {
		t.Errorf("bulk-only conn with bulk queued and input: SO_RCVBUF %d, TCP_NOTSENT_LOWAT %d; want the kernel's %d, %d",
			rcv, lowat, kernelRcv, kernelLowat)
	}
	if runtime.GOOS == "linux" {
		if _, lowat := probe(small, func() { small.paceBulk(true) }); lowat != 24<<10 {
			t.Errorf("a conn for small items with bulk queued: TCP_NOTSENT_LOWAT %d, want %d", lowat, 24<<10)
		}
	}
	// Both loops carry traffic.
	for _, c := range []*Conn{small, bulk, bulk2} {
		if _, err := c.EnqueueBulk(context.Background(), frame(nil, make([]byte, 64<<10))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "three frames", func() bool {
		n, _, _ := sh.count()
		return n == 3
	})
}

// bulkPair starts a namedEnginePair with opts, the server running h on
// every conn it accepts, and returns a dial of a started client conn,
// bulk-only or not.
func bulkPair(t *testing.T, h Handler, opts ...Option) func(bulk bool) *Conn {
	t.Helper()
	srv, cli := namedEnginePair(t, opts...)
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) { c.SetHandler(h); c.Start() })
	if err != nil {
		t.Fatal(err)
	}
	return func(bulk bool) *Conn {
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
}
