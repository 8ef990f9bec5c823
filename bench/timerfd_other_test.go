//go:build !linux

package bench

import "time"

// kernelTimerLateness has no portable form: the lateness benchmark reports
// no kernel floor off Linux.
func kernelTimerLateness(time.Time, int, time.Duration) *latencyHist { return nil }
