package node

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A link keeps the kernel's socket buffers while it carries small messages;
// once a large message's fragments arrive, the receiving side's socket
// gets WithSocketBuffers' short receive buffer (loop.Conn.ShortenReceive,
// called by OnData).
func TestFragmentsShortenTheReceivingSocketsBuffer(t *testing.T) {
	const recv = 96 << 10 // no socket here has it by default
	// shortSockets counts this process's sockets whose receive buffer is
	// the short one (Linux doubles SO_RCVBUF for its bookkeeping).
	shortSockets := func() int {
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range fds {
			fd, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(l, "socket:") {
				continue
			}
			if v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF); err == nil && v == 2*recv {
				n++
			}
		}
		return n
	}
	a := startNamed(t, "a", "c", WithSocketBuffers(recv, 24<<10))
	b := startNamed(t, "b", "c", WithSocketBuffers(recv, 24<<10))
	connect(t, a, b)
	got := make(chan int, 64)
	sink := b.SpawnFunc(func(p *Process) error {
		for {
			m, err := p.Receive(context.Background())
			if err != nil {
				return err
			}
			if bs, ok := m.([]byte); ok {
				got <- len(bs)
			} else {
				got <- 0
			}
		}
	})
	within(t, a, func(p *Process) error { return p.Send(sink, "small") })
	<-got
	if n := shortSockets(); n != 0 {
		t.Fatalf("%d sockets have the short receive buffer before any fragment", n)
	}
	big := make([]byte, 1<<20)
	eventually(t, "the receiving socket to get the short receive buffer", func() bool {
		within(t, a, func(p *Process) error { return p.Send(sink, big) })
		if n := <-got; n != len(big) {
			t.Fatalf("the sink got %d bytes, want %d", n, len(big))
		}
		return shortSockets() >= 1
	})
}
