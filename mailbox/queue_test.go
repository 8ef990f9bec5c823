package mailbox

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

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
	i, ok := q.claimSlot(s) // step P1 only
	if !ok {
		t.Fatal("claimSlot failed on an open tail segment")
	}
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
	atomic.StoreUint32(&s.slots[i].ready, 1) // step P3
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

// A segment that was filled, read and pooled is sealed: a stale producer
// that still holds it can claim no slot in it, and one that was sealed by
// rewind refuses claims the same way.
func TestQueuePooledSegmentRefusesStaleClaims(t *testing.T) {
	var q Queue[int]
	q.Push(0)
	full := q.tail.Load() // the first segment; full after the next pushes
	for i := 1; i <= segSize; i++ {
		q.Push(i)
	}
	if q.tail.Load() == full {
		t.Fatal("tail did not move off a full segment")
	}
	for i := range segSize {
		if v, ok := q.Pop(); !ok || v != i {
			t.Fatalf("Pop() = %d, %v; want %d", v, ok, i)
		}
	}
	if q.head == full {
		t.Fatal("consumer did not leave the read segment")
	}
	if c, ok := q.claimSlot(full); ok {
		t.Fatalf("stale claim on a pooled segment got slot %d", c)
	}
	if v, ok := q.Pop(); !ok || v != segSize {
		t.Fatalf("Pop() = %d, %v; want %d", v, ok, segSize)
	}
	sealed := q.head
	q.rewind()
	if q.tail.Load() != nil {
		t.Fatal("rewind of a drained queue kept its tail")
	}
	if c, ok := q.claimSlot(sealed); ok {
		t.Fatalf("stale claim on a sealed segment got slot %d", c)
	}
	// Reopened for another queue (as that queue's start or extend would),
	// the segment takes that queue's claims and refuses this one's.
	var other Queue[int]
	sealed.claim.Store(other.claimTag())
	if c, ok := q.claimSlot(sealed); ok {
		t.Fatalf("stale claim on a segment reused by another queue got slot %d", c)
	}
	if _, ok := other.claimSlot(sealed); !ok {
		t.Fatal("the queue that reopened the segment cannot claim in it")
	}
	sealed.claim.Store(segSize) // back to sealed, as if never handed out
	// The queue works on, through fresh or recycled segments.
	for i := range 3 * segSize {
		q.Push(i)
	}
	for i := range 3 * segSize {
		if v, ok := q.Pop(); !ok || v != i {
			t.Fatalf("after recycling: Pop() = %d, %v; want %d", v, ok, i)
		}
	}
}

// Len counts across segment boundaries and through rewinds.
func TestQueueLenAcrossSegments(t *testing.T) {
	var q Queue[int]
	steps := []struct {
		push, pop, want int
		rewind          bool
	}{
		{push: 3 * segSize, want: 3 * segSize},
		{pop: 2*segSize + 5, want: segSize - 5},
		{pop: segSize - 5, rewind: true, want: 0},
		{push: segSize + 1, want: segSize + 1},
		{pop: 1, want: segSize},
	}
	for i, st := range steps {
		for range st.push {
			q.Push(i)
		}
		for range st.pop {
			if _, ok := q.Pop(); !ok {
				t.Fatalf("step %d: Pop() = false", i)
			}
		}
		if st.rewind {
			q.rewind()
		}
		if n := q.Len(); n != st.want {
			t.Fatalf("step %d: Len() = %d, want %d", i, n, st.want)
		}
	}
}

// Several queues, each with many producers, run through many segments while
// each consumer pools its segment whenever it runs dry (as a parking owner
// does), so segments pass between the queues through the shared pool all the
// time. Producers yield between loading tail and claiming, so their pointer
// is often stale by the time they claim: the segment has been filled, read,
// pooled, or reinstalled meanwhile, in their queue or another. Nothing may be
// lost, duplicated, reordered per producer, or delivered to the wrong queue.
func TestQueueRecyclingWithStaleProducers(t *testing.T) {
	const queues, producers, per = 3, 12, 3000
	var qs [queues]Queue[uint64]
	var stale, foreign, claims atomic.Int64
	testHookClaim = func(q, s any) {
		// Mostly short yields; now and then a long one, long enough for the
		// segment to be filled, pooled and reused by another queue.
		switch n := claims.Add(1); {
		case n%53 == 0:
			for range 100 {
				runtime.Gosched()
			}
		case n%3 == 0:
			runtime.Gosched()
		}
		seg := s.(*segment[uint64])
		if q.(*Queue[uint64]).tail.Load() != seg {
			stale.Add(1)
		}
		for k := range qs {
			if q != &qs[k] && qs[k].tail.Load() == seg {
				foreign.Add(1)
			}
		}
	}
	t.Cleanup(func() { testHookClaim = nil })
	var wg sync.WaitGroup
	for k := range qs {
		for p := range producers {
			wg.Go(func() {
				for s := range per {
					qs[k].Push(encode(k*producers+p, s))
				}
			})
		}
	}
	deadline := time.Now().Add(watchdog)
	var consumers sync.WaitGroup
	for k := range qs {
		consumers.Go(func() {
			q := &qs[k]
			next := make([]int, producers) // next seq per producer of queue k
			for got, misses := 0, 0; got < producers*per; {
				v, ok := q.Pop()
				if !ok {
					if misses++; misses%1024 == 0 && time.Now().After(deadline) {
						t.Errorf("queue %d: received %d of %d values: the rest are lost", k, got, producers*per)
						return
					}
					q.rewind()
					runtime.Gosched()
					continue
				}
				p, s := decode(v)
				if p/producers != k {
					t.Errorf("queue %d received a value of queue %d", k, p/producers)
					return
				}
				if s != next[p%producers] {
					t.Errorf("queue %d producer %d: got seq %d, want %d (lost, duplicated or reordered)", k, p, s, next[p%producers])
					return
				}
				next[p%producers]++
				got++
			}
			if v, ok := q.Pop(); ok {
				t.Errorf("queue %d: extra value %x after all were received", k, v)
			}
		})
	}
	consumers.Wait()
	if t.Failed() {
		return
	}
	wg.Wait()
	t.Logf("%d of %d claims made through a stale tail pointer, %d through the tail of another queue",
		stale.Load(), claims.Load(), foreign.Load())
	if stale.Load() == 0 {
		t.Fatal("no claim went through a stale pointer: the test did not stress recycling")
	}
}

