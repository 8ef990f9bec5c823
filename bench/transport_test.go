package bench

// Two-process transport benchmarks: this process sends, a peer process
// (bench/internal/transportpeer, built at the start of the run) receives.
// Each scenario runs over loop+TLS (package loop on both ends) and, in the
// same run, over the baseline: net.Conn + crypto/tls on both ends, one
// writer goroutine per connection fed through a queue, a 64 KiB bufio
// writer flushed when the queue runs empty.
//
//	go test -run '^$' -bench Transport -benchtime 2000000x ./bench/
//
// One-way reports msgs/s; ping-pong reports p50-us and p99-us per round
// trip. Compare loop against tls within one run (ratios), not across runs.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/tlsconn"
)

const transportItem = 64

func BenchmarkTransport(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "transportpeer")
	out, err := exec.Command("go", "build", "-o", bin, "./internal/transportpeer").CombinedOutput()
	if err != nil {
		b.Fatalf("building the peer: %v\n%s", err, out)
	}
	peers := map[string]string{}
	for _, p := range []struct{ name, mode, echo string }{
		{"loop-sink", "loop", "-echo=false"}, {"tls-sink", "tls", "-echo=false"},
		{"loop-echo", "loop", "-echo=true"}, {"tls-echo", "tls", "-echo=true"},
	} {
		peers[p.name] = startTransportPeer(b, bin, "-mode", p.mode, p.echo)
	}
	for _, conns := range []int{1, 50} {
		for _, senders := range []int{1, 2, 8} {
			name := fmt.Sprintf("oneway/conns=%d/senders=%d", conns, senders)
			b.Run(name+"/loop", func(b *testing.B) { onewayLoop(b, peers["loop-sink"], conns, senders) })
			b.Run(name+"/tls", func(b *testing.B) { onewayTLS(b, peers["tls-sink"], conns, senders) })
		}
	}
	b.Run("pingpong/loop", func(b *testing.B) { pingpongLoop(b, peers["loop-echo"]) })
	b.Run("pingpong/tls", func(b *testing.B) { pingpongTLS(b, peers["tls-echo"]) })
	// Mixed ends: which side costs the latency.
	b.Run("pingpong/loop-to-tls", func(b *testing.B) { pingpongLoop(b, peers["tls-echo"]) })
	b.Run("pingpong/tls-to-loop", func(b *testing.B) { pingpongTLS(b, peers["loop-echo"]) })
}

// startTransportPeer runs the peer and returns its address; it stops when
// the benchmark ends (its stdin closes).
func startTransportPeer(b *testing.B, bin string, args ...string) string {
	return startPeerProcess(b, "ADDR ", bin, args...)
}

// startPeerProcess runs a peer program that announces itself with one line
// "<prefix><value>" on stdout, returns the value, and stops the program when
// the benchmark ends (by closing its stdin).
func startPeerProcess(b *testing.B, prefix, bin string, args ...string) string {
	b.Helper()
	v, _ := startPeerCmd(b, prefix, bin, args...)
	return v
}

