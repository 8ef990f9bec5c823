package wire

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// Reassembled messages whose buffers are given back (ReleaseBuffer) come
// out whole from recycled buffers holding an earlier message's bytes, and
// a buffer's size stays within the budget charged for it.
func TestReassemblyFromReleasedBuffers(t *testing.T) {
	r := NewReassembler(ReassemblyLimits{})
	for i, fill := range []string{"a", "b", "c", "d"} {
		payload := bytes.Repeat([]byte(fill), 300_000+i*70_000)
		item := mustMessage(t, 3, 4, payload)
		var got []byte
		fr := NewFrameReader(0, 0)
		for _, it := range fragmentItems(t, uint64(i+1), item, DefaultFragmentSize-MaxFragmentOverhead) {
			if len(it) > DefaultFragmentSize {
				t.Fatalf("a fragment item of %d bytes, over %d", len(it), DefaultFragmentSize)
			}
			f, _, err := fr.Next(it)
			if err != nil {
				t.Fatal(err)
			}
			err = r.Feed(f, func(m Message) error {
				if !r.Owned() {
					t.Fatal("a reassembled message not handed over")
				}
				v, err := m.Decode(nil)
				if err != nil {
					return err
				}
				got = v.([]byte)
				ReleaseBuffer(m.Term)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if r.Used() > 2*entryCost+len(item)+bufUnit {
				t.Fatalf("charged %d bytes for a message of %d", r.Used(), len(item))
			}
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("message %d (%q) corrupted", i, fill)
		}
	}
	if r.Used() != 0 {
		t.Fatalf("%d bytes still charged", r.Used())
	}
}

func TestBufferSizes(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{1, 1}, {bufUnit - 1, bufUnit - 1}, {bufUnit, bufUnit}, {bufUnit + 1, 2 * bufUnit},
		{1_000_010, 16 * bufUnit}, {maxPooledBuf, maxPooledBuf}, {maxPooledBuf + 1, maxPooledBuf + 1},
	} {
		if got := cap(newBuffer(tc.n)); got != tc.want || bufferCap(tc.n) != tc.want {
			t.Errorf("newBuffer(%d): capacity %d, bufferCap %d; want %d", tc.n, got, bufferCap(tc.n), tc.want)
		}
	}
	ReleaseBuffer(make([]byte, 10, bufUnit+10)) // not a pool's size: ignored
	if b := newBuffer(bufUnit + 10); cap(b) != 2*bufUnit {
		t.Fatalf("capacity %d after a foreign buffer was released", cap(b))
	}
}

// A budget of the largest message plus ReassemblyOverhead, the least
// node.Start accepts, takes that message although its buffer's rounded
// size would not fit: the last growth is then exact.
func TestTheSmallestBudgetTakesTheLargestMessage(t *testing.T) {
	payload := bytes.Repeat([]byte("m"), 1_000_000)
	item := mustMessage(t, 3, 4, payload)
	var msg Message
	fr := NewFrameReader(0, 0)
	// The term's size: what a fragment header announces as the total.
	var total int
	items := fragmentItems(t, 1, item, DefaultFragmentSize-MaxFragmentOverhead)
	r0 := NewReassembler(ReassemblyLimits{})
	for _, it := range items {
		f, _, err := fr.Next(it)
		if err != nil {
			t.Fatal(err)
		}
		if err := r0.Feed(f, func(m Message) error { total = len(m.Term); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if bufferCap(total) == total {
		t.Fatalf("a total of %d needs no rounding: pick another size", total)
	}
	r := NewReassembler(ReassemblyLimits{MaxMessage: total, Budget: total + ReassemblyOverhead})
	for _, it := range items {
		f, _, err := fr.Next(it)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Feed(f, func(m Message) error { msg = m; return nil }); err != nil {
			t.Fatalf("the largest message in the smallest budget: %v", err)
		}
	}
	v, err := msg.Decode(nil)
	if err != nil || !bytes.Equal(v.([]byte), payload) {
		t.Fatalf("delivered %d bytes, err %v", len(msg.Term), err)
	}
}

// The pools hold at most maxPooledBytes, and what the GC drops from them
// leaves the count: buffers released past the cap are not kept, and an
// idle process's pools empty.
func TestPoolsStayWithinTheirCapAndEmptyWhenIdle(t *testing.T) {
	const size = 4 << 20
	for range 2 * maxPooledBytes / size {
		ReleaseBuffer(make([]byte, 0, size))
		if n := pooledBytes.Load(); n > maxPooledBytes {
			t.Fatalf("%d bytes pooled, over the cap of %d", n, maxPooledBytes)
		}
	}
	if n := pooledBytes.Load(); n == 0 {
		t.Fatal("nothing pooled after releasing twice the cap")
	}
	if b := newBuffer(size); cap(b) != size {
		t.Fatalf("a buffer taken from the pools: capacity %d, want %d", cap(b), size)
	}
	for i := 0; pooledBytes.Load() != 0; i++ {
		if i == 1000 {
			t.Fatalf("%d bytes still counted after %d collections", pooledBytes.Load(), i)
		}
		runtime.GC() // pools drop their items over two collections; cleanups run after
		time.Sleep(time.Millisecond)
	}
}
