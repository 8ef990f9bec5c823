package mailbox

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// watchdog bounds a test that would otherwise hang on a lost wake-up. It is
// not a timing assertion: nothing in these tests takes more than a fraction
// of it on a loaded machine.
const watchdog = 2 * time.Minute

func watchdogCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	t.Cleanup(cancel)
	return ctx
}

// waitParked polls, with a bound, until m's owner has published parked.
// receiveAsync runs one Receive (a context that cannot end) on a goroutine
// of its own, the owner, and sends what it returned: the message, or the
// error.
func receiveAsync(m *Mailbox) <-chan any {
	got := make(chan any, 1)
	go func() {
		v, err := m.Receive(context.Background())
		if err != nil {
			v = err
		}
		got <- v
	}()
	return got
}

func waitParked(t *testing.T, m *Mailbox) {
	t.Helper()
	for i := 0; m.state.Load()&stateParked == 0; i++ {
		if i > 10_000_000 {
			t.Fatal("owner never parked")
		}
		runtime.Gosched()
	}
}

// withParkCounter counts parks for the duration of a test. With noSpin every
// empty wait parks at once; with yield the owner yields just before it parks
// and producers yield in the middle of every other Push, widening both race
// windows a lost wake-up would need.
func withParkCounter(t *testing.T, noSpin, yield bool) *atomic.Int64 {
	var n, pushes atomic.Int64
	testHookPark = func() {
		n.Add(1)
		if yield {
			runtime.Gosched()
		}
	}
	if yield {
		testHookLink = func() {
			if pushes.Add(1)%2 == 0 {
				runtime.Gosched()
			}
		}
	}
	saved := spinRounds
	if noSpin {
		spinRounds = 0
	}
	t.Cleanup(func() { testHookPark, testHookLink, spinRounds = nil, nil, saved })
	return &n
}

func TestMailboxManyProducersNothingLostNothingDuplicatedPerProducerFIFO(t *testing.T) {
	for _, producers := range []int{1, 2, 8, 32} {
		t.Run("producers="+strconv.Itoa(producers), func(t *testing.T) {
			const per = 5000
			ctx := watchdogCtx(t)
			m := New()
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					for s := range per {
						if !m.Push(encode(p, s)) {
							t.Error("Push on an open mailbox returned false")
							return
						}
					}
				})
			}
			c := newChecker(producers)
			for range producers * per {
				v, err := m.Receive(ctx)
				if err != nil {
					t.Fatalf("Receive: %v", err)
				}
				c.see(t, v.(uint64))
			}
			wg.Wait()
			c.done(t, per)
			if v, ok := m.TryReceive(); ok {
				t.Fatalf("extra message %v after all were received", v)
			}
		})
	}
}

// Ping-pong between producers and one server makes both sides find their
// mailbox empty on nearly every receive, so they park and are woken tens of
// thousands of times. A lost wake-up hangs a pair and trips the watchdog.
func TestMailboxNoLostWakeupWhenOwnerParksOften(t *testing.T) {
	for _, tc := range []struct {
		name          string
		noSpin, yield bool
		background    bool // receive with a context that cannot end: park on sema
		onChan        bool // ParkOnChannel: background waits park on the channel
	}{
		{"park-at-once", true, false, false, false},
		{"park-at-once/yield-in-windows", true, true, false, false},
		{"spin-then-park", false, false, false, false},
		{"park-at-once/semaphore", true, false, true, false},
		{"park-at-once/yield-in-windows/semaphore", true, true, true, false},
		{"park-at-once/yield-in-windows/channel", true, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const producers, rounds = 4, 3000
			parks := withParkCounter(t, tc.noSpin, tc.yield)
			ctx := watchdogCtx(t)
			server := New()
			acks := make([]*Mailbox, producers)
			for i := range acks {
				acks[i] = New()
			}
			if tc.onChan {
				server.ParkOnChannel()
				for _, a := range acks {
					a.ParkOnChannel()
				}
			}
			if tc.background {
				// No context deadline can end a wait: the watchdog closes
				// every mailbox instead, which the receives report.
				ctx = context.Background()
				stop := time.AfterFunc(watchdog, func() {
					server.Close()
					for _, a := range acks {
						a.Close()
					}
				})
				t.Cleanup(func() { stop.Stop() })
			}
			var wg sync.WaitGroup
			t.Cleanup(func() { // on failure, release producers waiting for acks
				for _, a := range acks {
					a.Close()
				}
				wg.Wait()
			})
			for p := range producers {
				wg.Go(func() {
					for r := range rounds {
						server.Push(encode(p, r))
						v, err := acks[p].Receive(ctx)
						if errors.Is(err, ErrClosed) {
							return // the server failed and said so
						}
						if err != nil {
							t.Errorf("producer %d round %d: lost wake-up? %v", p, r, err)
							return
						}
						if v.(int) != r {
							t.Errorf("producer %d: ack %v, want %d", p, v, r)
							return
						}
					}
				})
			}
			c := newChecker(producers)
			for range producers * rounds {
				v, err := server.Receive(ctx)
				if err != nil {
					t.Fatalf("server: lost wake-up? %v", err)
				}
				c.see(t, v.(uint64))
				p, s := decode(v.(uint64))
				acks[p].Push(s)
			}
			wg.Wait()
			c.done(t, rounds)
			t.Logf("%d parks", parks.Load())
			if tc.noSpin && parks.Load() < rounds {
				t.Fatalf("only %d parks in %d round trips: the test did not stress parking", parks.Load(), producers*rounds)
			}
		})
	}
}

