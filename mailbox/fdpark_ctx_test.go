package mailbox

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// A wait after ParkNext whose context can end parks on the channel (an
// eventfd there lost on a busy machine: docs/latency.md): a Push, a
// PushEncoded, a Close or the context's end ends it, leaving no token
// behind (the next wait, on an eventfd, parks once, not twice).
func TestParkNextWaitWithAContext(t *testing.T) {
	dec := &Decoder{Decode: func(b []byte) (any, error) { return string(b), nil }}
	for _, tc := range []struct {
		name string
		end  func(m *Mailbox, cancel context.CancelFunc)
		want any // a message, or the error Receive returns
	}{
		{"push", func(m *Mailbox, _ context.CancelFunc) { m.Push("x") }, "x"},
		{"push-encoded", func(m *Mailbox, _ context.CancelFunc) { m.PushEncoded(dec, []byte("y")) }, "y"},
		{"close", func(m *Mailbox, _ context.CancelFunc) { m.Close() }, ErrClosed},
		{"cancel", func(_ *Mailbox, cancel context.CancelFunc) { cancel() }, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waitFDPoolRoom(&mailboxFDs)
			parks := withParkCounter(t, true, false)
			m := New()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan any, 1)
			go func() {
				m.ParkNext()
				v, err := m.Receive(ctx)
				if err != nil {
					v = err
				}
				got <- v
			}()
			waitParked(t, m)
			if s := m.state.Load(); s != stateParkedChan {
				tc.end(m, cancel)
				<-got
				t.Fatalf("state = %#x while parked, want parkedChan", s)
			}
			tc.end(m, cancel)
			v := <-got
			if err, ok := v.(error); ok {
				if want, _ := tc.want.(error); !errors.Is(err, want) {
					t.Fatalf("Receive = %v, want %v", err, tc.want)
				}
			} else if v != tc.want {
				t.Fatalf("Receive = %v, want %v", v, tc.want)
			}
			if n := parks.Load(); n != 1 {
				t.Fatalf("%d parks for one wait", n)
			}
			if tc.want == ErrClosed {
				return
			}
			// The next wait parks once: no token was left on the channel.
			parks.Store(0)
			go func() {
				m.ParkNext()
				v, _ := m.Receive(context.Background())
				got <- v
			}()
			waitParked(t, m)
			m.Push("next")
			if v := <-got; v != "next" {
				t.Fatalf("next Receive = %v", v)
			}
			if n := parks.Load(); n != 1 {
				t.Fatalf("the next wait parked %d times: a token was left behind", n)
			}
		})
	}
}

// A wait after ParkNext with a deadline and no message ends with the
// deadline's error, past or future.
func TestParkNextWaitEndsAtItsDeadline(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, -time.Second} {
		m := New()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		m.ParkNext()
		_, err := m.Receive(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Receive with a %v deadline = %v, want DeadlineExceeded", d, err)
		}
	}
}

// The threat: a message and the context's end racing each other, over and
// over, from more owners than the eventfd pool holds, each followed by a
// wait with no context when the context won (on an eventfd when one is
// free). Each message is received once and in order, no wait hangs, and
// no eventfd goes back to its pool holding a token.
func TestParkNextWaitRacesItsContext(t *testing.T) {
	owners, rounds := fdPoolMax+8, 150
	if testing.Short() {
		owners, rounds = 16, 100
	}
	var wg sync.WaitGroup
	errs := make(chan error, owners)
	for range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := New()
			next := 0 // the next message the owner must receive
			for i := range rounds {
				ctx, cancel := context.WithCancel(context.Background())
				var racers sync.WaitGroup
				racers.Add(2)
				go func() { defer racers.Done(); m.Push(i) }()
				go func() { defer racers.Done(); runtime.Gosched(); cancel() }()
				m.ParkNext()
				v, err := m.Receive(ctx)
				racers.Wait()
				cancel()
				if err == nil {
					if v != next {
						errs <- fmt.Errorf("round %d: Receive = %v, want %d", i, v, next)
						return
					}
					next++
					continue
				}
				if !errors.Is(err, context.Canceled) {
					errs <- fmt.Errorf("round %d: Receive error %v", i, err)
					return
				}
				// The message is queued: the next wait, on a fresh
				// context, takes it.
				m.ParkNext()
				v, err = m.Receive(context.Background())
				if err != nil || v != next {
					errs <- fmt.Errorf("round %d: after the cancel, Receive = %v, %v; want %d", i, v, err, next)
					return
				}
				next++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := fdPoolTokens(&mailboxFDs); n > 0 {
		t.Fatalf("%d eventfds went back to the pool holding a token", n)
	}
}
