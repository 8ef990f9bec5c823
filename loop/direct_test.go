package loop

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Senders that pause between bursts find the conn idle and write directly;
// the bursts go through the loop. Both paths race on the same conn: every
// frame must arrive once, in order per sender.
func TestDirectWritesAndLoopDrainsKeepOrderPerSender(t *testing.T) {
	const senders, bursts, burst = 8, 60, 20
	order := newOrderCheck(senders)
	p := newPair(t, order.frame, nil)
	giveDup(t, p.cliConn) // the direct path is what this test covers
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			payload := make([]byte, 64)
			seq := 0
			for b := range bursts {
				for range 1 + (b+s)%burst {
					binary.BigEndian.PutUint32(payload, uint32(s))
					binary.BigEndian.PutUint32(payload[4:], uint32(seq))
					seq++
					buf = frame(buf[:0], payload)
					if err := p.cliConn.Enqueue(context.Background(), buf); err != nil {
						t.Errorf("enqueue: %v", err)
						return
					}
				}
				// A pause longer than directIdleGap lets the next push
				// find the conn idle (not a synchronisation: any
				// interleaving must keep the order).
				time.Sleep(50 * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	waitForBursts(t, p, order, senders, bursts, burst)
	if p.cliConn.nDirect.Load() == 0 {
		t.Fatal("no direct write happened: the test did not cover that path")
	}
}

// A lone message on an idle conn is written by its sender, and the reply
// comes back the same way: no loop wake-up on the send side.
func TestIdleConnWritesDirectly(t *testing.T) {
	got := make(chan struct{}, 1)
	echo := func(c *Conn, f []byte) { _ = c.EnqueueNoWait(frame(nil, f)) }
	p := newPair(t, echo, func(*Conn, []byte) { got <- struct{}{} })
	giveDup(t, p.cliConn) // made by the first pings' wants otherwise (dup_test.go covers that)
	item := frame(nil, make([]byte, 64))
	for i := range 100 {
		if err := p.cliConn.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("reply %d did not arrive", i)
		}
	}
	// Some pings find the client's loop still inside the callback that
	// delivered the last reply; those are flushed at its end instead.
	if p.cliConn.nDirect.Load() == 0 {
		t.Fatal("no ping was written directly")
	}
}

// Enqueue and EnqueueNoWait on an idle conn (started, nothing queued, the
// drain token free) take the token before they queue and, when the conn
// may be written directly, seal the item alone without queueing it
// (sendIdle), as EnqueueAppend does: a remote spawn's request and reply
// go this way. Every frame arrives, and some never went through the queue.
func TestAnEnqueueOnAnIdleConnSkipsTheQueue(t *testing.T) {
	for _, noWait := range []bool{false, true} {
		order := newOrderCheck(1)
		p := newPair(t, order.frame, nil)
		c := p.cliConn
		giveDup(t, c)
		payload := make([]byte, 8)
		const rounds = 20
		for i := range rounds {
			time.Sleep(time.Millisecond) // idle: a direct write is due (not a synchronisation: the count below allows misses)
			binary.BigEndian.PutUint32(payload[4:], uint32(i))
			var err error
			if noWait {
				err = c.EnqueueNoWait(frame(nil, payload))
			} else {
				err = c.Enqueue(context.Background(), frame(nil, payload))
			}
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the frame", func() bool { n, _, _ := p.srvHandler.count(); return n == i+1 })
		}
		if bad, _ := order.result(); bad != 0 {
			t.Fatalf("noWait %v: %d frames out of order", noWait, bad)
		}
		c.q.mu.Lock()
		queued := c.q.pushed
		c.q.mu.Unlock()
		if queued >= rounds {
			t.Fatalf("noWait %v: all %d frames went through the queue", noWait, rounds)
		}
	}
}

// AfterFlush runs its function on the loop after the callback's output was
// drained, and what that function queues goes out too, after it.
func TestAfterFlushRunsAfterTheCallbacksOutput(t *testing.T) {
	type seen struct{ queued, nested int }
	after := make(chan seen, 1)
	srv := func(c *Conn, f []byte) {
		_ = c.EnqueueNoWait(frame(nil, []byte("reply")))
		c.AfterFlush(func() {
			s := seen{queued: c.Queued()}
			_ = c.EnqueueNoWait(frame(nil, []byte("after")))
			c.AfterFlush(func() { s.nested = 1 + c.Queued(); after <- s })
		})
	}
	got := make(chan string, 2)
	p := newPair(t, srv, func(_ *Conn, f []byte) { got <- string(f) })
	if err := p.cliConn.Enqueue(context.Background(), frame(nil, []byte("req"))); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-after:
		if s.queued != 0 || s.nested != 1 {
			t.Fatalf("AfterFlush ran with %d bytes still queued (nested: %d): before the drain", s.queued, s.nested-1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the AfterFlush function did not run")
	}
	for _, want := range []string{"reply", "after"} {
		select {
		case f := <-got:
			if f != want {
				t.Fatalf("got %q, want %q", f, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q did not arrive", want)
		}
	}
}

// A bulk item enqueued on an idle conn whose direct writes are on is never
// drained by the sender's direct write (1ad1d14).
func TestBulkItemsAreNeverDrainedByADirectWrite(t *testing.T) {
	p := newPair(t, nil, nil)
	c := p.cliConn
	giveDup(t, c)
	var direct atomic.Int32
	buf := make([]byte, 64<<10)
	c.SetDrain(func(dst []byte, items [][]byte) []byte {
		for _, it := range items {
			if len(it) > 4<<10 {
				n := runtime.Stack(buf, false)
				if strings.Contains(string(buf[:n]), "directFlush") {
					direct.Add(1)
				}
			}
			dst = append(dst, it...)
		}
		return dst
	})
	const rounds = 50
	for i := range rounds {
		time.Sleep(time.Millisecond) // idle: direct writes due
		tk, err := c.EnqueueBulk(context.Background(), frame(nil, make([]byte, 8<<10)))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "bulk passed", func() bool { return c.BulkPassed(tk) })
		eventually(t, 10*time.Second, "delivered", func() bool { n, _, _ := p.srvHandler.count(); return n == i+1 })
	}
	if c.nDirect.Load() == 0 {
		t.Fatal("precondition: no direct write happened")
	}
	if n := direct.Load(); n > 0 {
		t.Fatalf("%d of %d bulk items were drained by a direct write", n, rounds)
	}
}

// EnqueueAppend on an idle conn takes the drain token before it queues
// anything and, when the conn may be written directly, seals the item
// alone without queueing it (appendHeld). Senders mixing it with Enqueue,
// in bursts and alone, race direct writes of both kinds with the loop's
// drains: every frame must arrive once, in order per sender, and some must
// have skipped the queue.
func TestAppendedItemsKeepOrderPerSenderOnEveryPath(t *testing.T) {
	const senders, bursts, burst = 8, 60, 6
	order := newOrderCheck(senders)
	p := newPair(t, order.frame, nil)
	giveDup(t, p.cliConn)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			payload := make([]byte, 64)
			seq := 0
			for b := range bursts {
				for range 1 + (b+s)%burst {
					binary.BigEndian.PutUint32(payload, uint32(s))
					binary.BigEndian.PutUint32(payload[4:], uint32(seq))
					var err error
					if (seq+b)%3 == 0 {
						buf = frame(buf[:0], payload)
						err = p.cliConn.Enqueue(context.Background(), buf)
					} else {
						err = p.cliConn.EnqueueAppend(context.Background(), 4+len(payload), func(dst []byte) ([]byte, error) {
							return frame(dst, payload), nil
						})
					}
					seq++
					if err != nil {
						t.Errorf("enqueue: %v", err)
						return
					}
				}
				time.Sleep(50 * time.Microsecond) // not a synchronisation: see TestDirectWritesAndLoopDrainsKeepOrderPerSender
			}
		}()
	}
	wg.Wait()
	want := waitForBursts(t, p, order, senders, bursts, burst)
	p.cliConn.q.mu.Lock()
	queued := p.cliConn.q.pushed
	p.cliConn.q.mu.Unlock()
	if queued >= uint64(want) {
		t.Fatalf("all %d frames went through the queue: none was written without it", want)
	}
}

// An encoder that fails on an idle conn, where EnqueueAppend took the drain
// token before encoding, gives the token back: what is sent next goes out.
func TestAFailedAppendOnAnIdleConnReleasesTheToken(t *testing.T) {
	p := newPair(t, nil, nil)
	c := p.cliConn
	giveDup(t, c)
	errEnc := errors.New("encoder refused")
	for i := range 20 {
		time.Sleep(time.Millisecond) // idle: a direct write is due
		if err := c.EnqueueAppend(context.Background(), 16, func(dst []byte) ([]byte, error) { return dst, errEnc }); !errors.Is(err, errEnc) {
			t.Fatalf("EnqueueAppend: %v, want the encoder's error", err)
		}
		if c.scheduled.Load() {
			t.Fatalf("round %d: the drain token is still taken after a failed append", i)
		}
		if err := c.EnqueueAppend(context.Background(), 16, func(dst []byte) ([]byte, error) { return frame(dst, []byte("next")), nil }); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the next frame", func() bool { n, _, _ := p.srvHandler.count(); return n == i+1 })
	}
}

// An item queued while nobody holds the drain token (the window between a
// holder's release and its recheck, made here by hand) is not overtaken by
// the next EnqueueAppend, even on a conn that may be written directly: the
// token taken before queueing is only for an empty queue.
func TestAnAppendDoesNotOvertakeAQueuedItem(t *testing.T) {
	order := newOrderCheck(1)
	p := newPair(t, order.frame, nil)
	c := p.cliConn
	giveDup(t, c)
	payload := make([]byte, 8)
	for i := range 20 {
		time.Sleep(time.Millisecond) // idle: a direct write is due
		binary.BigEndian.PutUint32(payload[4:], uint32(2*i))
		c.q.push(frame(nil, payload)) // queued, the token left free
		c.queued.Add(int64(4 + len(payload)))
		binary.BigEndian.PutUint32(payload[4:], uint32(2*i+1))
		if err := c.EnqueueAppend(context.Background(), 4+len(payload), func(dst []byte) ([]byte, error) { return frame(dst, payload), nil }); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "both frames", func() bool { n, _, _ := p.srvHandler.count(); return n == 2*i+2 })
	}
	if bad, _ := order.result(); bad != 0 {
		t.Fatalf("%d frames out of order", bad)
	}
}