func TestMailboxCloseWakesParkedOwner(t *testing.T) {
	m := New()
	got := make(chan error, 1)
	go func() {
		_, err := m.Receive(context.Background())
		got <- err
	}()
	waitParked(t, m)
	m.Close()
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close = %v, want ErrClosed", err)
	}
}

func TestMailboxCloseRefusesAndDiscards(t *testing.T) {
	m := New()
	m.Push(1)
	m.Push(2)
	m.Close()
	m.Close() // idempotent
	if !m.Closed() {
		t.Fatal("Closed() = false after Close")
	}
	if m.Push(3) {
		t.Fatal("Push after Close returned true")
	}
	if _, err := m.Receive(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive = %v, want ErrClosed", err)
	}
	if _, err := m.ReceiveMatch(context.Background(), func(any) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReceiveMatch = %v, want ErrClosed", err)
	}
	if v, ok := m.TryReceive(); ok {
		t.Fatalf("TryReceive after Close = %v, true", v)
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("Len after Close and a receive = %d, want 0 (messages discarded)", n)
	}
	if m.q.head != nil || m.q.tail.Load() != nil {
		t.Fatal("discarded mailbox still holds a queue segment")
	}
}

// Close races with many producers and with the owner in Receive, repeatedly.
// Whatever the interleaving: the owner ends with ErrClosed, what it received
// is per producer a gap-free prefix of what that producer had accepted, and a
// Push after Close returns false.
func TestMailboxCloseRacesWithPushAndReceive(t *testing.T) {
	const trials, producers = 40, 8
	for trial := range trials {
		ctx := watchdogCtx(t)
		m := New()
		closeAt := make(chan struct{})
		var accepted [producers]atomic.Int64
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for s := 0; ; s++ {
					if !m.Push(encode(p, s)) {
						return
					}
					accepted[p].Store(int64(s + 1))
					if s%16 == 0 {
						runtime.Gosched()
					}
				}
			})
		}
		for range 2 { // two closers: Close is idempotent
			wg.Go(func() { <-closeAt; m.Close() })
		}
		c := newChecker(producers)
		received := 0
		for {
			v, err := m.Receive(ctx)
			if errors.Is(err, ErrClosed) {
				break
			}
			if err != nil {
				t.Fatalf("trial %d: Receive: %v", trial, err)
			}
			c.see(t, v.(uint64))
			if received++; received == 100*(trial%5+1) {
				close(closeAt)
			}
		}
		wg.Wait()
		for p := range producers {
			if int64(c.next[p]) > accepted[p].Load() {
				t.Fatalf("trial %d producer %d: received %d, only %d accepted", trial, p, c.next[p], accepted[p].Load())
			}
		}
		if m.Push(0) {
			t.Fatalf("trial %d: Push after Close returned true", trial)
		}
	}
}

