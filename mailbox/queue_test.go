package mailbox

import (
	"runtime"
	"strconv"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestQueueZeroValueIsEmpty(t *testing.T) {
	var q Queue[int]
	if !q.Empty() {
		t.Fatal("zero Queue: Empty() = false")
	}
	if v, ok := q.Pop(); ok {
		t.Fatalf("zero Queue: Pop() = %v, true", v)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("zero Queue: Len() = %d", n)
	}
}

func TestQueueSingleProducerFIFO(t *testing.T) {
	var q Queue[string]
	in := []string{"a", "b", "c", "d"}
	for _, s := range in {
		q.Push(s)
	}
	if n := q.Len(); n != len(in) {
		t.Fatalf("Len() = %d, want %d", n, len(in))
	}
	for _, want := range in {
		got, ok := q.Pop()
		if !ok || got != want {
			t.Fatalf("Pop() = %q, %v; want %q, true", got, ok, want)
		}
	}
	if _, ok := q.Pop(); ok || !q.Empty() || q.Len() != 0 {
		t.Fatal("queue not empty after popping everything")
	}
}

// Interleaved pushes and pops across drains, including rewinds to the stub,
// keep order.
func TestQueueInterleavedWithRewind(t *testing.T) {
	var q Queue[int]
	next, want := 0, 0
	for round := range 50 {
		for range round % 7 {
			q.Push(next)
			next++
		}
		for range round % 5 {
			if v, ok := q.Pop(); ok {
				if v != want {
					t.Fatalf("round %d: Pop() = %d, want %d", round, v, want)
				}
				want++
			}
		}
		q.rewind()
	}
	for {
		v, ok := q.Pop()
		if !ok {
			break
		}
		if v != want {
			t.Fatalf("drain: Pop() = %d, want %d", v, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("popped %d values, pushed %d", want, next)
	}
}

// A drained, rewound queue holds no segment, and works on afterwards.
func TestQueueRewindReleasesSegment(t *testing.T) {
	var q Queue[int]
	q.Push(1)
	q.Push(2)
	q.Pop()
	q.Pop()
	if q.head == nil {
		t.Fatal("no head segment after two pops; test does not exercise rewind")
	}
	q.rewind()
	if q.head != nil || q.tail.Load() != nil || q.first.Load() != nil {
		t.Fatal("rewind of a drained queue kept a segment")
	}
	q.Push(3)
	if v, ok := q.Pop(); !ok || v != 3 {
		t.Fatalf("after rewind Pop() = %d, %v", v, ok)
	}
}

// A Push whose claim is done but whose publish is not is reported as "not
// empty" by Empty even though Pop cannot take it yet, and rewind keeps the
// segment.
func TestQueueHalfDonePushIsNotEmpty(t *testing.T) {
	var q Queue[int]
	q.Push(1)
	if v, ok := q.Pop(); !ok || v != 1 {
		t.Fatalf("Pop() = %d, %v", v, ok)
	}
	s := q.tail.Load()
	i := s.claimed.Add(1) - 1 // step P1 only
	if _, ok := q.Pop(); ok {
		t.Fatal("Pop returned a value that is not published yet")
	}
	if q.Empty() {
		t.Fatal("Empty() = true during a half-done Push")
	}
	q.rewind()
	if q.tail.Load() != s {
		t.Fatal("rewind dropped a segment with a claimed, unpublished slot")
	}
	s.slots[i].val = 7
	s.slots[i].ready.Store(1) // step P3
	if v, ok := q.Pop(); !ok || v != 7 {
		t.Fatalf("Pop() after publish = %d, %v", v, ok)
	}
}

// encode packs a producer id and its sequence number into one value.
func encode(producer, seq int) uint64 { return uint64(producer)<<32 | uint64(seq) }

func decode(v uint64) (producer, seq int) { return int(v >> 32), int(v & 0xffffffff) }

// checker verifies a received stream: nothing duplicated and each producer's
// values in order (seq strictly increasing by one means no loss either).
type checker struct {
	next []int // next expected seq per producer
}

func newChecker(producers int) *checker { return &checker{next: make([]int, producers)} }

func (c *checker) see(t *testing.T, v uint64) {
	t.Helper()
	p, s := decode(v)
	if p >= len(c.next) {
		t.Fatalf("value from unknown producer %d", p)
	}
	if s != c.next[p] {
		t.Fatalf("producer %d: got seq %d, want %d (lost, duplicated or reordered)", p, s, c.next[p])
	}
	c.next[p]++
}

func (c *checker) done(t *testing.T, perProducer int) {
	t.Helper()
	for p, n := range c.next {
		if n != perProducer {
			t.Errorf("producer %d: received %d values, want %d", p, n, perProducer)
		}
	}
}

func TestQueueManyProducersNothingLostNothingDuplicatedPerProducerFIFO(t *testing.T) {
	for _, producers := range []int{1, 2, 8, 32} {
		t.Run("producers="+strconv.Itoa(producers), func(t *testing.T) {
			const per = 5000
			var q Queue[uint64]
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					for s := range per {
						q.Push(encode(p, s))
						if s%64 == 0 {
							runtime.Gosched()
						}
					}
				})
			}
			c := newChecker(producers)
			for got := 0; got < producers*per; {
				v, ok := q.Pop()
				if !ok {
					runtime.Gosched()
					continue
				}
				c.see(t, v)
				got++
			}
			wg.Wait()
			c.done(t, per)
			if _, ok := q.Pop(); ok {
				t.Fatal("extra value after all were received")
			}
		})
	}
}

func TestQueuePushPopDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	var q Queue[any]
	msg := any("a 64-byte message, boxed once, so only the queue's own cost counts..")
	for range 2048 { // warm the node pool
		q.Push(msg)
	}
	for range 2048 {
		q.Pop()
	}
	if a := testing.AllocsPerRun(1000, func() { q.Push(msg) }); a != 0 {
		t.Fatalf("Push: %v allocations per message, want 0", a)
	}
	for range 1001 {
		q.Pop()
	}
	allocs := testing.AllocsPerRun(1000, func() {
		q.Push(msg)
		q.Pop()
	})
	if allocs != 0 {
		t.Fatalf("Push+Pop: %v allocations per message, want 0", allocs)
	}
}
