package memlink

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/leaktest"
	"github.com/meshrt/mesh/internal/testutil"
	"github.com/meshrt/mesh/loop"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// bound is a failure bound for a loaded machine, never a timing the tests
// rely on.
const bound = time.Minute

// recorder is a loop.Handler that keeps what it is offered. A test can make
// it consume only whole n-byte records (frame) and hold it inside OnData
// (hold), and sees OnClose's reason on closed.
type recorder struct {
	frame  int
	hold   chan struct{} // while non-nil and open, OnData waits on it
	closed chan error    // capacity 1

	mu      sync.Mutex
	got     []byte
	calls   int
	entered chan struct{} // closed at the first OnData
}

func newRecorder() *recorder {
	return &recorder{closed: make(chan error, 1), entered: make(chan struct{})}
}

func (r *recorder) OnData(c *loop.Conn, b []byte) (int, error) {
	if c != nil {
		return 0, errors.New("a memlink handler got a non-nil *loop.Conn")
	}
	r.mu.Lock()
	if r.calls == 0 {
		close(r.entered)
	}
	r.calls++
	r.mu.Unlock()
	if r.hold != nil {
		<-r.hold
	}
	n := len(b)
	if r.frame > 0 {
		n -= n % r.frame
	}
	r.mu.Lock()
	r.got = append(r.got, b[:n]...)
	r.mu.Unlock()
	return n, nil
}

func (r *recorder) OnClose(_ *loop.Conn, reason error) {
	select {
	case r.closed <- reason:
	default:
		panic("OnClose twice")
	}
}

// holdUntilReleased makes r wait inside its next OnData until the returned
// function is called, or the test ends: the release runs before started's
// cleanup, which waits for the receiver, so a failing test reports instead
// of hanging. Before r is offered data.
func (r *recorder) holdUntilReleased(t *testing.T) (release func()) {
	r.hold = make(chan struct{})
	release = sync.OnceFunc(func() { close(r.hold) })
	t.Cleanup(release)
	return release
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.got)
}

func (r *recorder) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.closed:
		return err
	case <-time.After(bound):
		t.Fatal("no OnClose")
		return nil
	}
}

func started(t *testing.T, opts ...Option) (a, b *Conn, ra, rb *recorder) {
	t.Helper()
	a, b = Pair(opts...)
	ra, rb = newRecorder(), newRecorder()
	a.SetHandler(ra)
	b.SetHandler(rb)
	a.Start()
	b.Start()
	t.Cleanup(func() {
		a.Close(nil)
		b.Close(nil)
		<-a.gone
		<-b.gone
	})
	return a, b, ra, rb
}

func TestBytesArriveInOrderAndUnconsumedOnesAreOfferedAgain(t *testing.T) {
	a, _, _, rb := started(t)
	rb.frame = 3 // consumes whole 3-byte records only
	var want []byte
	for i := range 1000 {
		item := []byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i), byte(i >> 8)}[:1+i%5]
		want = append(want, item...)
		if err := a.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
	}
	whole := len(want) - len(want)%3
	testutil.Eventually(t, bound, "every whole record", func() bool { return len(rb.bytes()) == whole })
	if !bytes.Equal(rb.bytes(), want[:whole]) {
		t.Fatal("bytes out of order")
	}
}