// startPeerCmd is startPeerProcess, also returning the program's process
// ID (to read its CPU time).
func startPeerCmd(b *testing.B, prefix, bin string, args ...string) (string, int) {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("peer %s %v: %v", bin, args, err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
	if !ok {
		b.Fatalf("peer %s said %q", bin, line)
	}
	return v, cmd.Process.Pid
}

func transportFrame() []byte {
	f := binary.BigEndian.AppendUint32(nil, transportItem)
	return append(f, make([]byte, transportItem)...)
}

var transportMarker = []byte{0, 0, 0, 0}

// frameCounter is the client-side loop handler: it signals every frame
// (ping-pong) or only markers (one-way) on ch.
type frameCounter struct {
	ch      chan struct{}
	markers bool
}

func (h frameCounter) OnData(c *loop.Conn, b []byte) (int, error) {
	used := 0
	for len(b)-used >= 4 {
		n := int(binary.BigEndian.Uint32(b[used:]))
		if len(b)-used-4 < n {
			break
		}
		if !h.markers || n == 0 {
			h.ch <- struct{}{}
		}
		used += 4 + n
	}
	return used, nil
}

func (frameCounter) OnClose(*loop.Conn, error) {}

func dialLoop(b *testing.B, addr string, conns int, h frameCounter) (*loop.Engine, []*loop.Conn) {
	e, err := loop.New()
	if err != nil {
		b.Fatal(err)
	}
	cs := make([]*loop.Conn, conns)
	for i := range cs {
		c, err := e.Dial(context.Background(), addr, nil)
		if err != nil {
			b.Fatal(err)
		}
		c.SetHandler(h)
		c.Start()
		cs[i] = c
	}
	return e, cs
}

// splitSenders runs fn(sender, count) on senders goroutines sharing n items.
func splitSenders(n, senders int, fn func(s, count int)) {
	var wg sync.WaitGroup
	for s := range senders {
		count := n / senders
		if s == 0 {
			count += n % senders
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(s, count)
		}()
	}
	wg.Wait()
}

func onewayLoop(b *testing.B, addr string, conns, senders int) {
	acks := make(chan struct{}, conns)
	e, cs := dialLoop(b, addr, conns, frameCounter{ch: acks, markers: true})
	defer e.Close()
	item := transportFrame()
	ctx := context.Background()
	b.ResetTimer()
	splitSenders(b.N, senders, func(s, count int) {
		for k := range count {
			if err := cs[(s+k)%conns].Enqueue(ctx, item); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for _, c := range cs {
		if err := c.Enqueue(ctx, transportMarker); err != nil {
			b.Fatal(err)
		}
	}
	for range cs {
		<-acks
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// tlsBaselineConn is the baseline sender: a queue drained by one writer
// goroutine into a 64 KiB bufio.Writer, flushed when the queue is empty.
type tlsBaselineConn struct {
	tc    *tls.Conn
	queue chan [4 + transportItem]byte // the queue holds a copy of each item, as Enqueue does
	done  chan struct{}
}

func dialTLS(b *testing.B, addr string, onFrame func(n int)) *tlsBaselineConn {
	tc, err := tls.Dial("tcp", addr, tlsconn.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	if err := tc.Handshake(); err != nil {
		b.Fatal(err)
	}
	c := &tlsBaselineConn{tc: tc, queue: make(chan [4 + transportItem]byte, 8192), done: make(chan struct{})}
	go func() { // writer
		defer close(c.done)
		bw := bufio.NewWriterSize(tc, 64<<10)
		for {
			var f [4 + transportItem]byte
			var ok bool
			select {
			case f, ok = <-c.queue:
			default:
				if bw.Flush() != nil {
					return
				}
				f, ok = <-c.queue
			}
			if !ok {
				_ = bw.Flush()
				return
			}
			n := 4 + int(binary.BigEndian.Uint32(f[:4])) // a marker is 4 bytes
			if _, err := bw.Write(f[:n]); err != nil {
				return
			}
		}
	}()
	go func() { // reader
		br := bufio.NewReaderSize(tc, 64<<10)
		var hdr [4]byte
		buf := make([]byte, 1<<16)
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			n := int(binary.BigEndian.Uint32(hdr[:]))
			if _, err := io.ReadFull(br, buf[:n]); err != nil {
				return
			}
			onFrame(n)
		}
	}()
	return c
}

func (c *tlsBaselineConn) close() {
	close(c.queue)
	<-c.done
	_ = c.tc.Close()
}

func onewayTLS(b *testing.B, addr string, conns, senders int) {
	acks := make(chan struct{}, conns)
	cs := make([]*tlsBaselineConn, conns)
	for i := range cs {
		cs[i] = dialTLS(b, addr, func(n int) {
			if n == 0 {
				acks <- struct{}{}
			}
		})
	}
	defer func() {
		for _, c := range cs {
			c.close()
		}
	}()
	var item, marker [4 + transportItem]byte
	copy(item[:], transportFrame())
	b.ResetTimer()
	splitSenders(b.N, senders, func(s, count int) {
		for k := range count {
			cs[(s+k)%conns].queue <- item
		}
	})
	for _, c := range cs {
		c.queue <- marker
	}
	for range cs {
		<-acks
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func reportLatency(b *testing.B, lat []time.Duration) {
	var h latencyHist
	for _, d := range lat {
		h.Record(d)
	}
	h.Report(b)
}

func pingpongLoop(b *testing.B, addr string) {
	got := make(chan struct{}, 1)
	e, cs := dialLoop(b, addr, 1, frameCounter{ch: got})
	defer e.Close()
	c := cs[0]
	item := transportFrame()
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if err := c.Enqueue(ctx, item); err != nil {
			b.Fatal(err)
		}
		<-got
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	reportLatency(b, lat)
}

func pingpongTLS(b *testing.B, addr string) {
	tc, err := tls.Dial("tcp", addr, tlsconn.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close()
	bw := bufio.NewWriterSize(tc, 64<<10)
	br := bufio.NewReaderSize(tc, 64<<10)
	item := transportFrame()
	in := make([]byte, len(item))
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		_, _ = bw.Write(item)
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, in); err != nil {
			b.Fatal(errors.Join(err, errors.New("reading the echo")))
		}
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	reportLatency(b, lat)
}
