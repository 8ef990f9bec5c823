//go:build linux && !race

package nbio

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// watchdog is how long a preemption test waits: 70 times the guard's
// bound, so that a busy machine does not fail it. A timer in the heap
// (the test waits on it) is also the longest the runtime's monitor can
// sleep in these tests.
const watchdog = 5 * time.Second

// A goroutine that computes right after a raw read, with every P busy, is
// still preempted: the runtime's monitor, which a raw read does not wake,
// must not sleep through it (guard_linux.go). The input comes from another
// OS process, so that nothing in this one makes a system call the runtime
// knows of between the wait and the computation.
func TestAGoroutineComputingAfterARawReadIsPreempted(t *testing.T) {
	computeAfterRawRead(t, 300*time.Millisecond)
}

// The same after the guard stopped for want of raw calls: the first raw
// call starts it again, and the monitor, asleep since before, learns of it.
func TestAGoroutineComputingAfterTheGuardRestartedIsPreempted(t *testing.T) {
	setGuard(t, 10*time.Millisecond, 2)
	computeAfterRawRead(t, 500*time.Millisecond) // the guard stops after 20 ms of it
}

func computeAfterRawRead(t *testing.T, after time.Duration) {
	t.Helper()
	if strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1") {
		t.Skip("asynchronous preemption is off")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to write from another process:", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(fds[0]), "r") // non-blocking: in Go's netpoller
	w := os.NewFile(uintptr(fds[1]), "w")
	defer r.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[1], false); err != nil {
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))

	var other atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 8)
		_ = rc.Read(func(fd uintptr) bool {
			_, err := Read(int(fd), buf)
			return err != unix.EAGAIN
		})
		go other.Store(true) // runnable, on the only P, behind this goroutine
		for !other.Load() {
		}
	}()
	cmd := exec.Command("sh", "-c", fmt.Sprintf("sleep %.3f; printf x", after.Seconds()))
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() { _ = cmd.Wait() }()
	wd := time.NewTimer(after + watchdog)
	defer wd.Stop()
	select {
	case <-done:
	case <-wd.C:
		<-done
		t.Fatalf("the computing goroutine ran on until the test's watchdog (%v) woke the runtime's monitor", watchdog)
	}
}

// A raw call starts the stopped guard, which stops again once none came
// for its linger.
func TestARawCallStartsTheGuardAndItStopsWhenIdle(t *testing.T) {
	setGuard(t, time.Millisecond, 3)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	waitStopped(t)
	before := starts()
	if _, err := Write(fds[1], []byte("x")); err != nil {
		t.Fatal(err)
	}
	if starts() != before+1 {
		t.Fatal("a raw write did not start the stopped guard")
	}
	waitStopped(t)
	if _, err := Read(fds[0], make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if starts() != before+2 {
		t.Fatal("a raw read did not start the stopped guard")
	}
	waitStopped(t)
}

// setGuard gives the guard another period and linger for the test.
func setGuard(t *testing.T, every time.Duration, linger int) {
	guard.mu.Lock()
	oldEvery, oldLinger := guardEvery, guardLinger
	guardEvery, guardLinger = every, linger
	guard.mu.Unlock()
	t.Cleanup(func() {
		guard.mu.Lock()
		guardEvery, guardLinger = oldEvery, oldLinger
		guard.mu.Unlock()
	})
}

func starts() int {
	guard.mu.Lock()
	defer guard.mu.Unlock()
	return guard.starts
}

// waitStopped waits until the guard has stopped (its linger is short in
// these tests).
func waitStopped(t *testing.T) {
	t.Helper()
	for i := 0; i < 10000 && guard.on.Load(); i++ {
		time.Sleep(time.Millisecond)
	}
	if guard.on.Load() {
		t.Fatal("the guard did not stop without raw calls")
	}
}
