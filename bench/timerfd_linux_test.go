//go:build linux

package bench

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// kernelTimerLateness is the floor under BenchmarkSendAfter's lateness on
// this machine: one OS thread, locked, sleeping in a blocking read(2) of
// a timerfd until each of n deadlines spacing apart from start, and how
// late it wakes. No Go scheduler, no poller, no heap of timers: what the
// kernel (and, on a VM, the hypervisor waking a halted vCPU) adds alone.
// nil if the timerfd cannot be made.
func kernelTimerLateness(start time.Time, n int, spacing time.Duration) *latencyHist {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	var h latencyHist
	var buf [8]byte
	for i := range n {
		at := start.Add(time.Duration(i) * spacing)
		if d := time.Until(at); d > 0 {
			its := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
			if unix.TimerfdSettime(fd, 0, &its, nil) != nil {
				return nil
			}
			for {
				if _, err := unix.Read(fd, buf[:]); err != unix.EINTR {
					break
				}
			}
		}
		h.Record(time.Since(at))
	}
	return &h
}
