package mailbox

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A message the owner gives itself while nothing is queued is held, ahead
// of what is pushed after it, and ends an inline park's wait: InlineReady
// reports it and InlinePark refuses to park over it.
func TestPushEncodedOwnIsHeldAheadOfLaterMessages(t *testing.T) {
	m := New()
	m.SetInlineReader(new(kickReader))
	if !m.PushEncodedOwn(stringDecoder, []byte("own")) {
		t.Fatal("PushEncodedOwn refused on an open mailbox")
	}
	if !m.held {
		t.Fatal("the message was queued, not held, with nothing queued before it")
	}
	if !m.InlineReady() {
		t.Fatal("InlineReady is false with a message held")
	}
	if m.InlinePark() {
		t.Fatal("InlinePark accepted a park with a message held")
	}
	m.Push("plain")
	m.PushEncoded(stringDecoder, []byte("encoded"))
	for _, want := range []string{"own", "plain", "encoded"} {
		if v, ok := m.TryReceive(); !ok || v != want {
			t.Fatalf("TryReceive = %v, %v; want %q", v, ok, want)
		}
	}
	if v, ok := m.TryReceive(); ok {
		t.Fatalf("an extra message %v", v)
	}
}

// With anything queued before it (a plain message, an encoded run, a
// message held already) the owner's own message is queued behind it; the
// rest of a run being read comes before it too.
func TestPushEncodedOwnQueuesBehindWhatCameFirst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(m *Mailbox)
		want  []string
	}{
		{"a plain message", func(m *Mailbox) { m.Push("first") }, []string{"first"}},
		{"an encoded run", func(m *Mailbox) {
			m.PushEncodedRun(stringDecoder, [][]byte{[]byte("r1"), []byte("r2")})
		}, []string{"r1", "r2"}},
		{"a held message", func(m *Mailbox) { m.PushEncodedOwn(stringDecoder, []byte("held")) }, []string{"held"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			tc.first(m)
			m.PushEncodedOwn(stringDecoder, []byte("own"))
			for _, want := range append(tc.want, "own") {
				if v, ok := m.TryReceive(); !ok || v != want {
					t.Fatalf("TryReceive = %v, %v; want %q", v, ok, want)
				}
			}
		})
	}
	// The rest of a run the owner has begun reading is not queued any
	// more, but comes first all the same: pop reads it before the held
	// message.
	t.Run("a run being read", func(t *testing.T) {
		m := New()
		m.PushEncodedRun(stringDecoder, [][]byte{[]byte("r1"), []byte("r2")})
		if v, _ := m.TryReceive(); v != "r1" {
			t.Fatalf("TryReceive = %v, want r1", v)
		}
		m.PushEncodedOwn(stringDecoder, []byte("own")) // the queue is empty, r2 is not read
		for _, want := range []string{"r2", "own"} {
			if v, ok := m.TryReceive(); !ok || v != want {
				t.Fatalf("TryReceive = %v, %v; want %q", v, ok, want)
			}
		}
	})
}

// A panic of the decoder comes out of the receive that takes the message,
// as it would from a queued message, not out of PushEncodedOwn (which runs
// inside the owner's read of the network); an undecodable message is
// dropped and reported.
func TestPushEncodedOwnDecodeFailures(t *testing.T) {
	m := New()
	dec := &Decoder{Decode: func(b []byte) (any, error) {
		if string(b) == "panic" {
			panic("decoder panicked")
		}
		return string(b), nil
	}}
	m.PushEncodedOwn(dec, []byte("panic"))
	func() {
		defer func() {
			if r := recover(); r != "decoder panicked" {
				t.Fatalf("recovered %v, want the decoder's panic", r)
			}
		}()
		v, _ := m.TryReceive()
		t.Fatalf("TryReceive = %v, want its panic", v)
	}()
	m.PushEncodedOwn(dec, []byte("next"))
	if v, ok := m.TryReceive(); !ok || v != "next" {
		t.Fatalf("after the panic: TryReceive = %v, %v; want next", v, ok)
	}

	errBad := errors.New("bad")
	var dropped []error
	bad := &Decoder{
		Decode:  func([]byte) (any, error) { return nil, errBad },
		Dropped: func(err error) { dropped = append(dropped, err) },
	}
	if !m.PushEncodedOwn(bad, []byte("x")) {
		t.Fatal("PushEncodedOwn refused on an open mailbox")
	}
	if len(dropped) != 1 || dropped[0] != errBad {
		t.Fatalf("dropped = %v, want [%v]", dropped, errBad)
	}
	if v, ok := m.TryReceive(); ok {
		t.Fatalf("TryReceive = %v after an undecodable message, want nothing", v)
	}
}

