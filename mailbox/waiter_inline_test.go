package mailbox

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// kickCounter is a test InlineKicker: it counts its kicks.
type kickCounter struct{ n atomic.Int32 }

func (k *kickCounter) KickInline() { k.n.Add(1) }

// An inline wait (BeginInline … EndInline) hands Wake's token to where
// the owner is: nowhere while it reads (EndInline reports the Wake), a
// kick of the reader while it is parked inside the reader's wait
// (InlineUnpark then fails), and the Waiter's own eventfd or channel
// after EndInline, for Wait. Each way, the waker's writes are visible to
// the owner and no token is left behind for the next wait.
func TestWaiterInlineWaitHandsTheWakeToWhereTheOwnerIs(t *testing.T) {
	t.Run("woken while reading", func(t *testing.T) {
		r := new(kickCounter)
		var w Waiter
		w.Arm()
		if !w.BeginInline(r) {
			t.Fatal("BeginInline refused on a fresh Waiter")
		}
		got := 0
		go func() { got = 1; w.Wake() }()
		for !w.InlineReady() {
			runtime.Gosched()
		}
		if !w.InlineWoken() {
			t.Fatal("InlineWoken false after the Wake")
		}
		if !w.EndInline() {
			t.Fatal("EndInline did not report the Wake")
		}
		if got != 1 {
			t.Fatal("the waker's write is not visible after EndInline")
		}
		if w.Wait(time.Now()) {
			t.Fatal("a token was left for Wait: the Wake was handed over twice")
		}
		if n := r.n.Load(); n != 0 {
			t.Fatalf("the Wake kicked the reader %d times though nobody was parked", n)
		}
		w.Disarm()
	})
	t.Run("woken while parked inside the reader's wait", func(t *testing.T) {
		r := new(kickCounter)
		var w Waiter
		w.Arm()
		if !w.BeginInline(r) {
			t.Fatal("BeginInline refused on a fresh Waiter")
		}
		if !w.InlinePark() {
			t.Fatal("InlinePark refused before any Wake")
		}
		w.Wake()
		if w.InlineUnpark() {
			t.Fatal("InlineUnpark took the park back after a Wake cleared it")
		}
		if n := r.n.Load(); n != 1 {
			t.Fatalf("the Wake kicked the reader %d times, want once", n)
		}
		if !w.EndInline() {
			t.Fatal("EndInline did not report the Wake")
		}
		if w.Wait(time.Now()) {
			t.Fatal("a token was also left for Wait")
		}
		w.Disarm()
	})
	t.Run("not woken during it", func(t *testing.T) {
		r := new(kickCounter)
		var w Waiter
		w.Arm()
		if !w.BeginInline(r) {
			t.Fatal("BeginInline refused on a fresh Waiter")
		}
		if !w.InlinePark() || !w.InlineUnpark() {
			t.Fatal("a park with no Wake could not be taken back")
		}
		if w.EndInline() {
			t.Fatal("EndInline reported a Wake that never came")
		}
		go w.Wake()
		if !w.Wait(time.Now().Add(time.Minute)) {
			t.Fatal("the Wake after EndInline did not reach Wait")
		}
		if n := r.n.Load(); n != 0 {
			t.Fatalf("the Wake after EndInline kicked the reader %d times", n)
		}
		w.Disarm()
	})
	t.Run("woken before it parked", func(t *testing.T) {
		r := new(kickCounter)
		var w Waiter
		w.Arm()
		if !w.BeginInline(r) {
			t.Fatal("BeginInline refused on a fresh Waiter")
		}
		w.Wake()
		if w.InlinePark() {
			t.Fatal("InlinePark accepted a park after the Wake")
		}
		if !w.EndInline() {
			t.Fatal("EndInline did not report the Wake")
		}
		if n := r.n.Load(); n != 0 {
			t.Fatalf("the Wake kicked the reader %d times though nobody was parked", n)
		}
		w.Disarm()
	})
	t.Run("woken before it began", func(t *testing.T) {
		r := new(kickCounter)
		var w Waiter
		w.Arm()
		w.Wake() // the reply came through the loop before the owner began
		if w.BeginInline(r) {
			t.Fatal("BeginInline began an inline wait after the Wake came")
		}
		if !w.Wait(time.Now().Add(time.Minute)) {
			t.Fatal("Wait did not find the Wake's token")
		}
		if n := r.n.Load(); n != 0 {
			t.Fatalf("the Wake kicked the reader %d times though nobody was parked", n)
		}
		w.Disarm()
	})
}