// An encoder that fails or panics in EnqueueAppend's appendHeld, on either
// of its branches (written directly: a dup and an idle conn; queued: no
// dup), gives the drain token back, and the dup's reference it took: what
// is sent next goes out, and the dup has only the conn's reference.
func TestAFailedOrPanickingAppendReleasesTheToken(t *testing.T) {
	errEnc := errors.New("encoder refused")
	for _, tc := range []struct {
		name        string
		dup, panics bool
		wantDirect  bool // fn must have run on the direct branch at least once
		rounds      int
	}{
		{name: "queued, error", rounds: 1},
		{name: "queued, panic", panics: true, rounds: 1},
		{name: "direct, panic", dup: true, panics: true, wantDirect: true, rounds: 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, nil, nil)
			c := p.cliConn
			if tc.dup {
				giveDup(t, c)
			}
			directRuns := 0
			for i := range tc.rounds {
				time.Sleep(time.Millisecond) // idle: a direct write is due
				var direct bool
				fn := func(dst []byte) ([]byte, error) {
					direct = cap(dst) != chunkSize // the queue gives a chunk, the direct writer its own buffer
					if tc.panics {
						panic("encoder")
					}
					return dst, errEnc
				}
				var err error
				panicked := func() (panicked bool) {
					defer func() { panicked = recover() != nil }()
					err = c.EnqueueAppend(context.Background(), 16, fn)
					return false
				}()
				if tc.panics != panicked {
					t.Fatalf("round %d: panicked %v, want %v", i, panicked, tc.panics)
				}
				if !tc.panics && !errors.Is(err, errEnc) {
					t.Fatalf("EnqueueAppend: %v, want the encoder's error", err)
				}
				if direct {
					directRuns++
				} else if !tc.dup && c.dup.Load() != nil {
					t.Fatal("the conn got a dup: the queued branch is not certain")
				}
				if c.scheduled.Load() {
					t.Fatalf("round %d: the drain token is still taken", i)
				}
				if d := c.dup.Load(); d != nil {
					if r := d.refs.Load(); r != 1 {
						t.Fatalf("round %d: the dup has %d references, want the conn's 1", i, r)
					}
				}
				if err := c.Enqueue(context.Background(), frame(nil, []byte("next"))); err != nil {
					t.Fatal(err)
				}
				eventually(t, 10*time.Second, "the next frame", func() bool { n, _, _ := p.srvHandler.count(); return n == i+1 })
			}
			if tc.wantDirect && directRuns == 0 {
				t.Fatal("the encoder never ran on the direct branch: the test did not cover it")
			}
			if !tc.wantDirect && directRuns != 0 {
				t.Fatal("the encoder ran on the direct branch")
			}
		})
	}
}

