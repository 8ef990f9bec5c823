//go:build !linux

package loop

import "runtime"

// bulkThread keeps the calling goroutine, a bulk loop's, on its OS thread
// for the rest of its life (slice_linux.go says why); a scheduler slice of
// its own is asked for on Linux only.
func bulkThread() error {
	runtime.LockOSThread()
	return nil
}
