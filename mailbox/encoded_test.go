package mailbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// stringDecoder decodes an encoded message as the string of its bytes.
var stringDecoder = &Decoder{Decode: func(b []byte) (any, error) { return string(b), nil }}

func TestEncodedMessagesKeepTheirPlaceAmongOthers(t *testing.T) {
	sizes := []int{1, 7, minChunk - 4, minChunk, 2*minChunk + 1, maxChunk - 20, maxChunk, 3 * maxChunk, 1}
	m := New()
	var want []string
	for i, n := range sizes {
		plain := fmt.Sprintf("plain %d", i)
		enc := strings.Repeat(string(rune('a'+i)), n)
		m.Push(plain)
		if !m.PushEncoded(stringDecoder, []byte(enc)) {
			t.Fatal("PushEncoded refused on an open mailbox")
		}
		want = append(want, plain, enc)
	}
	ctx := watchdogCtx(t)
	for i, w := range want {
		v, err := m.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v != w {
			t.Fatalf("message %d: got %.20q (%d bytes), want %.20q (%d bytes)", i, v, len(v.(string)), w, len(w))
		}
	}
	if v, ok := m.TryReceive(); ok {
		t.Fatalf("TryReceive after the last message = %.20q, want nothing", v)
	}
}

func TestEncodedMessageIsCopiedAtPush(t *testing.T) {
	m := New()
	b := []byte("original")
	m.PushEncoded(stringDecoder, b)
	copy(b, "XXXXXXXX")
	v, _ := m.TryReceive()
	if v != "original" {
		t.Fatalf("got %q, want %q: the caller's buffer was not copied", v, "original")
	}
}

func TestUndecodableEncodedMessageIsDroppedAndReported(t *testing.T) {
	errBad := errors.New("bad message")
	var dropped []error
	dec := &Decoder{
		Decode: func(b []byte) (any, error) {
			if string(b) == "bad" {
				return nil, errBad
			}
			return string(b), nil
		},
		Dropped: func(err error) { dropped = append(dropped, err) },
	}
	m := New()
	m.PushEncoded(dec, []byte("first"))
	m.PushEncoded(dec, []byte("bad"))
	m.PushEncoded(dec, []byte("bad"))
	m.Push("plain")
	m.PushEncoded(dec, []byte("last"))
	ctx := watchdogCtx(t)
	for _, want := range []string{"first", "plain", "last"} {
		v, err := m.Receive(ctx)
		if err != nil || v != want {
			t.Fatalf("Receive = %v, %v; want %q", v, err, want)
		}
	}
	if len(dropped) != 2 || !errors.Is(dropped[0], errBad) {
		t.Fatalf("Dropped was told %v, want errBad twice", dropped)
	}
}

func TestReceiveMatchDecodesSkippedEncodedMessagesOnce(t *testing.T) {
	decodes := 0
	dec := &Decoder{Decode: func(b []byte) (any, error) { decodes++; return string(b), nil }}
	m := New()
	for _, s := range []string{"a", "b", "target", "c"} {
		m.PushEncoded(dec, []byte(s))
	}
	ctx := watchdogCtx(t)
	v, err := m.ReceiveMatch(ctx, func(v any) bool { return v == "target" })
	if err != nil || v != "target" {
		t.Fatalf("ReceiveMatch = %v, %v", v, err)
	}
	for _, want := range []string{"a", "b", "c"} {
		if v, _ := m.Receive(ctx); v != want {
			t.Fatalf("Receive = %v, want %q", v, want)
		}
	}
	if decodes != 4 {
		t.Fatalf("%d decodes for 4 messages, want 4", decodes)
	}
}

func TestClosedMailboxRefusesEncoded(t *testing.T) {
	m := New()
	m.Close()
	if m.PushEncoded(stringDecoder, []byte("x")) {
		t.Fatal("PushEncoded on a closed mailbox returned true")
	}
}

