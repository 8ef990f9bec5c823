package loop

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// bulkSlice is the scheduler slice a bulk loop's thread asks for: the
// kernel's longest (it clamps sched_runtime to 100 ms). The default is
// about 3 ms on a few cores (1.4 ms on the 2-vCPU test machine).
const bulkSlice = 100 * time.Millisecond

// bulkThread keeps the calling goroutine, a bulk loop's, on its OS thread
// for the rest of its life and gives that thread a long scheduler slice
// (sched_setattr's sched_runtime for SCHED_OTHER, Linux 6.12 and later;
// earlier kernels take the call and ignore it). Called by the bulk loop
// itself at its first conn (OnOpen).
//
// Why: a stream's encryption and decryption run on the bulk loops, and on
// a machine whose cores they fill, a thread that wakes for a small item
// (a process's reply, the link's loop) waits for a core. Under EEVDF a
// waking task preempts the running one only if it is eligible and, while
// the running one is within the protected part of its slice, only if its
// own slice is shorter (the kernel's PREEMPT_SHORT). With the bulk loop on
// a thread of a long slice every ordinary thread that wakes has the
// shorter one: it gets the core at once, and the bulk loop takes its share
// later, in longer runs. A slice changes when a thread runs, not how much:
// its weight (niceness) is untouched, so the stream keeps its share of the
// CPU, and an unprivileged process may set and clear it (unlike a
// niceness raised and given back, which needs CAP_SYS_NICE).
//
// Locked, the loop waits in gnet's epoll_wait, not in Go's netpoller
// (idle.go says why).
//
// The goroutine never unlocks its thread: when the loop ends (the engine's
// Close) the runtime ends a thread whose goroutine exits locked, so the
// slice never reaches another goroutine through Go's pool of threads.
// The lock stays if the kernel refuses the slice (a seccomp filter, say):
// a thread of its own alone moved the small items' tail beside a stream
// too, if less (docs/latency.md, "Head-of-line blocking: the bulk loop's
// thread, nineteenth session").
func bulkThread() error {
	runtime.LockOSThread()
	a, err := unix.SchedGetAttr(0, 0)
	if err == nil {
		a.Size = unix.SizeofSchedAttr
		a.Runtime = uint64(bulkSlice)
		err = unix.SchedSetAttr(0, a, 0)
	}
	if err != nil {
		return fmt.Errorf("loop: sched_setattr: %w", err)
	}
	return nil
}