func TestMailboxReceiveContext(t *testing.T) {
	cases := []struct {
		name string
		// ctx returns the context to receive with; parkFirst cancels it only
		// once the owner has parked.
		ctx       func() (context.Context, context.CancelFunc)
		parkFirst bool
		want      error
	}{
		{
			name: "already canceled",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			want: context.Canceled,
		},
		{
			name:      "canceled while parked",
			ctx:       func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			parkFirst: true,
			want:      context.Canceled,
		},
		{
			name: "deadline passes while parked",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), time.Millisecond)
			},
			want: context.DeadlineExceeded,
		},
		{
			name: "deadline already past",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithDeadline(context.Background(), time.Unix(0, 0))
			},
			want: context.DeadlineExceeded,
		},
	}
	for _, tc := range cases {
		for _, selective := range []bool{false, true} {
			name := tc.name
			if selective {
				name += "/ReceiveMatch"
			}
			t.Run(name, func(t *testing.T) {
				m := New()
				if selective {
					m.Push("skipped")
				}
				ctx, cancel := tc.ctx()
				defer cancel()
				got := make(chan error, 1)
				go func() {
					var err error
					if selective {
						_, err = m.ReceiveMatch(ctx, func(v any) bool { return v == "wanted" })
					} else {
						_, err = m.Receive(ctx)
					}
					got <- err
				}()
				if tc.parkFirst {
					waitParked(t, m)
					cancel()
				}
				err := <-got
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if errors.Is(err, ErrClosed) {
					t.Fatal("a context error must not read as ErrClosed")
				}
				// The mailbox is intact: the skipped message is still first,
				// and no stale wake-up token makes a later wait return early.
				m.Push("after")
				ctx2 := watchdogCtx(t)
				want := []any{"after"}
				if selective {
					want = []any{"skipped", "after"}
				}
				for _, w := range want {
					if v, err := m.Receive(ctx2); err != nil || v != w {
						t.Fatalf("Receive after ctx error = %v, %v; want %v", v, err, w)
					}
				}
				if m.state.Load() != 0 {
					t.Fatalf("state = %b after ctx error, want 0", m.state.Load())
				}
				if len(m.wake) != 0 {
					t.Fatal("stale wake-up token left behind")
				}
			})
		}
	}
}

func TestMailboxReceiveReturnsQueuedMessageEvenIfContextDone(t *testing.T) {
	m := New()
	m.Push("x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if v, err := m.Receive(ctx); err != nil || v != "x" {
		t.Fatalf("Receive = %v, %v; want x, nil", v, err)
	}
}

// op is one step of a selective-receive scenario.
type op struct {
	push  []int            // push these first
	match func(v int) bool // ReceiveMatch with this predicate; nil: Receive
	try   bool             // TryReceive instead
	want  int              // expected message; -1: TryReceive finds none
}

func is(k int) func(int) bool { return func(v int) bool { return v == k } }
func even(v int) bool         { return v%2 == 0 }

