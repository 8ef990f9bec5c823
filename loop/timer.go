package loop

// Timers without a goroutine per connection: one goroutine per engine keeps
// a min-heap of deadlines and, when one is due, runs its function on the
// connection's loop (Conn.exec).
//
// Invariants:
//   - heap, Timer.idx and Timer.when are guarded by timers.mu (a leaf lock:
//     nothing else is taken while holding it, and fn never runs under it).
//   - idx < 0 means the timer is not in the heap (fired or stopped).

import (
	"container/heap"
	"sync"
	"time"
)

// Timer is a pending call made by [Conn.AfterFunc].
type Timer struct {
	t    *timers
	c    *Conn
	fn   func()
	when time.Time
	idx  int
}

// Stop cancels the timer. It reports whether the call was still pending;
// false means it already ran, is about to run, or was stopped. Safe from any
// goroutine.
func (t *Timer) Stop() bool {
	t.t.mu.Lock()
	defer t.t.mu.Unlock()
	if t.idx < 0 {
		return false
	}
	heap.Remove(&t.t.h, t.idx)
	return true
}

type timerHeap []*Timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

type timers struct {
	mu   sync.Mutex
	h    timerHeap
	wake chan struct{} // buffered(1): the earliest deadline changed
	done chan struct{} // closed to stop run
}

func (ts *timers) init() {
	ts.wake = make(chan struct{}, 1)
	ts.done = make(chan struct{})
}

func (ts *timers) add(c *Conn, d time.Duration, fn func()) *Timer {
	t := &Timer{t: ts, c: c, fn: fn, when: time.Now().Add(d), idx: -1}
	ts.mu.Lock()
	heap.Push(&ts.h, t)
	first := t.idx == 0
	ts.mu.Unlock()
	if first {
		select {
		case ts.wake <- struct{}{}:
		default:
		}
	}
	return t
}

// run is the engine's timer goroutine.
func (ts *timers) run() {
	tm := time.NewTimer(time.Hour)
	defer tm.Stop()
	var due []*Timer
	for {
		ts.mu.Lock()
		now := time.Now()
		for len(ts.h) > 0 && !ts.h[0].when.After(now) {
			due = append(due, heap.Pop(&ts.h).(*Timer))
		}
		wait := time.Hour
		if len(ts.h) > 0 {
			wait = ts.h[0].when.Sub(now)
		}
		ts.mu.Unlock()
		for i, t := range due {
			t.c.exec(t.fn)
			due[i] = nil
		}
		due = due[:0]
		tm.Reset(wait)
		select {
		case <-tm.C:
		case <-ts.wake:
		case <-ts.done:
			return
		}
	}
}
