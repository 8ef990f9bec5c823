package loop

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// takeAll drains q the way drainQueue does and returns the items in order.
func takeAll(q *sendQueue) [][]byte {
	var items [][]byte
	chunks := q.take(nil)
	for _, ch := range chunks {
		start := 0
		for _, end := range ch.ends {
			items = append(items, bytes.Clone(ch.b[start:end]))
			start = end
		}
		putChunk(ch)
	}
	return items
}

func TestSendQueueKeepsItemsWholeAndInOrderAcrossChunks(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int
	}{
		{"small items", []int{1, 64, 100, 7}},
		{"fills a chunk exactly", []int{chunkSize / 2, chunkSize / 2, 10}},
		{"item does not fit the rest of a chunk", []int{chunkSize - 10, 11, 5}},
		{"item larger than a chunk", []int{10, chunkSize + 1, 20}},
		{"several oversized in a row", []int{3 * chunkSize, 2*chunkSize + 5, 1}},
		{"many small ones spill into more chunks", repeat(300, 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q sendQueue
			var want [][]byte
			for i, n := range tt.sizes {
				item := bytes.Repeat([]byte{byte(i)}, n)
				want = append(want, item)
				q.push(item)
			}
			got := takeAll(&q)
			if len(got) != len(want) {
				t.Fatalf("took %d items, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("item %d: %d bytes, want %d bytes of %d", i, len(got[i]), len(want[i]), i)
				}
			}
			if rest := takeAll(&q); len(rest) != 0 {
				t.Fatalf("a second take returned %d items, want none", len(rest))
			}
		})
	}
}

func repeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func TestSendQueueOversizedChunkIsNotPooled(t *testing.T) {
	big := &chunk{b: make([]byte, 0, 2*chunkSize)}
	big.b = append(big.b, 1)
	putChunk(big)
	if len(big.b) != 1 {
		t.Fatal("putChunk reset an oversized chunk: it was pooled")
	}
}

// Producers push while a drainer takes: every item arrives once, and each
// producer's items arrive in the order it pushed them.
func TestSendQueueConcurrentProducersKeepPerProducerOrder(t *testing.T) {
	const producers, perProducer = 4, 20000
	var q sendQueue
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			item := make([]byte, 16+p*997%200)
			for i := range perProducer {
				binary.LittleEndian.PutUint32(item, uint32(p))
				binary.LittleEndian.PutUint32(item[4:], uint32(i))
				q.push(item)
			}
		}()
	}
	next := make([]int, producers)
	check := func(items [][]byte) error {
		for _, it := range items {
			p := binary.LittleEndian.Uint32(it)
			i := binary.LittleEndian.Uint32(it[4:])
			if int(i) != next[p] {
				return fmt.Errorf("producer %d: got item %d, want %d", p, i, next[p])
			}
			next[p]++
		}
		return nil
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		if err := check(takeAll(&q)); err != nil {
			t.Fatal(err)
		}
	}
	if err := check(takeAll(&q)); err != nil {
		t.Fatal(err)
	}
	for p, n := range next {
		if n != perProducer {
			t.Errorf("producer %d: %d items arrived, want %d", p, n, perProducer)
		}
	}
}

func TestSendQueueTakeBytesTakesWholeLeadingChunks(t *testing.T) {
	var q sendQueue
	for i := range 5 {
		if seq := q.push(bytes.Repeat([]byte{byte(i)}, chunkSize+1)); seq != uint64(i+1) { // one chunk each
			t.Fatalf("item %d got sequence number %d", i, seq)
		}
	}
	got, n, items := q.takeBytes(nil, 2*(chunkSize+1))
	if len(got) != 2 || n != 2*(chunkSize+1) || items != 2 || got[0].b[0] != 0 || got[1].b[0] != 1 {
		t.Fatalf("took %d chunks, %d bytes, %d items", len(got), n, items)
	}
	got, n, items = q.takeBytes(got[:0], 1) // less than a chunk: still one
	if len(got) != 1 || n != chunkSize+1 || items != 1 || got[0].b[0] != 2 {
		t.Fatalf("took %d chunks, %d bytes, %d items; want the next one", len(got), n, items)
	}
	// Small items share a chunk: a take counts each of them.
	var small sendQueue
	for i := range 3 {
		if seq := small.push([]byte{byte(i)}); seq != uint64(i+1) {
			t.Fatalf("small item %d got sequence number %d", i, seq)
		}
	}
	if got, n, items := small.takeBytes(nil, 1); len(got) != 1 || n != 3 || items != 3 {
		t.Fatalf("took %d chunks, %d bytes, %d items of one chunk; want 1, 3, 3", len(got), n, items)
	}
	rest := takeAll(&q)
	if len(rest) != 2 || rest[0][0] != 3 || rest[1][0] != 4 {
		t.Fatalf("left %d items", len(rest))
	}
	if got, n, _ = q.takeBytes(nil, 1<<20); len(got) != 0 || n != 0 {
		t.Fatalf("empty queue gave %d chunks", len(got))
	}
}

