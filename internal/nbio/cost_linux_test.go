//go:build linux

package nbio

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkSyscallCost prices the system calls a round trip makes beside
// its reads and writes (docs/latency.md): on a VM, where each is a trap to
// the hypervisor's kernel, they cost microseconds, not the ~100 ns of bare
// metal.
func BenchmarkSyscallCost(b *testing.B) {
	b.Run("getppid-raw", func(b *testing.B) {
		for b.Loop() {
			_, _, _ = unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
		}
	})
	b.Run("epoll_ctl-mod", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		fd := int(f.Fd())
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(ep)
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Fd: int32(fd), Events: unix.EPOLLIN}); err != nil {
			b.Fatal(err)
		}
		// What a holder does: input off when it takes a conn's duty, on
		// when it gives it back.
		events := [2]uint32{0, unix.EPOLLIN | unix.EPOLLPRI}
		for i := 0; b.Loop(); i++ {
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: events[i&1]}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
