package mailbox

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// kickReader is a test InlineReader that never reads: it counts kicks,
// and the parks it was told of (parked: begun and not ended; begun: all).
type kickReader struct {
	kickCounter
	parked, begun atomic.Int32
	inPark        chan struct{} // if set, ParkBegin closes it once
}

func (*kickReader) WaitInline(context.Context, *Mailbox) bool { return false }

func (r *kickReader) ParkBegin() {
	r.parked.Add(1)
	if r.begun.Add(1) == 1 && r.inPark != nil {
		close(r.inPark)
	}
}

func (r *kickReader) ParkEnd() { r.parked.Add(-1) }

// An owner that parks without reading inline tells its InlineReader, so
// that network input it may wait for is not held back (package loop's
// Engine.ParkBegin): ParkBegin before the park, ParkEnd when it is over,
// for a park with or without ParkNext, on the semaphore or on a context.
// A wait that a queued message ends at once tells nothing.
func TestMailboxTellsItsInlineReaderOfEveryPark(t *testing.T) {
	for _, tc := range []struct {
		name     string
		parkNext bool
		ctx      bool
	}{
		{"a plain park", false, false},
		{"after ParkNext, the reader declining", true, false},
		{"a park with a context that can end", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, r := New(), &kickReader{inPark: make(chan struct{})}
			m.SetInlineReader(r)
			m.Push("queued")
			if v, err := m.Receive(context.Background()); err != nil || v != "queued" {
				t.Fatalf("Receive = %v, %v", v, err)
			}
			if n := r.begun.Load(); n != 0 {
				t.Fatalf("%d parks told for a wait a queued message ended", n)
			}
			if tc.parkNext {
				m.ParkNext()
			}
			ctx := context.Background()
			if tc.ctx {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			got := make(chan any, 1)
			go func() {
				v, err := m.Receive(ctx)
				if err != nil {
					v = err
				}
				got <- v
			}()
			select {
			case <-r.inPark:
			case <-time.After(10 * time.Second): // a failure detector, not a timing
				t.Fatal("the owner's park was not told to its InlineReader")
			}
			if n := r.parked.Load(); n != 1 {
				t.Fatalf("%d parks begun and not ended while the owner parks, want 1", n)
			}
			m.Push("woken")
			if v := <-got; v != "woken" {
				t.Fatalf("Receive = %v, want woken", v)
			}
			if n := r.parked.Load(); n != 0 {
				t.Fatalf("%d parks not ended after the owner woke", n)
			}
		})
	}
}

// A mailbox parked inline (InlinePark) is woken by a kick of its
// InlineReader, once, by whichever waker ends the park: a Push or a
// Close. A park taken back first (InlineUnpark) is kicked by nobody, and
// a mailbox with a message queued, or closed, refuses to park.
func TestMailboxInlineParkIsEndedByOneKick(t *testing.T) {
	newBox := func() (*Mailbox, *kickReader) {
		m, r := New(), new(kickReader)
		m.SetInlineReader(r)
		return m, r
	}
	t.Run("a push ends the park", func(t *testing.T) {
		m, r := newBox()
		if !m.InlinePark() {
			t.Fatal("InlinePark refused on an empty mailbox")
		}
		if m.InlineWoken() || m.InlineReady() {
			t.Fatal("woken or ready before any message")
		}
		m.Push("a")
		if !m.InlineWoken() || !m.InlineReady() {
			t.Fatal("not woken and ready after a Push")
		}
		if m.InlineUnpark() {
			t.Fatal("InlineUnpark took back a park a Push ended")
		}
		m.Push("b") // not parked any more: no second kick
		if n := r.n.Load(); n != 1 {
			t.Fatalf("%d kicks, want 1", n)
		}
		for _, want := range []string{"a", "b"} {
			if v, ok := m.TryReceive(); !ok || v != want {
				t.Fatalf("TryReceive = %v, %v; want %q", v, ok, want)
			}
		}
	})
	t.Run("a close ends the park", func(t *testing.T) {
		m, r := newBox()
		if !m.InlinePark() {
			t.Fatal("InlinePark refused on an empty mailbox")
		}
		m.Close()
		if !m.InlineWoken() || !m.InlineReady() {
			t.Fatal("not woken and ready after Close")
		}
		if m.InlineUnpark() {
			t.Fatal("InlineUnpark took back a park Close ended")
		}
		if n := r.n.Load(); n != 1 {
			t.Fatalf("%d kicks, want 1", n)
		}
		if m.InlinePark() {
			t.Fatal("InlinePark accepted a park on a closed mailbox")
		}
	})
	t.Run("a park taken back is kicked by nobody", func(t *testing.T) {
		m, r := newBox()
		if !m.InlinePark() || !m.InlineUnpark() {
			t.Fatal("a park with no waker could not be taken back")
		}
		m.Push("a")
		if n := r.n.Load(); n != 0 {
			t.Fatalf("%d kicks after the park was taken back, want 0", n)
		}
		if m.InlinePark() {
			t.Fatal("InlinePark accepted a park with a message queued")
		}
	})
}
