//go:build !linux

package main

// cpu is -1 where the probe does not know the CPU: the layout is not
// reported.
func cpu() int { return -1 }
