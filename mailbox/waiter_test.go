package mailbox

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestWaiterWakeBeforeAndAfterWait hands a value over through a Waiter
// whose Wake comes before the Wait, and one whose Wake comes while the
// owner waits, many times over, from more owners at once than the eventfd
// pool holds (the rest use the channel).
func TestWaiterWakeBeforeAndAfterWait(t *testing.T) {
	const owners, rounds = fdPoolMax + 20, 50
	var wg sync.WaitGroup
	errs := make(chan string, owners)
	for o := range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w Waiter
			for i := range rounds {
				var got int
				w.Arm()
				done := make(chan struct{})
				go func() {
					if (i+o)%2 == 0 {
						runtime.Gosched()
					}
					got = i
					w.Wake()
					close(done)
				}()
				if !w.Wait(time.Time{}) {
					errs <- "Wait without a deadline returned false"
					return
				}
				if got != i {
					errs <- "the waker's write is not visible after Wait"
					return
				}
				<-done
				w.Disarm()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestWaiterDeadline checks that Wait returns false at its deadline, that
// a Wake after it is taken by the next Wait, and that the eventfd goes back
// to the pool reading zero (the next wait is not ended by the old token).
func TestWaiterDeadline(t *testing.T) {
	var w Waiter
	w.Arm()
	if w.Wait(time.Now().Add(time.Millisecond)) {
		t.Fatal("Wait = true with no Wake")
	}
	w.Wake()
	if !w.Wait(time.Time{}) {
		t.Fatal("Wait after a late Wake = false")
	}
	w.Disarm()
	w.Arm()
	if w.Wait(time.Now().Add(time.Millisecond)) {
		t.Fatal("a new wait took an old token")
	}
	w.Disarm()
	// A past deadline.
	w.Arm()
	if w.Wait(time.Now().Add(-time.Second)) {
		t.Fatal("Wait with a past deadline = true")
	}
	w.Disarm()
}

// TestWaiterDisarmKeepKeepsItsEventfd checks that DisarmKeep ends a wait
// as Disarm does but keeps the Waiter's eventfd for its next Arm, out of
// the pool (no other Waiter gets it meanwhile), and that it reads zero:
// a late Wake's token was taken, and the next wait is not ended by it.
func TestWaiterDisarmKeepKeepsItsEventfd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the Waiter's eventfd: Linux only")
	}
	waitFDPoolRoom(&waiterFDs)
	var w Waiter
	w.Arm()
	fd := w.fd
	if fd == nil {
		t.Fatal("armed Waiter has no eventfd")
	}
	if w.Wait(time.Now().Add(time.Millisecond)) {
		t.Fatal("Wait = true with no Wake")
	}
	w.Wake()
	if !w.Wait(time.Time{}) {
		t.Fatal("Wait after a late Wake = false")
	}
	w.DisarmKeep()
	var other Waiter
	other.Arm()
	if other.fd == fd {
		t.Fatal("another Waiter got the kept eventfd")
	}
	other.Disarm()
	w.Arm()
	if w.fd != fd {
		t.Fatal("Arm after DisarmKeep took another eventfd")
	}
	if w.Wait(time.Now().Add(time.Millisecond)) {
		t.Fatal("a new wait took an old token")
	}
	w.Wake()
	if !w.Wait(time.Time{}) {
		t.Fatal("Wait after a Wake = false")
	}
	w.Disarm()
}

// TestWaiterUsesAnEventfd checks that an armed Waiter waits on an eventfd
// on Linux, and on its channel when none can be had.
func TestWaiterUsesAnEventfd(t *testing.T) {
	waitFDPoolRoom(&waiterFDs)
	var w Waiter
	w.Arm()
	defer w.Disarm()
	if runtime.GOOS == "linux" && w.fd == nil {
		t.Fatal("armed Waiter has no eventfd on Linux")
	}
	if runtime.GOOS != "linux" && w.ch == nil {
		t.Fatal("armed Waiter has no channel")
	}
}

// waitFDPoolRoom waits until p can hand out an eventfd: the ones earlier
// tests left to the pool may have been dropped by it (under the race
// detector sync.Pool drops some puts at random), and leave its count only
// once collected.
func waitFDPoolRoom(p *fdPool) {
	for i := 0; fdPoolMax > 0 && i < 500 && p.made.Load() >= fdPoolMax; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
