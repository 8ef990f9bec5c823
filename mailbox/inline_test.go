package mailbox

import (
	"context"
	"testing"
)

// kickReader is a test InlineReader that never reads: it counts kicks.
type kickReader struct{ kickCounter }

func (*kickReader) WaitInline(context.Context, *Mailbox) bool { return false }

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