// Pop leaves a read slot's ready flag set (no atomic store on the read
// path); the flags a segment's use set are cleared when the consumer pools
// it, by Pop at its last slot and by rewind, so a reused segment never
// shows a slot of an earlier use as published.
func TestQueuePooledSegmentsHaveClearFlags(t *testing.T) {
	flagsClear := func(s *segment[int]) bool {
		for i := range s.slots {
			if atomic.LoadUint32(&s.slots[i].ready) != 0 {
				return false
			}
		}
		return true
	}
	var q Queue[int]
	q.Push(0)
	full := q.tail.Load()
	for i := 1; i < segSize+3; i++ {
		q.Push(i)
	}
	partial := q.tail.Load()
	for i := range segSize + 3 {
		if v, ok := q.Pop(); !ok || v != i {
			t.Fatalf("Pop() = %d, %v; want %d, true", v, ok, i)
		}
		if i == 1 && atomic.LoadUint32(&full.slots[0].ready) == 0 {
			t.Fatal("Pop cleared a read slot's flag")
		}
	}
	if !flagsClear(full) {
		t.Fatal("a segment pooled after its last slot was read kept a ready flag")
	}
	q.rewind()
	if q.tail.Load() != nil || !flagsClear(partial) {
		t.Fatal("rewind pooled its segment with a ready flag set (or kept it)")
	}
	// Reuse: whichever segments the pool gives back, only new pushes pop.
	for range 3 {
		q.Push(7)
		if v, ok := q.Pop(); !ok || v != 7 {
			t.Fatalf("Pop() after reuse = %d, %v", v, ok)
		}
		if v, ok := q.Pop(); ok {
			t.Fatalf("Pop() = %d, true on a drained queue (a stale flag)", v)
		}
		q.rewind()
	}
}

// extend and start open a segment from the pool without sealing it with
// their queue's tag first, and putSegment clears next only where it is
// set: every way into the pool must leave a segment sealed (count
// segSize) and unlinked, and a sealed segment must refuse a claim even
// when it carries the claiming queue's own tag from an earlier use (a
// stale producer of the same queue).
func TestPooledSegmentsAreSealed(t *testing.T) {
	type probe struct{ int }
	sealed := func(s *segment[probe]) bool { return s.claim.Load()&countMask == segSize }
	if s := segPool[probe]().New().(*segment[probe]); !sealed(s) {
		t.Fatal("a new segment is open")
	}
	var q Queue[probe]
	q.Push(probe{0})
	full := q.tail.Load()
	for i := 1; i < segSize+3; i++ {
		q.Push(probe{i})
	}
	partial := q.tail.Load()
	for range segSize + 3 {
		if _, ok := q.Pop(); !ok {
			t.Fatal("Pop() = false")
		}
	}
	if !sealed(full) || full.next.Load() != nil {
		t.Fatal("a segment pooled after its last slot was read is open or still linked")
	}
	q.rewind()
	if !sealed(partial) || partial.next.Load() != nil {
		t.Fatal("a segment pooled by rewind is open or linked")
	}
	for _, s := range []*segment[probe]{full, partial} {
		if w := s.claim.Load(); w&^countMask != q.tag.Load() {
			t.Fatalf("claim word %#x: not the queue's own tag %#x (the case under test)", w, q.tag.Load())
		}
		if _, ok := q.claimSlot(s); ok {
			t.Fatal("a pooled segment with the queue's own tag took a claim")
		}
	}
	// start's loser pools the segment it took unopened.
	q.Push(probe{1})
	q.start()
	if s := getSegment[probe](); !sealed(s) {
		t.Fatal("the pool gave an open segment")
	}
	if v, ok := q.Pop(); !ok || v.int != 1 {
		t.Fatalf("Pop() = %v, %v", v, ok)
	}
}