// Close drops a held message, and a closed mailbox refuses the owner's own.
func TestPushEncodedOwnAndClose(t *testing.T) {
	m := New()
	m.PushEncodedOwn(stringDecoder, []byte("own"))
	m.Close()
	if _, err := m.Receive(context.Background()); err != ErrClosed {
		t.Fatalf("Receive = %v, want ErrClosed", err)
	}
	if m.held || m.inbox.Load().held != nil {
		t.Fatal("a closed mailbox still holds the message")
	}
	if m.PushEncodedOwn(stringDecoder, []byte("late")) {
		t.Fatal("PushEncodedOwn accepted a message on a closed mailbox")
	}
}

// ownReader is an InlineReader whose wait gives the owner its message the
// way a node's read of its link does: PushEncodedOwn, on the owner's
// goroutine, inside WaitInline.
type ownReader struct {
	kickReader
	msg []byte
}

func (r *ownReader) WaitInline(_ context.Context, m *Mailbox) bool {
	m.PushEncodedOwn(stringDecoder, r.msg)
	return true
}

// A receive whose inline wait brought the owner its own message returns
// it: the wait after WaitInline looks at the held message as at the queue
// (else it would park with its message held, for ever).
func TestReceiveReturnsTheMessageItsInlineWaitHeld(t *testing.T) {
	m := New()
	r := &ownReader{msg: []byte("reply")}
	m.SetInlineReader(r)
	m.ParkNext()
	got := receiveAsync(m)
	select {
	case v := <-got:
		if v != "reply" {
			t.Fatalf("Receive = %v, want reply", v)
		}
	case <-time.After(10 * time.Second): // a failure detector, not a timing
		m.Close()
		t.Fatal("the owner parked with the message its inline wait held")
	}
	if n := r.begun.Load(); n != 0 {
		t.Fatalf("%d parks told, want none", n)
	}
}

// The owner's own message costs no allocation: no chunk, no segment, no
// copy (the decoder's values are the message's own).
func TestPushEncodedOwnReceiveDoesNotAllocate(t *testing.T) {
	var value any = "decoded"
	dec := &Decoder{Decode: func([]byte) (any, error) { return value, nil }}
	m := New()
	b := make([]byte, 64)
	m.PushEncodedOwn(dec, b) // the inbox is made at the first message
	_, _ = m.TryReceive()
	allocs := testing.AllocsPerRun(10000, func() {
		m.PushEncodedOwn(dec, b)
		if _, ok := m.TryReceive(); !ok {
			t.Fatal("no message")
		}
	})
	if allocs != 0 {
		t.Fatalf("PushEncodedOwn+TryReceive: %v allocations per message, want 0", allocs)
	}
}

// BenchmarkOwnMessage is a request/reply owner's receive of one small
// encoded message, each message after a wait (the rewinds a park does
// first): queued by PushEncoded (a chunk and a queue segment from their
// pools, a copy, a marker pushed and popped) or given to itself while it
// reads inline (PushEncodedOwn: decoded and held).
func BenchmarkOwnMessage(b *testing.B) {
	var value any = "decoded"
	dec := &Decoder{Decode: func([]byte) (any, error) { return value, nil }}
	msg := make([]byte, 96)
	for _, bc := range []struct {
		name string
		push func(m *Mailbox)
	}{
		{"queued", func(m *Mailbox) { m.PushEncoded(dec, msg) }},
		{"held", func(m *Mailbox) { m.PushEncodedOwn(dec, msg) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := New()
			b.ReportAllocs()
			for b.Loop() {
				m.q.rewind() // what the owner's wait does before it parks
				m.rewindInbox()
				bc.push(m)
				if _, ok := m.TryReceive(); !ok {
					b.Fatal("no message")
				}
			}
		})
	}
}