// An EnqueueAppend on a conn not started that finds it started right after
// its look at the conn's loop (testHookAppendLoop: OnOpen runs there, sees
// no token taken or takes the one it finds, and drains what is queued)
// still has its item sent: it pushes before it takes the token, as Enqueue
// does, so OnOpen's drain or its own dispatch sends it.
func TestAnAppendRacingStartIsSent(t *testing.T) {
	for range 5 {
		h := newFrameHandler(nil)
		c := dialNamed(t, h)
		c.SetHandler(newFrameHandler(nil))
		hook := func(hc *Conn) {
			if hc != c {
				return
			}
			c.Start()
			eventually(t, 10*time.Second, "the conn on its loop", func() bool { return c.ls.Load() != nil })
			opened := make(chan struct{})
			c.Execute(func() { close(opened) }) // runs after OnOpen
			<-opened
		}
		testHookAppendLoop.Store(&hook)
		err := c.EnqueueAppend(context.Background(), 16, func(dst []byte) ([]byte, error) { return frame(dst, []byte("first")), nil })
		testHookAppendLoop.Store(nil)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "the frame appended as the conn started", func() bool { n, _, _ := h.count(); return n == 1 })
		_ = c.Close(nil)
	}
}

// A sender that takes the drain token while the loop drains (given up, in
// flushQueue, before the loop writes what it sealed: testHookLoopSealed)
// must not write its item itself, ahead of the loop's: EnqueueAppend's
// item goes out after the drained one, with no direct write.
func TestAnAppendDuringTheLoopsDrainWaitsForIt(t *testing.T) {
	order := newOrderCheck(1)
	p := newPair(t, order.frame, nil)
	c := p.cliConn
	giveDup(t, c)
	var armed atomic.Bool
	var during atomic.Uint64
	ran := make(chan struct{}, 1)
	payload := make([]byte, 8)
	hook := func(hc *Conn) {
		if hc != c || !armed.CompareAndSwap(true, false) {
			return
		}
		n0 := c.nDirect.Load()
		done := make(chan error)
		go func() { // EnqueueAppend: not on the conn's loop
			pl := make([]byte, 8)
			binary.BigEndian.PutUint32(pl[4:], 1)
			done <- c.EnqueueAppend(context.Background(), 4+len(pl), func(dst []byte) ([]byte, error) { return frame(dst, pl), nil })
		}()
		if err := <-done; err != nil {
			t.Errorf("EnqueueAppend: %v", err)
		}
		during.Store(c.nDirect.Load() - n0)
		ran <- struct{}{}
	}
	testHookLoopSealed.Store(&hook)
	t.Cleanup(func() { testHookLoopSealed.Store(nil) })
	for i := range 10 {
		order.mu.Lock()
		order.next[0] = 0
		order.mu.Unlock()
		p.srvHandler.mu.Lock()
		p.srvHandler.frames = 0
		p.srvHandler.mu.Unlock()
		armed.Store(true)
		time.Sleep(time.Millisecond) // idle: a direct write would be due
		binary.BigEndian.PutUint32(payload[4:], 0)
		f := frame(nil, payload)
		c.Execute(func() { _ = c.Enqueue(context.Background(), f) }) // on the loop: drained by the loop
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Fatal("the loop's drain did not run the hook")
		}
		if n := during.Load(); n != 0 {
			t.Fatalf("round %d: %d direct writes during the loop's drain", i, n)
		}
		eventually(t, 10*time.Second, "both frames", func() bool { n, _, _ := p.srvHandler.count(); return n == 2 })
		if bad, _ := order.result(); bad != 0 {
			t.Fatalf("round %d: %d frames out of order", i, bad)
		}
		if _, closes, reason := p.srvHandler.count(); closes != 0 {
			t.Fatalf("the server's conn closed: %v", reason)
		}
	}
}

