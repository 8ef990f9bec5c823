//go:build linux && !race

package nbio

import (
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A goroutine that computes right after a raw read, with every P busy, is
// still preempted: the runtime's monitor, which a raw read does not wake,
// must not sleep through it (see the package doc). The input comes from
// another OS process, so that nothing in this one makes a system call the
// runtime knows of between the wait and the computation.
func TestAGoroutineComputingAfterARawReadIsPreempted(t *testing.T) {
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
	cmd := exec.Command("sh", "-c", "sleep 0.3; printf x")
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() { _ = cmd.Wait() }()
	watchdog := time.NewTimer(time.Minute) // wakes the monitor at the latest
	defer watchdog.Stop()
	select {
	case <-done:
	case <-watchdog.C:
		<-done
		t.Fatal("the computing goroutine ran on until the test's watchdog timer woke the runtime's monitor")
	}
}

// A raw call starts the guard, which stops once none came for its linger;
// the next raw call starts it again.
func TestARawCallStartsTheGuardAndItStopsWhenIdle(t *testing.T) {
	guard.mu.Lock()
	every, linger := guardEvery, guardLinger
	guardEvery, guardLinger = time.Millisecond, 3
	guard.mu.Unlock()
	defer func() {
		guard.mu.Lock()
		guardEvery, guardLinger = every, linger
		guard.mu.Unlock()
		touch() // back to the package's own period
	}()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	stopped := func() bool {
		for i := 0; i < 10000 && guard.on.Load(); i++ {
			time.Sleep(time.Millisecond)
		}
		return !guard.on.Load()
	}
	if _, err := Write(fds[1], []byte("x")); err != nil {
		t.Fatal(err)
	}
	if !guard.on.Load() {
		t.Fatal("a raw write did not start the guard")
	}
	if !stopped() {
		t.Fatal("the guard did not stop without raw calls")
	}
	if _, err := Read(fds[0], make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if !guard.on.Load() {
		t.Fatal("a raw read did not start the stopped guard again")
	}
	if !stopped() {
		t.Fatal("the restarted guard did not stop")
	}
}