// Producers push encoded and plain messages, mixed, while the owner
// receives, parking whenever it runs dry: every message arrives once, and
// each producer's messages, of both kinds, in the order it pushed them. (A
// producer's plain message must not overtake its own earlier encoded one,
// whatever other producers' encoded messages do meanwhile.)
func TestEncodedAndPlainMessagesKeepPerProducerOrder(t *testing.T) {
	const producers, each = 4, 20000
	dec := &Decoder{Decode: func(b []byte) (any, error) {
		return [2]uint32{binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])}, nil
	}}
	m := New()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 8+p*301%900) // sizes that cross chunk ends at different places
			for i := 0; i < each; i++ {
				switch {
				case (i/(p+1))%2 == 1: // stretches of plain and encoded, different per producer
					m.Push([2]uint32{uint32(p), uint32(i)})
				case i%3 == 0 && i+1 < each: // a run of two
					b2 := bytes.Clone(b)
					binary.LittleEndian.PutUint32(b, uint32(p))
					binary.LittleEndian.PutUint32(b[4:], uint32(i))
					binary.LittleEndian.PutUint32(b2, uint32(p))
					binary.LittleEndian.PutUint32(b2[4:], uint32(i+1))
					m.PushEncodedRun(dec, [][]byte{b, b2})
					i++
				default:
					binary.LittleEndian.PutUint32(b, uint32(p))
					binary.LittleEndian.PutUint32(b[4:], uint32(i))
					m.PushEncoded(dec, b)
				}
				if i%2000 == 0 {
					time.Sleep(100 * time.Microsecond) // let the owner run dry and park
				}
			}
		}()
	}
	ctx := watchdogCtx(t)
	next := make([]uint32, producers)
	for range producers * each {
		v, err := m.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pi := v.([2]uint32)
		if pi[1] != next[pi[0]] {
			t.Fatalf("producer %d: got message %d, want %d", pi[0], pi[1], next[pi[0]])
		}
		next[pi[0]]++
	}
	wg.Wait()
	if v, ok := m.TryReceive(); ok {
		t.Fatalf("an extra message %v", v)
	}
}

// An owner that has read everything and parks gives its chunk back, after a
// burst and after a single message alike: an idle process holds no chunk.
func TestParkedOwnerHoldsNoChunk(t *testing.T) {
	tests := []struct {
		name  string
		count int
		size  int
	}{
		{"after a burst", 200, 1000},
		{"after one small message", 1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			msg := bytes.Repeat([]byte("x"), tt.size)
			ctx := watchdogCtx(t)
			for round := range 3 { // and the chain starts again after each park
				for range tt.count {
					m.PushEncoded(stringDecoder, msg)
				}
				for range tt.count {
					if v, err := m.Receive(ctx); err != nil || v != string(msg) {
						t.Fatalf("round %d: Receive = %.10q, %v", round, v, err)
					}
				}
				short, cancel := context.WithTimeout(ctx, time.Millisecond)
				_, err := m.Receive(short)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Receive on an empty mailbox = %v, want the deadline", err)
				}
				in := m.inbox.Load()
				if in.w != nil || m.rd.r != nil || in.first.Load() != nil {
					t.Fatalf("round %d: a parked owner still holds a chunk", round)
				}
			}
		})
	}
}

// Empty encoded messages are messages like any other (entries store their
// length plus one, so 0 stays the chunk terminator).
func TestEmptyEncodedMessagesAreDeliveredInOrder(t *testing.T) {
	m := New()
	for _, s := range []string{"a", "", "b", ""} {
		m.PushEncoded(stringDecoder, []byte(s))
	}
	for _, want := range []string{"a", "", "b", ""} {
		v, ok := m.TryReceive()
		if !ok || v != want {
			t.Fatalf("TryReceive = %q, %v; want %q", v, ok, want)
		}
	}
	if v, ok := m.TryReceive(); ok {
		t.Fatalf("an extra message %q", v)
	}
}

func TestPushEncodedReceiveDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	var value any = "decoded"
	dec := &Decoder{Decode: func([]byte) (any, error) { return value, nil }}
	m := New()
	ctx := context.Background()
	b := bytes.Repeat([]byte("m"), 64)
	for range 4096 { // warm the queue's segment pool and grow the chunks
		m.PushEncoded(dec, b)
	}
	for range 4096 {
		_, _ = m.Receive(ctx)
	}
	allocs := testing.AllocsPerRun(10000, func() {
		m.PushEncoded(dec, b)
		_, _ = m.Receive(ctx)
	})
	if allocs != 0 {
		t.Fatalf("PushEncoded+Receive: %v allocations per message, want 0", allocs)
	}
}

func TestEncodedRunsAreReceivedInOrderAndCounted(t *testing.T) {
	errBad := errors.New("bad")
	dec := &Decoder{Decode: func(b []byte) (any, error) {
		if string(b) == "bad" {
			return nil, errBad
		}
		return string(b), nil
	}}
	m := New()
	var run [][]byte
	var want []string
	for i := range 150 { // splits into runs of 64, 64 and 22
		s := fmt.Sprintf("run %d", i)
		if i == 70 {
			s = "bad" // dropped, the run goes on
		} else {
			want = append(want, s)
		}
		run = append(run, []byte(s))
	}
	m.Push("before")
	m.PushEncodedRun(dec, run)
	m.Push("after")
	want = append(append([]string{"before"}, want...), "after")
	if got := m.Len(); got != 152 {
		t.Fatalf("Len = %d, want 152", got)
	}
	ctx := watchdogCtx(t)
	// A selective receive saves what it skips, decoded, in order.
	v, err := m.ReceiveMatch(ctx, func(v any) bool { return v == "run 100" })
	if err != nil || v != "run 100" {
		t.Fatalf("ReceiveMatch = %v, %v", v, err)
	}
	for _, w := range want {
		if w == "run 100" {
			continue
		}
		v, err := m.Receive(ctx)
		if err != nil || v != w {
			t.Fatalf("Receive = %v, %v; want %q", v, err, w)
		}
	}
	if got := m.Len(); got != 0 {
		t.Fatalf("Len after everything = %d, want 0", got)
	}
}

func TestPushEncodedRunOnClosedMailboxQueuesNothing(t *testing.T) {
	m := New()
	m.Close()
	if m.PushEncodedRun(stringDecoder, [][]byte{[]byte("a"), []byte("b")}) {
		t.Fatal("PushEncodedRun on a closed mailbox returned true")
	}
	if m.Len() != 0 {
		t.Fatalf("Len = %d, want 0", m.Len())
	}
}

func TestChunkClassesCoverMinToMax(t *testing.T) {
	if minChunk<<(chunkClasses-1) != maxChunk {
		t.Fatalf("%d classes from %d do not end at %d", chunkClasses, minChunk, maxChunk)
	}
	for _, tt := range []struct{ size, class int }{
		{minChunk, 0}, {2 * minChunk, 1}, {maxChunk, chunkClasses - 1},
		{minChunk - 1, -1}, {minChunk + 1, -1}, {2 * maxChunk, -1},
	} {
		if got := chunkClass(tt.size); got != tt.class {
			t.Errorf("chunkClass(%d) = %d, want %d", tt.size, got, tt.class)
		}
	}
}

// A closed mailbox with encoded messages still queued forgets them: Len is
// 0 and no chunk is held.
func TestCloseDropsQueuedEncodedMessages(t *testing.T) {
	m := New()
	run := make([][]byte, 64)
	for i := range run {
		run[i] = bytes.Repeat([]byte("y"), 1000)
	}
	for range 20 {
		m.PushEncodedRun(stringDecoder, run)
	}
	m.Close()
	if _, err := m.Receive(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive = %v, want ErrClosed", err)
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("Len after Close = %d, want 0", n)
	}
	in := m.inbox.Load()
	if in.w != nil || in.first.Load() != nil || m.rd.r != nil {
		t.Fatal("a closed mailbox still holds its chunks")
	}
}

