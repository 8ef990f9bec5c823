package mailbox

import (
	"runtime"
	"testing"
	"time"
)

// An inline wait (BeginInline … EndInline) hands Wake's token to where
// the owner is: nowhere while it reads (EndInline reports the Wake), the
// reader's eventfd while it is parked there (InlineUnpark then fails and
// the token is on that eventfd), and the Waiter's own eventfd or channel
// after EndInline, for Wait. Each way, the waker's writes are visible to
// the owner and no token is left behind for the next wait.
func TestWaiterInlineWaitHandsTheWakeToWhereTheOwnerIs(t *testing.T) {
	readerFD := func(t *testing.T) *fdWaiter {
		t.Helper()
		r, err := newFDWaiter()
		if err != nil {
			t.Skipf("no eventfd here: %v", err)
		}
		t.Cleanup(func() { _ = r.f.Close() })
		return r
	}
	t.Run("woken while reading", func(t *testing.T) {
		var w Waiter
		w.Arm()
		if !w.BeginInline() {
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
		w.Disarm()
	})
	t.Run("woken while parked on the reader's eventfd", func(t *testing.T) {
		r := readerFD(t)
		var w Waiter
		w.Arm()
		if !w.BeginInline() {
			t.Fatal("BeginInline refused on a fresh Waiter")
		}
		if !w.InlinePark(r.fd) {
			t.Fatal("InlinePark refused before any Wake")
		}
		w.Wake()
		if w.InlineUnpark() {
			t.Fatal("InlineUnpark took the park back after a Wake cleared it")
		}
		if !r.waitUntil(time.Now().Add(time.Minute)) {
			t.Fatal("no token on the reader's eventfd")
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
		r := readerFD(t)
		var w Waiter
		w.Arm()
		if !w.BeginInline() {
			t.Fatal("BeginInline refused on a fresh Waiter")
		}
		if !w.InlinePark(r.fd) || !w.InlineUnpark() {
			t.Fatal("a park with no Wake could not be taken back")
		}
		if w.EndInline() {
			t.Fatal("EndInline reported a Wake that never came")
		}
		go w.Wake()
		if !w.Wait(time.Now().Add(time.Minute)) {
			t.Fatal("the Wake after EndInline did not reach Wait")
		}
		if r.waitUntil(time.Now()) {
			t.Fatal("the Wake after EndInline wrote the reader's eventfd")
		}
		w.Disarm()
	})
	t.Run("woken before it parked", func(t *testing.T) {
		r := readerFD(t)
		var w Waiter
		w.Arm()
		if !w.BeginInline() {
			t.Fatal("BeginInline refused on a fresh Waiter")
		}
		w.Wake()
		if w.InlinePark(r.fd) {
			t.Fatal("InlinePark accepted a park after the Wake")
		}
		if !w.EndInline() {
			t.Fatal("EndInline did not report the Wake")
		}
		if r.waitUntil(time.Now()) {
			t.Fatal("the Wake wrote the reader's eventfd though nobody was parked on it")
		}
		w.Disarm()
	})
	t.Run("woken before it began", func(t *testing.T) {
		r := readerFD(t)
		var w Waiter
		w.Arm()
		w.Wake() // the reply came through the loop before the owner began
		if !w.BeginInline() {
			t.Fatal("BeginInline refused on a fresh Waiter")
		}
		if w.InlinePark(r.fd) {
			t.Fatal("InlinePark accepted a park after a Wake that came before the inline wait")
		}
		if w.EndInline() {
			t.Fatal("EndInline reported a Wake whose token is on the Waiter's own eventfd")
		}
		if !w.Wait(time.Now().Add(time.Minute)) {
			t.Fatal("Wait did not find the Wake's token")
		}
		w.Disarm()
	})
}
