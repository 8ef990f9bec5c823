package loop

// bulkYieldPeriod is how long a bulk loop goes between two yields of its
// OS thread (osYield) while it has bulk data to read or write.
//
// Why: on a machine whose cores are all busy with a stream (the bulk
// loops' encryption and decryption, the copies of the processes that make
// and take the large messages), a thread woken to carry a small message or
// its answer (a process waiting on its link, the netpoller's thread that
// finds the input) is queued by the kernel behind the running thread.
// Under Linux's EEVDF scheduler a wake-up preempts the running thread only
// when it finds that thread past the protected part of its slice (1.4 ms
// here); a wake-up that comes earlier waits for the next reschedule of
// that core, which the scheduler's tick makes (4 ms apart at HZ=250).
// That wait, two or three times a round trip, was the p99 of a small
// round trip beside a stream (docs/latency.md, "Head-of-line blocking:
// where a slow round trip waits"). A yield is a reschedule: a thread
// waiting for the core runs next, and the bulk loop after it; with
// nothing waiting it returns at once. Measured in turns against main: a
// yield after 500 µs of a run cut the p99 beside the stream 2-3x, and the
// stream paid 15-25% of its bandwidth in the same benchmark; a yield
// after every pass cut the p99 further and the stream by up to 5x.
const bulkYieldPeriod = 500 * 1000 // ns, of monoNow

// bulkYieldGap is the longest break between two passes of a bulk loop
// that still counts as one run: a longer one means the loop waited (or the
// kernel ran something else meanwhile), and its run starts again.
const bulkYieldGap = 200 * 1000 // ns, of monoNow

// yieldBulk is called by a bulk loop after each pass over a bulk-only
// conn (a read handed to the handler, a drain written), begun at start
// (monoNow): it yields the loop's OS thread once the loop has run for
// bulkYieldPeriod without a break. Loop only.
func (ls *loopState) yieldBulk(start int64) {
	if start-ls.lastPass > bulkYieldGap {
		ls.runStart = start // the loop was not running meanwhile
	}
	now := monoNow()
	ls.lastPass = now
	if now-ls.runStart < bulkYieldPeriod {
		return
	}
	ls.runStart = now
	osYield()
	ls.yields.Add(1)
}
