package loop

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A bulk loop runs on an OS thread of its own at the kernel's longest
// scheduler slice, waiting in gnet's epoll_wait; a loop for small items
// keeps the default slice and its wait in Go's netpoller; and the bulk
// loop's thread ends with its engine: no goroutine run later in Go's pool
// of threads inherits the slice.
func TestBulkLoopsRunOnAThreadOfTheirOwnAtALongSlice(t *testing.T) {
	if !kernelTakesSlices(t) {
		t.Skip("this kernel keeps no scheduler slice per thread (Linux 6.12 and later do)")
	}
	sh := newFrameHandler(nil)
	srv, cli := namedEnginePair(t)
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) { c.SetHandler(sh); c.Start() })
	if err != nil {
		t.Fatal(err)
	}
	dial := func(bulk bool) *Conn {
		t.Helper()
		c, err := cli.Dial(context.Background(), addr.String(), "srv")
		if err != nil {
			t.Fatal(err)
		}
		if bulk {
			c.SetBulkOnly()
		}
		c.SetHandler(newFrameHandler(nil))
		c.Start()
		return c
	}
	type thread struct {
		tid   int
		slice uint64
	}
	// probe tells the thread c's loop runs on, and its slice.
	probe := func(c *Conn) thread {
		t.Helper()
		got := make(chan thread, 1)
		c.Execute(func() {
			a, err := unix.SchedGetAttr(0, 0)
			if err != nil {
				t.Error(err)
				got <- thread{}
				return
			}
			got <- thread{unix.Gettid(), a.Runtime}
		})
		select {
		case th := <-got:
			return th
		case <-time.After(20 * time.Second):
			t.Fatal("the loop did not run the probe")
			return thread{}
		}
	}
	small, bulk := dial(false), dial(true)
	b := probe(bulk)
	if b.slice != uint64(bulkSlice) {
		t.Errorf("the bulk loop's thread has a slice of %v, want %v", time.Duration(b.slice), bulkSlice)
	}
	if s := probe(small); s.slice == uint64(bulkSlice) {
		t.Errorf("the small items' loop runs at the bulk loops' slice")
	}
	// Locked, the bulk loop waits in gnet's epoll_wait, where it wakes on
	// its own thread; the small items' loop in Go's netpoller (idle.go).
	if bulk.ls.Load().idle.Load() != nil {
		t.Errorf("the bulk loop waits in Go's netpoller")
	}
	if small.ls.Load().idle.Load() == nil {
		t.Errorf("the small items' loop has no wait in Go's netpoller")
	}
	// Traffic both ways, then the bulk loop is still on its thread.
	for _, c := range []*Conn{small, bulk} {
		if _, err := c.EnqueueBulk(context.Background(), frame(nil, make([]byte, 256<<10))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "two frames", func() bool {
		n, _, _ := sh.count()
		return n == 2
	})
	if again := probe(bulk); again.tid != b.tid {
		t.Errorf("the bulk loop moved from thread %d to %d", b.tid, again.tid)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	// The thread ends once its loop's goroutine has (a moment after Close).
	eventually(t, 20*time.Second, "no thread of the process at the bulk loops' slice", func() bool {
		return len(threadsAtSlice(t, uint64(bulkSlice))) == 0
	})
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(b.tid)); err == nil && b.tid != os.Getpid() {
		t.Errorf("the bulk loop's thread %d outlived its engine", b.tid)
	}
}

// kernelTakesSlices reports whether the kernel keeps the scheduler slice a
// thread asks for: it asks for one on a thread of the test's, reads it
// back, and gives it back.
func kernelTakesSlices(t *testing.T) bool {
	t.Helper()
	ok := make(chan bool, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine
		a, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			ok <- false
			return
		}
		a.Size = unix.SizeofSchedAttr
		a.Runtime = uint64(bulkSlice)
		if err := unix.SchedSetAttr(0, a, 0); err != nil {
			ok <- false
			return
		}
		b, err := unix.SchedGetAttr(0, 0)
		ok <- err == nil && b.Runtime == uint64(bulkSlice)
	}()
	return <-ok
}

// threadsAtSlice lists the threads of the process whose scheduler slice is
// slice, but for the main thread: the runtime never ends it, and a locked
// goroutine that exits on it leaves it parked for good (runtime.mexit),
// where it runs no goroutine again.
func threadsAtSlice(t *testing.T, slice uint64) []int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var at []int
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil || tid == os.Getpid() {
			continue
		}
		if a, err := unix.SchedGetAttr(tid, 0); err == nil && a.Runtime == slice {
			at = append(at, tid)
		}
	}
	return at
}