func TestTheDrainFunctionShapesWhatIsSent(t *testing.T) {
	a, b := Pair()
	ra, rb := newRecorder(), newRecorder()
	a.SetHandler(ra)
	b.SetHandler(rb)
	a.SetDrain(func(dst []byte, items [][]byte) []byte {
		for _, it := range items {
			dst = append(dst, byte(len(it)))
			dst = append(dst, it...)
		}
		return dst
	})
	// Queued before Start: sent once the end starts.
	for _, s := range []string{"ab", "c"} {
		if err := a.EnqueueNoWait([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	a.Start()
	b.Start()
	want := []byte("\x02ab\x01c")
	testutil.Eventually(t, bound, "drained bytes", func() bool { return bytes.Equal(rb.bytes(), want) })
	a.Close(nil)
	ra.wait(t)
	rb.wait(t)
}

func TestEnqueueWaitsAtTheHighMarkWhileTheOtherEndDoesNotRead(t *testing.T) {
	const low, high = 1 << 10, 4 << 10
	a, b, _, rb := started(t, WithWaterMarks(low, high))
	release := rb.holdUntilReleased(t)
	item := make([]byte, 100)
	sent := make(chan int, 1)
	go func() {
		n := 0
		for n < 20*high/len(item) {
			if err := a.Enqueue(context.Background(), item); err != nil {
				break
			}
			n++
		}
		sent <- n
	}()
	// The receiver is held inside OnData; its input and then the sender's
	// queue fill up to their marks, and the sender waits. (The queue alone
	// at the mark is not enough: while the receiver's input is below its
	// mark, the queue moves there.) The sender may come to wait with the
	// queue below the high mark: its check counts the bytes the end's
	// goroutine has taken and not yet moved, and pushes can go on while
	// that move runs; what it moved then fills the input, and the sender
	// waits on, for the low mark, with the queue between the marks. So the
	// wait ends on either: the queue at the mark, or a sender waiting.
	testutil.Eventually(t, bound, "the input at the high mark and the sender waiting", func() bool {
		b.mu.Lock()
		in := len(b.input)
		b.mu.Unlock()
		a.mu.Lock()
		waiting := a.roomCh != nil
		a.mu.Unlock()
		return in >= high && (a.Queued() >= high || waiting)
	})
	// Top the queue up to the mark past the waiting sender (EnqueueNoWait
	// does not wait): nothing leaves it while the receiver is held.
	extra := 0
	for a.Queued() < high {
		if err := a.EnqueueNoWait(item); err != nil {
			t.Fatalf("EnqueueNoWait below the hard limit: %v", err)
		}
		extra++
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Enqueue(ctx, item); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue on a full queue with a done ctx: %v, want context.Canceled", err)
	}
	release()
	n := <-sent
	testutil.Eventually(t, bound, "everything", func() bool { return len(rb.bytes()) == (n+extra)*len(item) })
}

func TestEnqueueNoWaitCutsASlowConsumerAtFourTimesTheHighMark(t *testing.T) {
	const low, high = 1 << 10, 4 << 10
	a, b, ra, rb := started(t, WithWaterMarks(low, high))
	release := rb.holdUntilReleased(t)
	item := make([]byte, 100)
	var err error
	for i := 0; i < 100*high/len(item) && err == nil; i++ {
		err = a.EnqueueNoWait(item)
	}
	if !errors.Is(err, loop.ErrClosed) || !errors.Is(err, loop.ErrSlowConsumer) {
		t.Fatalf("EnqueueNoWait past the hard limit: %v, want ErrClosed wrapping ErrSlowConsumer", err)
	}
	if reason := ra.wait(t); !errors.Is(reason, loop.ErrSlowConsumer) {
		t.Fatalf("the sender's OnClose: %v", reason)
	}
	release()
	if reason := rb.wait(t); !errors.Is(reason, loop.ErrPeerClosed) {
		t.Fatalf("the receiver's OnClose: %v, want ErrPeerClosed", reason)
	}
	_ = b
}

func TestCloseSendsWhatWasQueuedThenTheOtherEndSeesPeerClosed(t *testing.T) {
	a, _, ra, rb := started(t)
	for range 100 {
		if err := a.EnqueueNoWait([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	reason := errors.New("test: bye")
	a.Close(reason)
	a.Close(errors.New("test: a second reason"))
	if got := ra.wait(t); got != reason {
		t.Fatalf("closer's OnClose: %v, want the first reason", got)
	}
	if got := rb.wait(t); !errors.Is(got, loop.ErrPeerClosed) {
		t.Fatalf("other end's OnClose: %v, want ErrPeerClosed", got)
	}
	if got := len(rb.bytes()); got != 100 {
		t.Fatalf("the other end got %d bytes before the close, want 100", got)
	}
	if err := a.Enqueue(context.Background(), []byte("late")); !errors.Is(err, loop.ErrClosed) || !errors.Is(err, reason) {
		t.Fatalf("Enqueue after Close: %v, want ErrClosed wrapping the reason", err)
	}
}

func TestShutdownDrainsEverythingThroughBackpressure(t *testing.T) {
	const low, high = 1 << 10, 4 << 10
	a, _, ra, rb := started(t, WithWaterMarks(low, high))
	item := bytes.Repeat([]byte("y"), 100)
	for range 10 * high / len(item) {
		if err := a.Enqueue(context.Background(), item); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	reason := errors.New("test: done")
	if err := a.Shutdown(ctx, reason); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := ra.wait(t); got != reason {
		t.Fatalf("shutdown end's OnClose: %v", got)
	}
	if got := rb.wait(t); !errors.Is(got, loop.ErrPeerClosed) {
		t.Fatalf("other end's OnClose: %v", got)
	}
	if got, want := len(rb.bytes()), 10*high/len(item)*len(item); got != want {
		t.Fatalf("other end got %d bytes, want %d", got, want)
	}
}

func TestShutdownEndsAtItsContextWhenTheOtherEndReadsNothing(t *testing.T) {
	const low, high = 1 << 10, 4 << 10
	a, _, ra, rb := started(t, WithWaterMarks(low, high))
	rb.hold = make(chan struct{})
	defer close(rb.hold)
	for range 3 * high / 100 {
		_ = a.EnqueueNoWait(make([]byte, 100))
	}
	<-rb.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Shutdown(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with a done ctx and a stuck reader: %v", err)
	}
	ra.wait(t)
}

func TestCloseBeforeStartDeliversOnCloseOnce(t *testing.T) {
	t.Run("with a handler: at once", func(t *testing.T) {
		a, b := Pair()
		r := newRecorder()
		a.SetHandler(r)
		a.Close(errors.New("test: early"))
		if err := r.wait(t); err == nil {
			t.Fatal("no reason")
		}
		a.Start() // nothing more
		b.SetHandler(newRecorder())
		b.Start()
		<-b.gone
	})
	t.Run("without: at Start", func(t *testing.T) {
		a, b := Pair()
		a.Close(errors.New("test: early"))
		r := newRecorder()
		a.SetHandler(r)
		a.Start()
		if err := r.wait(t); err == nil {
			t.Fatal("no reason")
		}
		rb := newRecorder()
		b.SetHandler(rb)
		b.Start()
		if err := rb.wait(t); !errors.Is(err, loop.ErrPeerClosed) {
			t.Fatalf("other end: %v", err)
		}
	})
}

type failing struct{ *recorder }

func (f failing) OnData(*loop.Conn, []byte) (int, error) { return 0, errors.New("test: bad input") }

func TestHandlerErrorsAndInputOverTheLimitClose(t *testing.T) {
	a, b := Pair()
	rb := failing{newRecorder()}
	a.SetHandler(newRecorder())
	b.SetHandler(rb)
	a.Start()
	b.Start()
	_ = a.EnqueueNoWait([]byte("x"))
	if err := rb.wait(t); err == nil || err.Error() != "test: bad input" {
		t.Fatalf("OnClose after OnData failed: %v", err)
	}
	<-a.gone

	a, b, _, rb2 := started(t, WithMaxInputPending(10))
	rb2.frame = 1 << 20 // consumes nothing
	_ = a.EnqueueNoWait(make([]byte, 11))
	if err := rb2.wait(t); !errors.Is(err, loop.ErrInputTooLarge) {
		t.Fatalf("OnClose past the input limit: %v", err)
	}
	_ = b
}

func TestNetworkDialsThroughTheHandshake(t *testing.T) {
	nw := NewNetwork()
	accepted := make(chan *Conn, 1)
	srv, err := nw.Listen("127.0.0.1:0", func(_ context.Context, hello any) (any, any, error) {
		if hello != "hi" {
			return nil, nil, errors.New("test: bad hello")
		}
		return "server info", "reply", nil
	}, func(c *Conn) { accepted <- c })
	if err != nil {
		t.Fatal(err)
	}
	cli, err := nw.Listen("127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Addr() == cli.Addr() {
		t.Fatalf("two endpoints at %s", srv.Addr())
	}
	ctx := context.Background()
	if _, err := cli.Dial(ctx, srv.Addr(), "bye"); !errors.Is(err, loop.ErrHandshake) {
		t.Fatalf("dial with a hello the handshake refuses: %v", err)
	}
	if _, err := cli.Dial(ctx, "127.0.0.1:65000", "hi"); !errors.Is(err, ErrRefused) {
		t.Fatalf("dial to nobody: %v", err)
	}
	c, err := cli.Dial(ctx, srv.Addr(), "hi")
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if c.Info() != "reply" || s.Info() != "server info" || !c.Outbound() || s.Outbound() {
		t.Fatalf("infos %v, %v", c.Info(), s.Info())
	}
	rc, rs := newRecorder(), newRecorder()
	c.SetHandler(rc)
	s.SetHandler(rs)
	c.Start()
	s.Start()
	_ = c.EnqueueNoWait([]byte("ping"))
	testutil.Eventually(t, bound, "ping", func() bool { return string(rs.bytes()) == "ping" })

	// Closing an endpoint closes its links and refuses dials to it.
	_ = srv.Close()
	if err := rs.wait(t); !errors.Is(err, loop.ErrEngineClosed) {
		t.Fatalf("accepted end after its endpoint closed: %v", err)
	}
	if err := rc.wait(t); !errors.Is(err, loop.ErrPeerClosed) {
		t.Fatalf("dialled end after the other endpoint closed: %v", err)
	}
	if _, err := cli.Dial(ctx, srv.Addr(), "hi"); !errors.Is(err, ErrRefused) {
		t.Fatalf("dial to a closed endpoint: %v", err)
	}
	_ = cli.Close()
	if _, err := cli.Dial(ctx, srv.Addr(), "hi"); !errors.Is(err, loop.ErrEngineClosed) {
		t.Fatalf("dial from a closed endpoint: %v", err)
	}
}

// linked dials from a to b on nw and starts both ends with recorders.
func linked(t *testing.T, a, b *Endpoint, accepted chan *Conn) (ca, cb *Conn, ra, rb *recorder) {
	t.Helper()
	ca, err := a.Dial(context.Background(), b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cb = <-accepted
	ra, rb = newRecorder(), newRecorder()
	ca.SetHandler(ra)
	cb.SetHandler(rb)
	ca.Start()
	cb.Start()
	return ca, cb, ra, rb
}

func TestPartitionResetsTheLinksAndRefusesDialsUntilHeal(t *testing.T) {
	nw := NewNetwork()
	accepted := make(chan *Conn, 1)
	accept := func(c *Conn) { accepted <- c }
	hs := func(context.Context, any) (any, any, error) { return nil, nil, nil }
	a, _ := nw.Listen("127.0.0.1:0", hs, accept)
	b, _ := nw.Listen("127.0.0.1:0", hs, accept)
	c, _ := nw.Listen("127.0.0.1:0", hs, accept)
	defer a.Close()
	defer b.Close()
	defer c.Close()
	_, _, ra, rb := linked(t, a, b, accepted)
	ca, _, _, rc := linked(t, a, c, accepted)

	nw.Partition(b.Addr(), a.Addr())
	for _, r := range []*recorder{ra, rb} {
		// Partition returned after OnClose ran.
		select {
		case err := <-r.closed:
			if !errors.Is(err, loop.ErrPeerClosed) || !errors.Is(err, ErrPartitioned) {
				t.Fatalf("OnClose of a partitioned end: %v", err)
			}
		default:
			t.Fatal("Partition returned before OnClose")
		}
	}
	if _, err := a.Dial(context.Background(), b.Addr(), nil); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("dial across the partition: %v", err)
	}
	if _, err := b.Dial(context.Background(), a.Addr(), nil); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("dial back across the partition: %v", err)
	}
	_ = ca.EnqueueNoWait([]byte("still"))
	testutil.Eventually(t, bound, "a-c link unaffected", func() bool { return string(rc.bytes()) == "still" })

	nw.Heal(a.Addr(), b.Addr())
	linked(t, b, a, accepted)
}

func TestFreezeHoldsTheBytesUntilHeal(t *testing.T) {
	nw := NewNetwork(WithWaterMarks(1<<10, 4<<10))
	accepted := make(chan *Conn, 1)
	hs := func(context.Context, any) (any, any, error) { return nil, nil, nil }
	a, _ := nw.Listen("127.0.0.1:0", hs, func(c *Conn) { accepted <- c })
	b, _ := nw.Listen("127.0.0.1:0", hs, func(c *Conn) { accepted <- c })
	defer a.Close()
	defer b.Close()
	ca, _, _, rb := linked(t, a, b, accepted)
	nw.Freeze(a.Addr(), b.Addr())
	if _, err := a.Dial(context.Background(), b.Addr(), nil); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("dial across a freeze: %v", err)
	}
	// More than the receiver's input (at most high plus one drain of at
	// most high plus an item) and the sender's queue (high) can hold.
	const items = 300
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range items {
			if err := ca.Enqueue(context.Background(), make([]byte, 100)); err != nil {
				return
			}
		}
	}()
	// Nothing arrives; the sender ends up waiting on its full queue.
	testutil.Eventually(t, bound, "the sender held back", func() bool { return ca.Queued() >= 4<<10 })
	if n := len(rb.bytes()); n != 0 {
		t.Fatalf("%d bytes crossed a frozen link", n)
	}
	nw.Heal(a.Addr(), b.Addr())
	<-sent
	testutil.Eventually(t, bound, "everything after the heal", func() bool { return len(rb.bytes()) == items*100 })
}
