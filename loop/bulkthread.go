package loop

import "runtime"

// bulkThread keeps the calling goroutine, a bulk loop's, on its OS thread
// for the rest of its life. Called by the bulk loop itself at its first
// conn (OnOpen).
//
// Why: beside a stream, a small round trip's tail (its p99 in the
// head-of-line benchmark) was 3.7-6.8 ms with the bulk loops on Go's pool
// of threads and 2.3-2.6 ms in most rounds with each on a thread of its
// own, the stream no slower (docs/latency.md, "Head-of-line blocking: the
// bulk loop's thread, nineteenth session"). Why it helps was not
// measured; the likeliest reading is that the stream's encryption and
// decryption then run on kernel threads that do nothing else, which the
// kernel preempts for a small item's woken thread, rather than on
// whichever thread a small item's goroutine is readied to next.
//
// Locked, the loop waits in gnet's epoll_wait, not in Go's netpoller
// (idle.go says why).
//
// The goroutine never unlocks its thread: when the loop ends (the engine's
// Close) the runtime ends a thread whose goroutine exits locked (the main
// thread, which it never ends, it parks for good).
func bulkThread() { runtime.LockOSThread() }