// A request/reply owner parks after each message; whatever the message's
// size (up to a whole chunk), its chunk comes from a pool and goes back.
func TestEncodedRequestReplyDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	var value any = "decoded"
	dec := &Decoder{Decode: func([]byte) (any, error) { return value, nil }}
	for _, size := range []int{10, 246, 400, 4000, maxChunk - 32} {
		m := New()
		b := bytes.Repeat([]byte("m"), size)
		round := func() {
			m.PushEncoded(dec, b)
			_, _ = m.TryReceive()
			m.rewindInbox() // what the owner does before it parks
		}
		for range 100 {
			round()
		}
		if a := testing.AllocsPerRun(1000, round); a != 0 {
			t.Errorf("%d-byte messages: %v allocations per request, want 0", size, a)
		}
	}
}

// A model check, one goroutine playing producers and owner: random plain,
// encoded and run pushes (sizes across chunk boundaries, some undecodable),
// receives, selective receives and parks, against a plain slice. Pushes
// from one goroutine are ordered, so the mailbox must behave exactly as
// the slice.
func TestEncodedInboxMatchesAModel(t *testing.T) {
	dec := &Decoder{Decode: func(b []byte) (any, error) {
		if len(b) > 0 && b[0] == 'X' {
			return nil, errors.New("undecodable")
		}
		return string(b), nil
	}}
	for seed := range 100 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		m := New()
		var model []string // messages the owner will see, in order
		next := 0
		msg := func() string {
			next++
			size := []int{0, 1, 20, 240, 300, 1000, 5000, 17000}[rng.IntN(8)]
			s := fmt.Sprintf("%d:", next)
			return s + strings.Repeat("m", max(size-len(s), 0))
		}
		for step := range 400 {
			switch op := rng.IntN(10); {
			case op < 2:
				s := msg()
				m.Push(s)
				model = append(model, s)
			case op < 4:
				s := msg()
				if rng.IntN(8) == 0 {
					m.PushEncoded(dec, []byte("X"+s)) // dropped at receive
				} else {
					m.PushEncoded(dec, []byte(s))
					model = append(model, s)
				}
			case op < 5 && rng.IntN(3) == 0:
				// The owner's own message (read inline): held when
				// nothing is queued before it, else queued; either way
				// after everything pushed so far.
				s := msg()
				m.PushEncodedOwn(dec, []byte(s))
				model = append(model, s)
			case op < 5:
				var run [][]byte
				for range 1 + rng.IntN(100) {
					s := msg()
					run = append(run, []byte(s))
					model = append(model, s)
				}
				m.PushEncodedRun(dec, run)
			case op < 8:
				v, ok := m.TryReceive()
				if len(model) == 0 {
					if ok {
						t.Fatalf("seed %d step %d: got %.12q from an empty mailbox", seed, step, v)
					}
					continue
				}
				if !ok || v != model[0] {
					t.Fatalf("seed %d step %d: TryReceive = %.12q, %v; want %.12q", seed, step, v, ok, model[0])
				}
				model = model[1:]
			case op < 9:
				if len(model) == 0 {
					continue
				}
				i := rng.IntN(len(model))
				want := model[i]
				// The message is queued already: the deadline only turns a
				// lost message into a failure instead of a hang.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				v, err := m.ReceiveMatch(ctx, func(v any) bool { return v == want })
				cancel()
				if err != nil || v != want {
					t.Fatalf("seed %d step %d: ReceiveMatch = %.12q, %v; want %.12q", seed, step, v, err, want)
				}
				model = append(model[:i:i], model[i+1:]...)
			default:
				if len(model) == 0 {
					m.rewindInbox() // what the owner does before it parks
				}
			}
		}
		for len(model) > 0 {
			v, ok := m.TryReceive()
			if !ok || v != model[0] {
				t.Fatalf("seed %d drain: TryReceive = %.12q, %v; want %.12q", seed, v, ok, model[0])
			}
			model = model[1:]
		}
		if v, ok := m.TryReceive(); ok {
			t.Fatalf("seed %d: an extra message %.12q", seed, v)
		}
	}
}

