package loop

// The loop's policy decisions as pure functions (each with a table test in
// policy_test.go): when the loop writes a conn's queue, waits for its
// socket or backs off, and when a sender writes directly.

import "time"

const (
	minRecheck = time.Millisecond
	maxRecheck = 32 * time.Millisecond
)

// socketWait: how long the loop leaves items queued when the socket was
// full at gnet's last write (gnet holds the rest and waits for the socket).
// Writing them now would only copy their ciphertext into gnet's buffer;
// after the wait they go out in one larger write, mostly straight into the
// socket. A socket buffer holds far more than this much traffic, so the
// wait does not let it run dry.
const socketWait = 100 * time.Microsecond

// maxSocketWaits: socket waits in a row with gnet's backlog not shrinking
// before the loop backs off (a backlog recheck).
const maxSocketWaits = 4

// directIdleGap: a sender that wins the drain token writes itself only if
// no drain ended for this long. A stream (the next push right after a
// drain) thus stays on the loop, where items batch; a lone message (a
// request, a ping) skips the loop's wake-up.
const directIdleGap = 5 * time.Microsecond

// directSpacing: at most one direct write per loop in this interval. Direct
// writes cost a TLS seal and a write(2) each; a sender spreading a stream
// over many connections finds every one of them idle, and without this
// bound paid a syscall per message (50 connections ran at 0.02x the
// baseline). Requests and pings, which are what direct writes are for, come
// far less often than this per loop.
const directSpacing = 20 * time.Microsecond

// bulkQuantum: the bytes one drain moves when both lanes have items (see
// bulkShare). Small, because whatever a drain hands the socket is ahead of
// the next small item (a drain takes at least one item, so a large
// message's 64 KiB fragments go one per drain; docs/latency.md has the
// figures).
const bulkQuantum = 32 << 10

// drainQuantum: the most bytes of the urgent lane one drain of the loop
// takes when it takes no bulk items (see urgentLimit); the rest waits for
// the next pass, right after. A stream of small items thus goes to the
// socket in pieces of a few chunks, each sealed and written before the
// next is taken, instead of in one seal of up to the high-water mark (2
// MiB) before its first byte reaches the socket: the receiver starts
// sooner, and each piece stays in the core's cache from the drain's copy
// to the socket's.
const drainQuantum = 256 << 10

// urgentLimit is how many bytes of the urgent lane a drain of the loop
// takes (whole chunks, at least one; 0: all of them), given whether it
// takes bulk items: drainQuantum, but all of them with bulk items, which
// must not go out ahead of an urgent item pushed before them (the lanes'
// order, conn.go).
func urgentLimit(bulkTaken bool) int {
	if bulkTaken {
		return 0
	}
	return drainQuantum
}

// canShortenReceive reports whether a socket holding unread bytes not yet
// read may have its receive buffer set to size (ShortenReceive): only while
// it holds under half of it, so the kernel need not prune what it holds or
// drop what arrives (on loopback a segment's memory is about twice its
// bytes).
func canShortenReceive(unread, size int) bool {
	return unread < size/2
}

// bulkShare is how many bytes of the bulk lane one drain takes, given the
// bytes of the urgent lane it takes (all of them): what bulkQuantum leaves
// after the urgent ones, and never less than a quarter of it, so a flood of
// small items does not starve bulk data. (The drain takes at least one bulk
// chunk whatever this says.) A small item thus waits behind at most about
// one quantum of bulk data in the queue, not behind all of it.
func bulkShare(urgent int) int {
	return max(bulkQuantum-urgent, bulkQuantum/4)
}

// flushAction is what the loop does with a conn it is asked to flush.
type flushAction int

const (
	flushNow   flushAction = iota // gnet's buffer is empty: drain and write
	waitSocket                    // the socket is full but draining: flush again after socketWait
	backOff                       // backed up: look again after recheckDelay
)

// socketWaits is the loop's memory of a full socket: the waits in a row
// without gnet's backlog shrinking, and the backlog at the last one.
type socketWaits struct {
	n       int
	backlog int
}

// flushPlan decides, from gnet's unsent bytes (backlog) and the high-water
// mark, whether to write now, wait for the socket, or back off. At or over
// high it backs off. Under it, a socket that is draining gets up to
// maxSocketWaits short waits in a row (the count restarts whenever the
// backlog shrank); one that stopped draining (the peer reads nothing) is
// backed off like a full one, so the loop does not wake every socketWait
// for as long as the peer stays silent.
func flushPlan(backlog int, high int64, w socketWaits) (flushAction, socketWaits) {
	switch {
	case int64(backlog) >= high:
		return backOff, w
	case backlog == 0:
		return flushNow, socketWaits{}
	}
	if backlog < w.backlog {
		w.n = 0
	}
	w.backlog = backlog
	if w.n < maxSocketWaits {
		w.n++
		return waitSocket, w
	}
	return backOff, w
}

// recheckDelay is the wait before the loop looks at a backed-up socket
// again (gnet does not report when its buffer drains), given the previous
// wait (0 for the first) and whether the backlog shrank since: minRecheck
// while it shrinks, doubling up to maxRecheck while the peer reads nothing.
func recheckDelay(prev time.Duration, shrank bool) time.Duration {
	if prev == 0 || shrank {
		return minRecheck
	}
	return min(2*prev, maxRecheck)
}

// directDue decides, for a conn whose direct writes are enabled and whose
// loop is not inside one of our callbacks, whether the sender that won the
// drain token writes itself (true) or wakes the loop: only when the conn's
// last drain ended at least directIdleGap ago (idleSince) and no direct
// write on this loop started in the last directSpacing (lastDirect).
// Times are monoNow values. A direct write does not set idleSince: the
// lastDirect it set rules out the conn's next one for longer
// (directFlush).
func directDue(now, idleSince, lastDirect int64) bool {
	return now-idleSince >= int64(directIdleGap) && now-lastDirect >= int64(directSpacing)
}