// An EnqueueAppend on a conn whose gnet buffer holds ciphertext the socket
// did not take (the peer reads nothing), with nothing queued and the
// drain token free, does not write directly: its item would go ahead of
// gnet's bytes if the socket took some. It goes out after them.
func TestAnAppendBehindGnetsBufferDoesNotWriteDirectly(t *testing.T) {
	order := newOrderCheck(1)
	blocked, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	p := newPair(t, func(c *Conn, f []byte) {
		order.frame(c, f)
		if first.CompareAndSwap(false, true) {
			close(blocked)
			<-release // the server's loop reads nothing meanwhile
		}
	}, nil)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	c := p.cliConn
	giveDup(t, c)
	// Short socket buffers: a few MiB fill them (the dup shares the
	// socket's options).
	if err := syscall.SetsockoptInt(c.dup.Load().fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 64<<10); err != nil {
		t.Fatal(err)
	}
	seq := uint32(0)
	next := func(dst []byte, size int) []byte {
		pl := make([]byte, size)
		binary.BigEndian.PutUint32(pl[4:], seq)
		seq++
		return frame(dst, pl)
	}
	if err := c.Enqueue(context.Background(), next(nil, 8)); err != nil {
		t.Fatal(err)
	}
	<-blocked
	// More than the socket's buffers take while nobody reads: the rest
	// stays in gnet's buffer.
	var big []byte
	for range 4 {
		big = next(big, 1<<20)
	}
	if err := c.Enqueue(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "gnet holding bytes, the token free", func() bool {
		ok := make(chan bool, 1)
		c.Execute(func() { // gnet's buffer: the loop's to look at
			ok <- c.gc.OutboundBuffered() > 0 && c.queued.Load() == 0 && !c.scheduled.Load()
		})
		select {
		case v := <-ok:
			return v
		case <-time.After(time.Second):
			return false // the conn closed: Execute runs nothing
		}
	})
	time.Sleep(time.Millisecond) // a direct write would be due
	n0 := c.nDirect.Load()
	small := next(nil, 8)
	if err := c.EnqueueAppend(context.Background(), len(small), func(dst []byte) ([]byte, error) { return append(dst, small...), nil }); err != nil {
		t.Fatal(err)
	}
	if n := c.nDirect.Load() - n0; n != 0 {
		t.Fatalf("%d direct writes while gnet held unsent bytes", n)
	}
	unblock()
	eventually(t, 20*time.Second, "all frames", func() bool { n, _, _ := p.srvHandler.count(); return n == int(seq) })
	if bad, _ := order.result(); bad != 0 {
		t.Fatalf("%d frames out of order", bad)
	}
}

// waitForBursts waits until the server has every frame of the bursts the
// senders sent (sender s sends 1 + (b+s)%burst frames in burst b) and
// fails the test if any arrived out of order per sender; it returns how
// many frames that was.
func waitForBursts(t *testing.T, p *pair, order *orderCheck, senders, bursts, burst int) int {
	t.Helper()
	want := 0
	for s := range senders {
		for b := range bursts {
			want += 1 + (b+s)%burst
		}
	}
	eventually(t, 20*time.Second, "all frames", func() bool {
		n, _, _ := p.srvHandler.count()
		return n == want
	})
	if bad, _ := order.result(); bad != 0 {
		t.Fatalf("%d frames out of order", bad)
	}
	return want
}
