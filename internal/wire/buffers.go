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
//     an idle node holds no buffers (after two collections).
//   - pooledBytes is the capacity of the buffers in the pools, at most
//     maxPooledBytes: a buffer that would take it past is left to the GC.
//     A buffer leaves the count when it is taken out (Get) or when the GC
//     drops it from its pool (its cleanup), whichever comes first: the
//     cleanup is stopped at Get. Without the cap a peer sending many
//     large messages of distinct sizes leaves one buffer per size class
//     pooled, memory outside every reassembly budget that raises the GC's
//     target (measured: 181 MiB after 20 sizes of 45-64 MiB, until two
//     collections, minutes on an idle node).

import (
	"runtime"
	"sync"
	"sync/atomic"
)

const (
	bufUnit        = 64 << 10
	maxPooledBuf   = 64 << 20
	maxPooledBytes = 64 << 20
)

var (
	bufPools    [maxPooledBuf / bufUnit]sync.Pool
	pooledBytes atomic.Int64
)

// pooled is a buffer in a pool, with the cleanup that uncounts it if the
// GC drops it there.
type pooled struct {
	b       []byte
	cleanup runtime.Cleanup
}

func uncount(n int) { pooledBytes.Add(-int64(n)) }

// newBuffer returns an empty buffer of capacity at least n: exactly n
// below bufUnit or above maxPooledBuf, else n rounded up to a multiple of
// bufUnit, recycled when one is pooled. A recycled buffer holds old bytes
// past its length. Safe from any goroutine.
func newBuffer(n int) []byte {
	if n < bufUnit || n > maxPooledBuf {
		return make([]byte, 0, n)
	}
	size := bufferCap(n)
	if p, _ := bufPools[size/bufUnit-1].Get().(*pooled); p != nil {
		p.cleanup.Stop()
		uncount(cap(p.b))
		return p.b[:0]
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
// size are ignored (left to the GC), and so is any buffer past the pools'
// total (maxPooledBytes). Safe from any goroutine.
func ReleaseBuffer(b []byte) {
	c := cap(b)
	if c < bufUnit || c > maxPooledBuf || c%bufUnit != 0 {
		return
	}
	if pooledBytes.Add(int64(c)) > maxPooledBytes {
		uncount(c)
		return
	}
	p := &pooled{b: b[:0]}
	p.cleanup = runtime.AddCleanup(p, uncount, c)
	bufPools[c/bufUnit-1].Put(p)
}