func TestMailboxSelectiveReceiveOrder(t *testing.T) {
	cases := []struct {
		name string
		sent []int
		ops  []op
	}{
		{"match the first queued", []int{1, 2, 3}, []op{
			{match: is(1), want: 1}, {want: 2}, {want: 3}}},
		{"skipped stay queued in order", []int{1, 2, 3}, []op{
			{match: is(3), want: 3}, {want: 1}, {want: 2}}},
		{"skipped come before later arrivals", []int{1, 2, 3}, []op{
			{match: is(2), want: 2}, {push: []int{4, 5}, want: 1}, {want: 3}, {want: 4}, {want: 5}}},
		{"save queue rescanned from its start", []int{1, 2, 3, 4}, []op{
			{match: is(4), want: 4}, {match: is(3), want: 3}, {match: is(1), want: 1}, {want: 2}}},
		{"matches across saved and new", []int{1, 3, 5}, []op{
			{push: []int{7, 8}, match: even, want: 8}, {match: is(7), want: 7}, {want: 1}, {want: 3}, {want: 5}}},
		{"oldest match wins", []int{1, 2, 4, 6}, []op{
			{match: even, want: 2}, {match: even, want: 4}, {want: 1}, {want: 6}}},
		{"TryReceive sees saved first", []int{1, 2}, []op{
			{match: is(2), want: 2}, {try: true, want: 1}, {try: true, want: -1}}},
		{"TryReceive then selective", []int{1, 2, 3}, []op{
			{try: true, want: 1}, {match: is(3), want: 3}, {try: true, want: 2}, {try: true, want: -1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := watchdogCtx(t)
			m := New()
			for _, v := range tc.sent {
				m.Push(v)
			}
			for i, o := range tc.ops {
				for _, v := range o.push {
					m.Push(v)
				}
				var got any
				var err error
				switch {
				case o.try:
					var ok bool
					if got, ok = m.TryReceive(); !ok {
						got = -1
					}
				case o.match != nil:
					got, err = m.ReceiveMatch(ctx, func(v any) bool { return o.match(v.(int)) })
				default:
					got, err = m.Receive(ctx)
				}
				if err != nil || got != o.want {
					t.Fatalf("op %d: got %v, %v; want %d", i, got, err, o.want)
				}
			}
			if n := m.Len(); n != 0 {
				t.Fatalf("Len() = %d after the scenario, want 0", n)
			}
		})
	}
}

// A selective receive parks while only non-matching messages arrive, and
// wakes for the matching one; the others stay queued in order.
func TestMailboxReceiveMatchWaitsForMatch(t *testing.T) {
	ctx := watchdogCtx(t)
	m := New()
	got := make(chan any, 1)
	go func() {
		v, err := m.ReceiveMatch(ctx, func(v any) bool { return v == 99 })
		if err != nil {
			v = err
		}
		got <- v
	}()
	waitParked(t, m)
	m.Push(1)
	m.Push(2)
	m.Push(99)
	if v := <-got; v != 99 {
		t.Fatalf("ReceiveMatch = %v, want 99", v)
	}
	if n := m.Len(); n != 2 {
		t.Fatalf("Len() = %d, want 2 skipped messages", n)
	}
	for _, want := range []int{1, 2} {
		if v, err := m.Receive(ctx); err != nil || v != want {
			t.Fatalf("Receive = %v, %v; want %d", v, err, want)
		}
	}
}

func TestMailboxPanickingMatchLosesNoMessage(t *testing.T) {
	m := New()
	m.Push(1)
	m.Push(2)
	func() {
		defer func() { _ = recover() }()
		_, _ = m.ReceiveMatch(context.Background(), func(v any) bool {
			if v == 2 {
				panic("boom")
			}
			return false
		})
	}()
	for _, want := range []int{1, 2} {
		if v, ok := m.TryReceive(); !ok || v != want {
			t.Fatalf("TryReceive = %v, %v; want %d", v, ok, want)
		}
	}
}

func TestMailboxTryReceive(t *testing.T) {
	m := New()
	if v, ok := m.TryReceive(); ok {
		t.Fatalf("empty: TryReceive = %v, true", v)
	}
	m.Push("a")
	if v, ok := m.TryReceive(); !ok || v != "a" {
		t.Fatalf("TryReceive = %v, %v; want a, true", v, ok)
	}
	if v, ok := m.TryReceive(); ok {
		t.Fatalf("drained: TryReceive = %v, true", v)
	}
}

func TestMailboxLen(t *testing.T) {
	m := New()
	for i := range 5 {
		m.Push(i)
	}
	if n := m.Len(); n != 5 {
		t.Fatalf("Len() = %d, want 5", n)
	}
	if _, err := m.ReceiveMatch(context.Background(), func(v any) bool { return v == 3 }); err != nil {
		t.Fatal(err)
	}
	if n := m.Len(); n != 4 {
		t.Fatalf("Len() after a selective receive = %d, want 4", n)
	}
}

func TestMailboxPushReceiveDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	m := New()
	ctx := context.Background()
	msg := any("a 64-byte message, boxed once, so only the mailbox's own cost counts")
	// Warm the node pool with more nodes than the Push-only run needs.
	for range 2048 {
		m.Push(msg)
	}
	for range 2048 {
		_, _ = m.Receive(ctx)
	}
	if a := testing.AllocsPerRun(1000, func() { m.Push(msg) }); a != 0 {
		t.Fatalf("Push: %v allocations per message, want 0", a)
	}
	for range 1001 {
		_, _ = m.Receive(ctx)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		m.Push(msg)
		_, _ = m.Receive(ctx)
	})
	if allocs != 0 {
		t.Fatalf("Push+Receive: %v allocations per message, want 0", allocs)
	}
}

