//go:build !linux

package bench

import "time"

// processCPU has no portable form here (it reads /proc): the stream
// benchmark reports no CPU figures off Linux.
func processCPU(int) (time.Duration, int64, bool) { return 0, 0, false }
