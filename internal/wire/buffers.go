package wire

// Reassembly buffers are recycled: a stream of large messages allocated
// one buffer per message and per growth step (1.3 MiB for each 1 MiB
// message), every one of them fresh memory the kernel had to fault in and
// zero, the GC to find and the scavenger to give back (a third of the
// receiving node's CPU in the head-of-line benchmark's profile;
// docs/latency.md). Buffers from 64 KiB to 64 MiB come in multiples of
// 64 KiB from one pool per size; whoever ends up owning a delivered
// buffer gives it back with ReleaseBuffer once nothing refers to it (a
// node's mailbox does, after decoding it).
//
// Invariants:
//   - A pooled buffer's capacity is a multiple of bufUnit in
//     [bufUnit, maxPooledBuf]; anything else is never pooled.
//   - A buffer in a pool is referred to by nobody else: ReleaseBuffer's
//     caller gives up every reference to it.
//   - Pools are sync.Pools: what the GC finds unused there is dropped, so
//     an idle node holds no buffers.

import "sync"

const (
	bufUnit      = 64 << 10
	maxPooledBuf = 64 << 20
)

var bufPools [maxPooledBuf / bufUnit]sync.Pool

// newBuffer returns an empty buffer of capacity at least n: exactly n
// below bufUnit or above maxPooledBuf, else n rounded up to a multiple of
// bufUnit, recycled when one is pooled. A recycled buffer holds old bytes
// past its length. Safe from any goroutine.
func newBuffer(n int) []byte {
	if n < bufUnit || n > maxPooledBuf {
		return make([]byte, 0, n)
	}
	size := bufferCap(n)
	if p, _ := bufPools[size/bufUnit-1].Get().(*[]byte); p != nil {
		return (*p)[:0]
	}
	return make([]byte, 0, size)
}

// bufferCap is the capacity newBuffer(n) returns.
func bufferCap(n int) int {
	if n < bufUnit || n > maxPooledBuf {
		return n
	}
	return (n + bufUnit - 1) / bufUnit * bufUnit
}

// ReleaseBuffer gives back a buffer a Reassembler delivered while Owned
// reported true (a reassembled message's Term), for a later reassembly to
// reuse. The caller must hold the only reference to b and to anything
// sliced from it, and must not use them afterwards. Buffers of any other
// size are ignored (left to the GC). Safe from any goroutine.
func ReleaseBuffer(b []byte) {
	c := cap(b)
	if c < bufUnit || c > maxPooledBuf || c%bufUnit != 0 {
		return
	}
	b = b[:0]
	bufPools[c/bufUnit-1].Put(&b)
}
