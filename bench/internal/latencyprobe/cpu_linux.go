//go:build linux

package main

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// cpu is the number of the CPU the calling thread runs on (getcpu(2), a
// raw system call: no runtime entry, as Mesh's own raw calls). Any
// goroutine.
func cpu() int {
	var c, node uint32
	_, _, errno := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&c)), uintptr(unsafe.Pointer(&node)), 0)
	if errno != 0 {
		return -1
	}
	return int(c)
}
