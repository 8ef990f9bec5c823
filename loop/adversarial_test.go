package loop

import (
	"bufio"
	"context"
	"crypto/rand"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// flood opens n connections to addr that do nothing (stall) and n that send
// random bytes (garbage). It returns a function closing them all.
func flood(t *testing.T, addr string, n int) func() {
	t.Helper()
	var conns []net.Conn
	for i := range 2 * n {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood dial %d: %v", i, err)
		}
		conns = append(conns, nc)
		if i%2 == 1 {
			junk := make([]byte, 4096)
			_, _ = rand.Read(junk)
			_, _ = nc.Write(junk)
		}
	}
	return func() {
		for _, nc := range conns {
			_ = nc.Close()
		}
	}
}

func TestStalledAndGarbageConnectionsDoNotStopALiveLink(t *testing.T) {
	const hsTimeout = time.Second
	p := newPair(t, func(c *Conn, f []byte) { _ = c.Enqueue(context.Background(), frame(nil, f)) }, nil,
		WithHandshakeTimeout(hsTimeout), WithMaxPendingHandshakes(512), WithMaxPendingPerSource(512))
	srvAddr := p.cliConn.RemoteAddr().String()
	before := p.server.Stats()
	stop := flood(t, srvAddr, 100)
	defer stop()

	// N round trips while 200 handshakes hang or fail.
	const rounds = 300
	ping := frame(nil, []byte("ping"))
	for i := range rounds {
		if err := p.cliConn.Enqueue(context.Background(), ping); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "round trip", func() bool {
			n, _, _ := p.cliHandl.count()
			return n == i+1
		})
	}
	// Garbage fails TLS at once, the stalled ones are dropped at the
	// deadline: every one ends, as a failure or a timeout. (Random bytes
	// can start like a TLS record, about one connection in 4096: such a
	// one waits for the rest of its record and times out.)
	eventually(t, 30*hsTimeout, "flood dropped", func() bool {
		s := p.server.Stats()
		return s.PendingNow == 0 && s.TimedOut-before.TimedOut >= 90 && s.Failed-before.Failed >= 90 &&
			s.TimedOut-before.TimedOut+s.Failed-before.Failed >= 200
	})
	if s := p.server.Stats(); s.Handshakes != before.Handshakes {
		t.Fatalf("flood completed %d handshakes", s.Handshakes-before.Handshakes)
	}
}

func TestOpenSSLCompletesTLSThenIsDroppedAtTheDeadline(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: skipping the interop check")
	}
	const hsTimeout = time.Second
	srv, err := New(WithLoops(1), WithHook(nameHook("srv")), WithHandshakeTimeout(hsTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) { _ = c.Close(nil) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", addr.String(), "-tls1_3")
	stdin, err := cmd.StdinPipe() // kept open: s_client stays until the server drops it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	_ = cmd.Wait() // s_client exits once the server closes the connection
	if ctx.Err() != nil {
		t.Fatal("openssl was not dropped by the handshake deadline")
	}
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "TLSv1.3") {
		t.Fatalf("openssl did not negotiate TLS 1.3:\n%s", text)
	}
	// The handshake goroutine closes the socket before it counts the
	// timeout: wait for the count.
	eventually(t, 5*time.Second, "the timeout counted", func() bool { return srv.Stats().PendingNow == 0 })
	if s := srv.Stats(); s.TimedOut != 1 || s.Handshakes != 0 {
		t.Fatalf("stats %+v: want one timeout, no completed handshake", s)
	}
}

func TestGoroutinesStayFlatWith50Peers(t *testing.T) {
	srv, err := New(WithLoops(2), WithHook(nameHook("srv")))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := New(WithLoops(2), WithHook(nameHook("cli")))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var mu sync.Mutex
	var accepted []*Conn
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) {
		c.SetHandler(newFrameHandler(func(c *Conn, f []byte) { _ = c.Enqueue(context.Background(), frame(nil, f)) }))
		// Recorded before Start: once started, the echo (and the test's
		// count of accepted conns) may come before this callback returns.
		mu.Lock()
		accepted = append(accepted, c)
		mu.Unlock()
		c.Start()
	})
	if err != nil {
		t.Fatal(err)
	}
	dial := func() *frameHandler {
		c, err := cli.Dial(context.Background(), addr.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		h := newFrameHandler(nil)
		c.SetHandler(h)
		c.Start()
		if err := c.Enqueue(context.Background(), frame(nil, []byte("hi"))); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "echo", func() bool { n, _, _ := h.count(); return n == 1 })
		return h
	}
	dial()
	settle := func() int {
		eventually(t, 5*time.Second, "handshake goroutines to end", func() bool { return srv.Stats().PendingNow == 0 })
		// Give exited goroutines a moment to be reaped from the count.
		n := runtime.NumGoroutine()
		for range 50 {
			runtime.Gosched()
			n = min(n, runtime.NumGoroutine())
		}
		return n
	}
	base := settle()
	for range 49 {
		dial()
	}
	after := settle()
	if after-base > 3 {
		t.Fatalf("goroutines grew from %d to %d with 49 more peers", base, after)
	}
	mu.Lock()
	n := len(accepted)
	mu.Unlock()
	if n != 50 {
		t.Fatalf("accepted %d", n)
	}
}

func TestEnqueueDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	if meshDebug {
		t.Skip("the meshdebug build's checks allocate")
	}
	p := newPair(t, nil, nil, WithWaterMarks(64<<20, 32<<20))
	item := frame(nil, make([]byte, 64))
	ctx := context.Background()
	// Warm the pools with as many items as the measured run enqueues.
	for range 20000 {
		_ = p.cliConn.Enqueue(ctx, item)
	}
	eventually(t, 5*time.Second, "warm-up delivered", func() bool { return p.cliConn.Queued() == 0 })
	allocs := testing.AllocsPerRun(10000, func() {
		if err := p.cliConn.Enqueue(ctx, item); err != nil {
			t.Fatal(err)
		}
	})
	// A wake-up of an idle loop costs gnet one task node; with the loop busy
	// draining, most Enqueues find the conn already scheduled.
	if allocs != 0 {
		t.Fatalf("Enqueue: %.2f allocations per call, want 0", allocs)
	}
}
