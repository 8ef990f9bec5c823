package wire

import (
	"bytes"
	"testing"
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