// pushAppend's items sit between push's in the order pushed, whole, and
// are counted; a failed, shrinking or panicking encoder queues nothing.
func TestSendQueuePushAppend(t *testing.T) {
	var q sendQueue
	var n atomic.Int64
	var want [][]byte
	appendItem := func(item []byte) {
		t.Helper()
		if _, err := q.pushAppend(len(item), &n, func(dst []byte) ([]byte, error) {
			return append(dst, item...), nil
		}); err != nil {
			t.Fatal(err)
		}
		want = append(want, item)
	}
	for i := range 3000 {
		item := bytes.Repeat([]byte{byte(i)}, 1+i%maxAppendItem)
		if i%3 == 0 {
			q.push(item)
			want = append(want, item)
			continue
		}
		appendItem(item)
	}
	boom := errors.New("boom")
	if _, err := q.pushAppend(10, &n, func(dst []byte) ([]byte, error) { return dst, boom }); !errors.Is(err, boom) {
		t.Fatalf("a failing encoder: %v, want its error", err)
	}
	if _, err := q.pushAppend(10, &n, func(dst []byte) ([]byte, error) { return dst, nil }); err != nil {
		t.Fatalf("an encoder that appends nothing: %v", err)
	}
	// An encoder that returns less than it was given would cut queued
	// items: refused, nothing changes.
	if _, err := q.pushAppend(10, &n, func(dst []byte) ([]byte, error) { return dst[:len(dst)/2], nil }); !errors.Is(err, errAppendShrank) {
		t.Fatalf("a shrinking encoder: %v, want errAppendShrank", err)
	}
	// A panicking one leaves the queue as it was, and unlocked.
	func() {
		defer func() { _ = recover() }()
		_, _ = q.pushAppend(10, &n, func(dst []byte) ([]byte, error) { panic("encoder") })
	}()
	if !q.mu.TryLock() {
		t.Fatal("a panicking encoder left the queue locked")
	}
	q.mu.Unlock()
	// An encoder that breaks its promise (more than max) costs a chunk of
	// another size, never a corrupt item.
	appendItem(bytes.Repeat([]byte{7}, chunkSize))
	appendItem([]byte("after"))
	var counted int64
	for i, item := range want {
		counted += int64(len(item))
		if i%3 == 0 && i < 3000 {
			counted -= int64(len(item)) // push's items are counted by Conn.push
		}
	}
	if got := n.Load(); got != counted {
		t.Fatalf("counted %d bytes, want %d", got, counted)
	}
	got := takeAll(&q)
	if len(got) != len(want) {
		t.Fatalf("took %d items, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("item %d: %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
	}
}

func TestEnqueueAppendRefusesAnOutOfRangeMax(t *testing.T) {
	var c Conn
	for _, max := range []int{0, -1, maxAppendItem + 1} {
		if err := c.EnqueueAppend(context.Background(), max, func(dst []byte) ([]byte, error) { return dst, nil }); err == nil {
			t.Errorf("max %d: no error", max)
		}
	}
}

// A bounded drain takes the urgent lane one quantum at a time (whole
// chunks), in order; with bulk items taken it takes every urgent item, so
// none pushed before them goes out after them.
func TestDrainQueueTakesTheUrgentLaneAQuantumAtATime(t *testing.T) {
	item := func(i int) []byte { return binary.BigEndian.AppendUint32(bytes.Repeat([]byte{'u'}, 96), uint32(i)) }
	fill := func(c *Conn, n int) []byte {
		var want []byte
		for i := range n {
			it := item(i)
			want = append(want, it...)
			c.queued.Add(int64(len(it)))
			c.q.push(it)
		}
		return want
	}
	n := 4 * drainQuantum / 100
	c := &Conn{drain: concatItems}
	want := fill(c, n)
	var s scratch
	var got []byte
	drains := 0
	for c.queued.Load() > 0 {
		plain := s.drainQueue(c, true, true)
		if len(plain) == 0 || len(plain) > drainQuantum {
			t.Fatalf("drain %d took %d bytes; want 1..%d", drains, len(plain), drainQuantum)
		}
		got = append(got, plain...)
		drains++
	}
	if !bytes.Equal(got, want) || drains < 4 {
		t.Fatalf("%d bounded drains gave %d bytes (in order: %v), want %d bytes in at least 4", drains, len(got), bytes.Equal(got, want), len(want))
	}

	c = &Conn{drain: concatItems}
	want = fill(c, n)
	bulk := []byte("bulk item")
	c.bulkQueued.Add(int64(len(bulk)))
	c.bulk.push(bulk)
	got = s.drainQueue(c, true, true)
	if !bytes.Equal(got, append(want, bulk...)) || c.queued.Load() != 0 || c.bulkQueued.Load() != 0 {
		t.Fatalf("a drain taking a bulk item took %d bytes, left %d urgent and %d bulk; want all %d urgent bytes, then the bulk item",
			len(got), c.queued.Load(), c.bulkQueued.Load(), len(want))
	}
}