// An idle mailbox must stay small: a node holds 100 000 idle processes at
// ≤ 3 KiB each, goroutine stack (~2.7 KiB) included. New allocates the
// struct only: no queue segment, no channel.
func TestIdleMailboxIsSmall(t *testing.T) {
	const n = 100_000
	const maxBytes = 200
	if s := unsafe.Sizeof(Mailbox{}); s > 144 {
		t.Fatalf("unsafe.Sizeof(Mailbox{}) = %d, want ≤ 144 (the allocator's 144-byte class)", s)
	}
	keep := make([]*Mailbox, n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range keep {
		keep[i] = New()
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("unsafe.Sizeof(Mailbox{}) = %d; %d bytes allocated per New()", unsafe.Sizeof(Mailbox{}), per)
	if per > maxBytes {
		t.Fatalf("%d bytes per New(), want ≤ %d", per, maxBytes)
	}
	runtime.KeepAlive(keep)
}

// The zero Mailbox, held in another struct, is what New returns: its
// owner parks on the semaphore until a Push hands it a token, and once it
// has taken that token none is left out (the semaphore is locked again), so
// its next park waits too. The zero value's semaphore starts unlocked; a
// park that did not lock it first would take a token nobody gave, keep its
// parked bit, and spin, leaving the next Push's token out.
func TestTheZeroMailboxIsReady(t *testing.T) {
	var holder struct {
		_  int
		mb Mailbox
	}
	m := &holder.mb
	for _, msg := range []string{"x", "y"} {
		got := receiveAsync(m)
		waitParked(t, m)
		m.Push(msg)
		if v := <-got; v != msg {
			t.Fatalf("Receive = %v, want %s", v, msg)
		}
		if m.sema.TryLock() {
			t.Fatalf("after the receive of %s the semaphore was free: a token was left out", msg)
		}
	}
}

// A receive with a context that cannot end parks on the semaphore: no
// channel is made, and no token is left behind once the owner is back.
func TestMailboxParksWithoutChannelWhenContextCannotEnd(t *testing.T) {
	m := New()
	got := receiveAsync(m)
	waitParked(t, m)
	if s := m.state.Load(); s != stateParkedSema {
		t.Fatalf("state = %b while parked, want parkedSema", s)
	}
	m.Push("x")
	if v := <-got; v != "x" {
		t.Fatalf("Receive = %v, want x", v)
	}
	if m.wake != nil {
		t.Fatal("a wait with context.Background made a channel")
	}
	if m.sema.TryLock() {
		t.Fatal("sema unlocked after the wake-up: a stale token is left behind")
	}
}

// After ParkOnChannel, a wait with a context that cannot end parks on the
// channel, after ParkNext too (no eventfd), and a Push, a PushEncoded or a
// Close wakes it with no token left behind.
func TestParkOnChannelParksOnTheChannel(t *testing.T) {
	dec := &Decoder{Decode: func(b []byte) (any, error) { return string(b), nil }}
	for _, tc := range []struct {
		name     string
		parkNext bool
		wake     func(m *Mailbox)
		want     any
	}{
		{"push", false, func(m *Mailbox) { m.Push("x") }, "x"},
		{"push/after-parknext", true, func(m *Mailbox) { m.Push("x") }, "x"},
		{"push-encoded", true, func(m *Mailbox) { m.PushEncoded(dec, []byte("y")) }, "y"},
		{"close", false, func(m *Mailbox) { m.Close() }, ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			m.ParkOnChannel()
			m.ParkOnChannel() // twice is once
			got := make(chan any, 1)
			go func() {
				if tc.parkNext {
					m.ParkNext()
				}
				v, err := m.Receive(context.Background())
				if err != nil {
					v = err
				}
				got <- v
			}()
			waitParked(t, m)
			if s := m.state.Load(); s != stateParkedChan {
				t.Fatalf("state = %b while parked, want parkedChan", s)
			}
			tc.wake(m)
			if v := <-got; v != tc.want {
				t.Fatalf("Receive = %v, want %v", v, tc.want)
			}
			if len(m.wake) != 0 {
				t.Fatal("a token is left on the channel after the wake-up")
			}
			if m.semaLocked {
				t.Fatal("the wait used the semaphore (it locked it for a park)")
			}
		})
	}
}

// After ParkOnChannel, a wait with a deadline still ends at it (Receive
// and ReceiveMatch alike), and leaves no parked bit and no token behind.
func TestParkOnChannelKeepsDeadlines(t *testing.T) {
	m := New()
	m.ParkOnChannel()
	m.Push("not this one")
	for _, wait := range []func(ctx context.Context) error{
		func(ctx context.Context) error {
			_, err := m.ReceiveMatch(ctx, func(v any) bool { return v == "never" })
			return err
		},
		func(ctx context.Context) error {
			if _, err := m.Receive(ctx); err != nil { // takes "not this one"
				return err
			}
			_, err := m.Receive(ctx)
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := wait(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait = %v, want context.DeadlineExceeded", err)
		}
		if s := m.state.Load(); s != 0 || len(m.wake) != 0 {
			t.Fatalf("after the deadline: state %b, %d tokens on the channel; want 0, 0", s, len(m.wake))
		}
	}
}

// After traffic, a mailbox whose owner parks holds no queue segment.
func TestParkedMailboxHoldsNoQueueNode(t *testing.T) {
	m := New()
	for i := range 10 {
		m.Push(i)
	}
	for range 10 {
		m.TryReceive()
	}
	if m.q.head == nil {
		t.Fatal("no head segment before any park; test does not exercise rewind")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := m.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive = %v, want DeadlineExceeded", err)
	}
	if m.q.head != nil || m.q.tail.Load() != nil {
		t.Fatal("a parked, empty mailbox still holds a queue segment")
	}
}

func TestExpectSoonCatchesALateMessageWithoutParking(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("ExpectSoon polls only with GOMAXPROCS > 1")
	}
	var parks atomic.Int32
	testHookPark = func() { parks.Add(1) }
	defer func() { testHookPark = nil }()
	m := New()
	go func() {
		time.Sleep(5 * time.Millisecond) // later than the plain spin, well inside the poll
		m.Push("reply")
	}()
	m.ExpectSoon(2 * time.Second)
	v, err := m.Receive(context.Background())
	if err != nil || v != "reply" {
		t.Fatalf("Receive = %v, %v", v, err)
	}
	if n := parks.Load(); n != 0 {
		t.Fatalf("the owner parked %d times while expecting a message soon", n)
	}
	// The poll is for the next wait only: the one after it parks as usual.
	go func() {
		time.Sleep(5 * time.Millisecond)
		m.Push("later")
	}()
	if v, err := m.Receive(context.Background()); err != nil || v != "later" {
		t.Fatalf("Receive = %v, %v", v, err)
	}
	if parks.Load() == 0 {
		t.Fatal("the second wait polled too: ExpectSoon must apply to one wait")
	}
}

func TestParkNextSkipsTheSpinOfOneWait(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 || spinRounds == 0 {
		t.Skip("waits spin only with GOMAXPROCS > 1")
	}
	var spins, parks atomic.Int32
	testHookSpin = func() { spins.Add(1) }
	testHookPark = func() { parks.Add(1) }
	defer func() { testHookSpin, testHookPark = nil, nil }()
	m := New()
	later := func(v string) {
		go func() {
			time.Sleep(5 * time.Millisecond) // well after any spin: the owner parks
			m.Push(v)
		}()
	}
	m.ExpectSoon(time.Second) // cancelled by ParkNext
	m.ParkNext()
	later("first")
	if v, err := m.Receive(context.Background()); err != nil || v != "first" {
		t.Fatalf("Receive = %v, %v", v, err)
	}
	if n := spins.Load(); n != 0 {
		t.Fatalf("the wait after ParkNext spun %d rounds", n)
	}
	if parks.Load() == 0 {
		t.Fatal("the wait after ParkNext did not park")
	}
	// For one wait only: the next one spins first, as usual.
	later("second")
	if v, err := m.Receive(context.Background()); err != nil || v != "second" {
		t.Fatalf("Receive = %v, %v", v, err)
	}
	if spins.Load() == 0 {
		t.Fatal("the wait after the one ParkNext applied to did not spin")
	}
}

// The spin's choice follows GOMAXPROCS from the park after a change on:
// the count of Ps is cached (reading it takes the scheduler's lock) and
// refreshed by each wait that parks, but not by one after ParkNext.
func TestSpinFollowsGOMAXPROCSFromTheNextPark(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 || spinRounds == 0 {
		t.Skip("waits spin only with GOMAXPROCS > 1")
	}
	var spins atomic.Int32
	testHookSpin = func() { spins.Add(1) }
	defer func() { testHookSpin = nil }()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	m := New()
	receiveLate := func(v string) {
		go func() {
			time.Sleep(5 * time.Millisecond) // well after any spin: the owner parks
			m.Push(v)
		}()
		if got, err := m.Receive(context.Background()); err != nil || got != v {
			t.Fatalf("Receive = %v, %v", got, err)
		}
	}
	receiveLate("parks, and sees GOMAXPROCS=1")
	spins.Store(0)
	receiveLate("parks at once")
	if n := spins.Load(); n != 0 {
		t.Fatalf("a wait with GOMAXPROCS=1 spun %d rounds", n)
	}
	runtime.GOMAXPROCS(2)
	m.ParkNext()
	receiveLate("parks after ParkNext, and does not look")
	spins.Store(0)
	receiveLate("parks, and sees GOMAXPROCS=2")
	if n := spins.Load(); n != 0 {
		t.Fatalf("the wait after one after ParkNext spun %d rounds: that one refreshed the count of Ps", n)
	}
	spins.Store(0)
	receiveLate("spins first")
	if spins.Load() == 0 {
		t.Fatal("a wait with GOMAXPROCS=2 did not spin")
	}
}

// TestParkNextWaitHandsOverEveryMessage runs more owners than the eventfd
// pool holds, each waiting after ParkNext (on an eventfd when one is free,
// else on the semaphore) while its producer pushes, and checks order and
// count; then a Close wakes an owner parked that way.
func TestParkNextWaitHandsOverEveryMessage(t *testing.T) {
	const owners, msgs = fdPoolMax + 44, 200
	var wg sync.WaitGroup
	errs := make(chan error, owners)
	for range owners {
		m := New()
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range msgs {
				m.ParkNext()
				v, err := m.Receive(context.Background())
				if err != nil || v != i {
					errs <- fmt.Errorf("Receive = %v, %v; want %d", v, err, i)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range msgs {
				m.Push(i)
				if i%7 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	m := New()
	got := make(chan error, 1)
	go func() {
		m.ParkNext()
		_, err := m.Receive(context.Background())
		got <- err
	}()
	for m.state.Load()&stateParked == 0 {
		runtime.Gosched()
	}
	m.Close()
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close = %v, want ErrClosed", err)
	}
}

// TestParkNextWaitsOnAnEventfd checks that a wait after ParkNext parks on
// an eventfd (Linux) and that a Push from another goroutine ends it.
func TestParkNextWaitsOnAnEventfd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("eventfds are Linux's")
	}
	waitFDPoolRoom(&mailboxFDs)
	m := New()
	got := make(chan any, 1)
	go func() {
		m.ParkNext()
		v, _ := m.Receive(context.Background())
		got <- v
	}()
	for m.state.Load()&stateParked == 0 {
		runtime.Gosched()
	}
	if s := m.state.Load(); s != stateParkedFD {
		m.Push("reply")
		t.Fatalf("the wait after ParkNext parked with state %#x, not on an eventfd", s)
	}
	m.Push("reply")
	if v := <-got; v != "reply" {
		t.Fatalf("Receive = %v, want reply", v)
	}
}
