//go:build linux && !race

package nbio

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The monitor's guard.
//
// The runtime's monitor thread (sysmon) preempts a goroutine that has run
// for more than 10 ms, but it stops looking once it finds every P idle:
// it then sleeps until the next timer, and only a system call through the
// runtime's syscall entry (or a stop-the-world) wakes it earlier. A
// goroutine readied by the netpoller is not such a wake-up. In a program
// whose reads go through package syscall, the readied goroutine's own
// read(2) is; here it is not, so a goroutine that computes after a raw
// read, with every P busy, ran on until the next timer of the program (a
// probe with GOMAXPROCS=1: 300 ms behind a 300-ms computation; 60 s when
// the next timer was a minute away, TestAGoroutineComputingAfterARawReadIsPreempted).
// Arming a timer at the read does not help: the monitor fixed the length
// of its sleep when it began it.
//
// So while raw calls are being made, a timer fires every guardEvery, and
// the monitor never sleeps past it: a goroutine computing after a raw read
// is preempted within about guardEvery plus the monitor's own 10-20 ms.
// The timer must be one in the runtime's timer heaps (an AfterFunc, or a
// channel timer somebody waits on: since Go 1.23 a channel timer nobody
// waits on is not in a heap, and the monitor does not see it).
//
// The guard stops once guardLinger fires passed without a raw call, so
// that an idle program is not woken for it, and the first raw call after
// that starts it again. A timer armed then does not shorten the sleep the
// monitor is already in, so the start also makes one system call through
// the runtime's syscall entry (getpid), which wakes the monitor; it then
// sees the timer. A start costs that wake-up and the timer's own
// (wakeNetPoller); the guard's period costs a fire and a wake-up of the
// monitor every guardEvery while it runs, for the whole process. A node
// with idle peers makes a raw call at its heartbeats and at each of its
// loops' idle waits, every 6.25 s by default: the linger, 2 s, lets the
// guard stop in between, and spares traffic with gaps of up to 2 s a start
// (two thread wake-ups) at each burst.
//
// Its price, measured (docs/latency.md): the p99 of a steady remote
// ping-pong about 10% higher than with no guard (the process's other
// round trips too), about the same at a period of 50 and 100 ms, so the
// period is chosen for the bound. Nothing turns the guard off, even where
// the p99 matters more than preemption after raw reads: the runtime's
// usual preemption is kept as the rule.

// The guard's period, and how many fires in a row without a raw call stop
// it: variables for the tests, read and set under guard.mu.
var (
	guardEvery  = 50 * time.Millisecond
	guardLinger = 40
)

var guard struct {
	touched atomic.Bool // a raw call since the last fire
	on      atomic.Bool // the timer runs

	mu     sync.Mutex // serializes start and fire
	idle   int        // fires in a row without a raw call (mu)
	starts int        // the guard's starts, for the tests (mu)
	t      *time.Timer
}

// touch notes a raw call, and starts the guard if it is stopped. Called
// after the call, so that a start's cost does not delay it. Any
// goroutine; two atomic loads when the guard runs.
func touch() {
	// touched before on, and the fire sets on before it reads touched:
	// a call racing the guard's stop either is seen by the fire, or sees
	// the guard stopped and starts it.
	if !guard.touched.Load() {
		guard.touched.Store(true)
	}
	if !guard.on.Load() {
		startGuard()
	}
}

func startGuard() {
	guard.mu.Lock()
	defer guard.mu.Unlock()
	if guard.on.Load() {
		return
	}
	guard.on.Store(true)
	guard.idle = 0
	guard.starts++
	if guard.t == nil {
		guard.t = time.AfterFunc(guardEvery, guardFire)
	} else {
		guard.t.Reset(guardEvery)
	}
	// Wake the monitor from a sleep begun before the timer was armed.
	syscall.Syscall(syscall.SYS_GETPID, 0, 0, 0)
}

// guardFire is the guard's timer function.
func guardFire() {
	guard.mu.Lock()
	defer guard.mu.Unlock()
	if guard.touched.Swap(false) {
		guard.idle = 0
	} else if guard.idle++; guard.idle >= guardLinger {
		guard.on.Store(false)
		if !guard.touched.Load() {
			return
		}
		guard.on.Store(true) // a raw call came as it stopped
		guard.idle = 0
	}
	guard.t.Reset(guardEvery)
}
