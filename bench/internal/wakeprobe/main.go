//go:build linux

// Command wakeprobe shows where the kernel runs the two ends of a TCP
// ping-pong between two processes, and what that costs, with no TLS and no
// Mesh in the way (docs/latency.md, "Where the kernel runs a round trip's
// threads"). The client (this process) starts a copy of itself as the echo,
// and times n round trips of 64 bytes over loopback. Each echo writes the
// number of the CPU it ran on into its reply, and the client counts the
// round trips whose reply it read on that same CPU: the share of wake-ups
// the kernel placed beside their waker.
//
//	go build -o /tmp/wp ./bench/internal/wakeprobe
//	/tmp/wp -n 20000 -wait net,ppoll,net,ppoll
//
// How each end waits for input (-wait, both ends alike):
//
//	net    a net.Conn read: the goroutine parks in Go's netpoller and the
//	       thread blocked in epoll_pwait runs it when input comes (a raw
//	       crypto/tls pipe waits so)
//	ppoll  the reading goroutine blocks its own thread in ppoll(2) on the
//	       socket, keeping its P (raw system calls, no runtime entry); the
//	       wait is cut every 10 ms so that the runtime can preempt it
//	block  a blocking read(2) through package syscall (the runtime's
//	       system-call entry) on a descriptor without O_NONBLOCK
//
// A run's layout, once formed, tends to last the whole run (both ends on
// one vCPU, or one each), so compare runs in turns, several of each.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	msgSize = 64
	warmUp  = 2000
)

func main() {
	n := flag.Int("n", 20000, "round trips per run")
	waits := flag.String("wait", "net,ppoll", "comma-separated runs: net, ppoll, block")
	peer := flag.String("peer", "", "internal: run as the echo, connected to this address")
	wait := flag.String("peer-wait", "", "internal: the echo's wait")
	flag.Parse()
	if *peer != "" {
		echo(*peer, *wait)
		return
	}
	for _, w := range strings.Split(*waits, ",") {
		if err := run(w, *n); err != nil {
			log.Fatalf("wakeprobe: %s: %v", w, err)
		}
	}
}

// run times n round trips against a fresh echo process waiting as w.
func run(w string, n int) error {
	if _, err := waiter(w); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	cmd := exec.Command(os.Args[0], "-peer", ln.Addr().String(), "-peer-wait", w)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	end, err := open(c, w)
	if err != nil {
		return err
	}
	b := make([]byte, msgSize)
	lat := make([]time.Duration, 0, n)
	same := 0
	for i := range n + warmUp {
		t := time.Now()
		if err := end.write(b); err != nil {
			return err
		}
		if err := end.readFull(b); err != nil {
			return err
		}
		d := time.Since(t)
		if i >= warmUp {
			lat = append(lat, d)
			if int(b[0]) == cpu() {
				same++
			}
		}
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	fmt.Printf("%-6s n=%d p50=%.1fus p90=%.1f p99=%.1f same-cpu=%.1f%%\n",
		w, n, q(0.50), q(0.90), q(0.99), 100*float64(same)/float64(n))
	return nil
}

// echo answers every 64 bytes from addr with 64 bytes, the first of them
// the number of the CPU it ran on.
func echo(addr, w string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	end, err := open(c, w)
	if err != nil {
		log.Fatal(err)
	}
	b := make([]byte, msgSize)
	for {
		if err := end.readFull(b); err != nil {
			return // the client is done
		}
		b[0] = byte(cpu())
		if err := end.write(b); err != nil {
			return
		}
	}
}

// An end is one side's socket, read by its wait.
type end struct {
	c    net.Conn
	fd   int  // a duplicate of c's socket (ppoll, block)
	raw  bool // fd's reads and writes are raw system calls (ppoll)
	read func([]byte) (int, error)
}

func waiter(w string) (func(*end) func([]byte) (int, error), error) {
	switch w {
	case "net":
		return func(e *end) func([]byte) (int, error) { return e.c.Read }, nil
	case "ppoll":
		return func(e *end) func([]byte) (int, error) { return e.readPoll }, nil
	case "block":
		return func(e *end) func([]byte) (int, error) { return e.readBlocking }, nil
	}
	return nil, fmt.Errorf("unknown wait %q (net, ppoll, block)", w)
}

func open(c net.Conn, w string) (*end, error) {
	mk, err := waiter(w)
	if err != nil {
		return nil, err
	}
	if err := c.(*net.TCPConn).SetNoDelay(true); err != nil {
		return nil, err
	}
	e := &end{c: c, fd: -1}
	if w != "net" {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return nil, err
		}
		var derr error
		if err := rc.Control(func(fd uintptr) { e.fd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			return nil, err
		}
		if derr != nil {
			return nil, derr
		}
		// A duplicate shares its file's O_NONBLOCK: block clears it for
		// both, and c is then only written through the duplicate.
		if err := unix.SetNonblock(e.fd, w != "block"); err != nil {
			return nil, err
		}
	}
	e.raw = w == "ppoll"
	e.read = mk(e)
	return e, nil
}

func (e *end) readFull(b []byte) error {
	for k := 0; k < len(b); {
		n, err := e.read(b[k:])
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("end of input")
		}
		k += n
	}
	return nil
}

func (e *end) write(b []byte) error {
	if e.fd < 0 {
		_, err := e.c.Write(b)
		return err
	}
	var n int
	var err error
	if e.raw {
		n, err = rawCall(unix.SYS_WRITE, e.fd, b)
	} else {
		n, err = unix.Write(e.fd, b)
	}
	if err == nil && n < len(b) {
		err = errors.New("short write")
	}
	return err
}

// readPoll reads e's socket, waiting in ppoll(2) with a raw system call.
func (e *end) readPoll(b []byte) (int, error) {
	fds := []unix.PollFd{{Fd: int32(e.fd), Events: unix.POLLIN}}
	ts := unix.NsecToTimespec(int64(10 * time.Millisecond))
	for {
		n, err := rawCall(unix.SYS_READ, e.fd, b)
		if err != unix.EAGAIN && err != unix.EINTR {
			return n, err
		}
		_, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1,
			uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if errno == unix.EINTR {
			runtime.Gosched() // a preemption request's signal: let it in
		}
	}
}

// readBlocking reads e's socket, which has no O_NONBLOCK.
func (e *end) readBlocking(b []byte) (int, error) {
	for {
		n, err := unix.Read(e.fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// cpu is the number of the CPU the calling thread runs on.
func cpu() int {
	var c, node uint32
	_, _, _ = unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&c)), uintptr(unsafe.Pointer(&node)), 0)
	return int(c)
}

// rawCall makes read(2) or write(2) (trap) of b on fd without the
// runtime's system-call entry, as Mesh's holders do (package nbio).
func rawCall(trap uintptr, fd int, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
