//go:build !linux

package loop

// osYield does nothing where the yield was not measured. Any goroutine.
func osYield() {}