func TestOwnedEncodedMessagesAreDecodedByTheOwnerInOrder(t *testing.T) {
	errBad := errors.New("bad message")
	var dropped []error
	decoded := 0
	dec := &Decoder{
		Decode: func(b []byte) (any, error) {
			decoded++
			if string(b) == "bad" {
				return nil, errBad
			}
			return string(b), nil
		},
		Dropped: func(err error) { dropped = append(dropped, err) },
	}
	m := New()
	big := strings.Repeat("x", 3*maxChunk)
	m.Push("plain 1")
	m.PushEncodedRun(dec, [][]byte{[]byte("run a"), []byte("run b")})
	if !m.PushEncodedOwned(dec, []byte(big)) {
		t.Fatal("PushEncodedOwned refused on an open mailbox")
	}
	m.PushEncodedOwned(dec, []byte("bad"))
	m.PushEncoded(dec, []byte("after"))
	if decoded != 0 {
		t.Fatalf("%d messages decoded at push, want 0: decoding is the owner's", decoded)
	}
	if got := m.Len(); got != 6 {
		t.Fatalf("Len = %d, want 6", got)
	}
	ctx := watchdogCtx(t)
	for i, w := range []string{"plain 1", "run a", "run b", big, "after"} {
		v, err := m.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v != w {
			t.Fatalf("message %d: got %.20q, want %.20q", i, v, w)
		}
	}
	if len(dropped) != 1 || !errors.Is(dropped[0], errBad) {
		t.Fatalf("Dropped was told %v, want the one bad message", dropped)
	}
	m.Close()
	if m.PushEncodedOwned(dec, []byte("late")) {
		t.Fatal("PushEncodedOwned accepted on a closed mailbox")
	}
}

// A message with more of its run queued behind it is decoded with
// DecodeSlab and the owner's slab, the run's last with Decode; the slab
// is kept between decodes and dropped when the owner would park.
func TestDecodeSlabServesRunsAndIsDroppedAtPark(t *testing.T) {
	var slabbed, plain []string
	dec := &Decoder{
		Decode: func(b []byte) (any, error) { plain = append(plain, string(b)); return string(b), nil },
		DecodeSlab: func(b []byte, slab *[]byte) (any, error) {
			if *slab == nil {
				*slab = make([]byte, 64)
			}
			*slab = (*slab)[1:] // what a carve does: the slab moves on
			slabbed = append(slabbed, string(b))
			return string(b), nil
		},
	}
	m := New()
	m.PushEncodedRun(dec, [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	m.PushEncoded(dec, []byte("d")) // a run of one
	for _, w := range []string{"a", "b", "c", "d"} {
		if v, ok := m.TryReceive(); !ok || v != w {
			t.Fatalf("got %v, %v; want %q", v, ok, w)
		}
	}
	if fmt.Sprint(slabbed) != "[a b]" || fmt.Sprint(plain) != "[c d]" {
		t.Fatalf("DecodeSlab decoded %q, Decode %q; want [a b] and [c d]", slabbed, plain)
	}
	slab := m.inbox.Load().slab
	if len(*slab) != 62 {
		t.Fatalf("slab of %d bytes kept between decodes, want the 62 the decoder left", len(*slab))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := m.Receive(ctx); err == nil {
		t.Fatal("Receive on an empty mailbox returned a message")
	}
	if *slab != nil {
		t.Fatalf("the owner waited with a slab of %d bytes, want none", len(*slab))
	}
}
