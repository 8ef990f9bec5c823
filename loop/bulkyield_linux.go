package loop

import "golang.org/x/sys/unix"

// osYield gives the calling OS thread's core to a thread waiting for it
// (sched_yield(2)), raw: the call returns within microseconds, so the
// runtime need not hand the thread's P to another thread meanwhile (and
// the monitor thread is not woken for it). Any goroutine.
func osYield() { _, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
