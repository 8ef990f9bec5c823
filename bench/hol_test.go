package bench

// Head-of-line blocking across processes: a small ping-pong between two
// nodes alone, then while another process of this node streams 1 MiB
// messages to the peer node over the same link. Reports the ping-pong's
// p50/p90/p99/p99.9 (µs, from a histogram) and, with the stream, the
// stream's bandwidth (MB/s) and its in-run baseline: a raw crypto/tls pipe
// to another process (bench/internal/transportpeer) moving the same bytes
// in 1 MiB frames right after (tls-MB/s; stream/tls is the ratio), and the
// ping's p99 with the stream over its p99 alone in the same run (p99/idle;
// the target is at most 2). The stream runs twice: from this node, whose
// large messages go on the link's companion connection (the default), and
// from a second node of this process that keeps one connection per link
// (impl=mesh-1conn: the lanes and short kernel queues alone).
//
//	go test -run '^$' -bench 'HeadOfLine' -benchtime 5000x -count 5 ./bench/
//
// MESH_BENCH_PINGDUMP=prefix writes each round trip's start and length
// (pingdump_test.go), to find the slowest in a scheduler or execution
// trace of the same run (bench/internal/latencyprobe/holsplit.py).

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/node"
	"github.com/meshrt/mesh/tlsconn"
)

func BenchmarkHeadOfLine(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "nodepeer")
	if out, err := exec.Command("go", "build", "-o", bin, "./internal/nodepeer").CombinedOutput(); err != nil {
		b.Fatalf("building the peer: %v\n%s", err, out)
	}
	tbin := filepath.Join(b.TempDir(), "transportpeer")
	if out, err := exec.Command("go", "build", "-o", tbin, "./internal/transportpeer").CombinedOutput(); err != nil {
		b.Fatalf("building the transport peer: %v\n%s", err, out)
	}
	// One raw peer answers pings (64-byte frames) and sinks 1 MiB frames.
	tlsSink := startTransportPeer(b, tbin, "-mode", "tls", "-echo", "-echo-max", "64")
	peerName := startNodePeer(b, bin)
	n := startConnectedNode(b, "hol", peerName)
	// n1 keeps each link one connection (no companion): the lanes alone.
	n1 := startConnectedNode(b, "hol1", peerName, node.WithBulkConnections(false))
	var idleP99 time.Duration
	b.Run("stream=none", func(b *testing.B) { idleP99 = pingpongMesh(b, n, peerName) })
	for _, v := range []struct {
		name string
		n    *node.Node
	}{{"stream=1MiB", n}, {"stream=1MiB/impl=mesh-1conn", n1}} {
		b.Run(v.name, func(b *testing.B) {
			stop, bytes := streamMesh(b, v.n, peerName, 1<<20)
			start := time.Now()
			p99 := pingpongMesh(b, v.n, peerName)
			elapsed := time.Since(start)
			stop()
			reportStreamRun(b, tlsSink, bytes.Load(), elapsed, p99, idleP99)
		})
	}
	var rawIdleP99 time.Duration
	b.Run("stream=none/impl=tls-2conn", func(b *testing.B) {
		rawIdleP99 = pingpongTLSHist(b, tlsSink)
	})
	b.Run("stream=1MiB/impl=tls-2conn", func(b *testing.B) {
		stop, bytes := streamTLSConn(b, tlsSink, 1<<20)
		start := time.Now()
		p99 := pingpongTLSHist(b, tlsSink)
		elapsed := time.Since(start)
		stop()
		reportStreamRun(b, tlsSink, bytes.Load(), elapsed, p99, rawIdleP99)
	})
}

// BenchmarkStream moves b.N 1 MiB messages from a process of this node to
// a sink on the peer node with nothing else on the link, then the same
// bytes in 1 MiB frames over a raw crypto/tls pipe to a raw peer process
// (the in-run baseline), and reports both rates, their ratio, and each
// side's CPU per MiB from /proc (Linux only): this process sends, the peer
// process receives. CPU per MiB is the figure to compare between builds:
// on a loaded machine the rate follows the load, the CPU per MiB much
// less.
//
//	go test -run '^$' -bench 'Stream$' -benchtime 1000x ./bench/
func BenchmarkStream(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "nodepeer")
	if out, err := exec.Command("go", "build", "-o", bin, "./internal/nodepeer").CombinedOutput(); err != nil {
		b.Fatalf("building the peer: %v\n%s", err, out)
	}
	tbin := filepath.Join(b.TempDir(), "transportpeer")
	if out, err := exec.Command("go", "build", "-o", tbin, "./internal/transportpeer").CombinedOutput(); err != nil {
		b.Fatalf("building the transport peer: %v\n%s", err, out)
	}
	tlsSink, tlsPID := startPeerCmd(b, "ADDR ", tbin, "-mode", "tls", "-echo=false")
	peerName, peerPID := startPeerCmd(b, "NAME ", bin, "-cookie", "bench")
	n := startConnectedNode(b, "stream", peerName)
	const size = 1 << 20
	b.Run("size=1MiB", func(b *testing.B) {
		msg := make([]byte, size)
		var mesh, raw streamCPU
		err := n.Run(context.Background(), func(p *node.Process) error {
			sink, err := p.Spawn(peerName, "sink", p.Self(), b.N)
			if err != nil {
				return err
			}
			b.ResetTimer()
			mesh.begin(peerPID)
			for range b.N {
				if err := p.Send(sink, msg); err != nil {
					return err
				}
			}
			_, err = p.ReceiveMatch(context.Background(), func(m any) bool { return m == "done" })
			mesh.end(peerPID)
			return err
		})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		raw.begin(tlsPID)
		streamTLS(b, tlsSink, int64(b.N)*size, size)
		raw.end(tlsPID)
		mib := float64(b.N) * size / (1 << 20)
		b.ReportMetric(mib*(1<<20)/mesh.wall.Seconds()/1e6, "stream-MB/s")
		b.ReportMetric(mib*(1<<20)/raw.wall.Seconds()/1e6, "tls-MB/s")
		b.ReportMetric(raw.wall.Seconds()/mesh.wall.Seconds(), "stream/tls")
		if mesh.ok && raw.ok {
			ms := func(d time.Duration) float64 { return float64(d) / 1e6 / mib }
			b.ReportMetric(ms(mesh.send), "send-ms/MiB")
			b.ReportMetric(ms(mesh.recv), "recv-ms/MiB")
			b.ReportMetric(ms(raw.send), "tls-send-ms/MiB")
			b.ReportMetric(ms(raw.recv), "tls-recv-ms/MiB")
			b.ReportMetric(float64(mesh.sendFlt)/mib, "send-faults/MiB")
			b.ReportMetric(float64(mesh.recvFlt)/mib, "recv-faults/MiB")
		}
	})
}

// streamCPU measures one stream: its wall time and the CPU time this
// process (the sender) and the receiving process used meanwhile.
type streamCPU struct {
	t0               time.Time
	send0, recv0     time.Duration
	sendF0, recvF0   int64
	wall, send, recv time.Duration
	sendFlt, recvFlt int64 // minor page faults
	ok               bool
}

func (s *streamCPU) begin(recvPID int) {
	var ok1, ok2 bool
	s.send0, s.sendF0, ok1 = processCPU(0)
	s.recv0, s.recvF0, ok2 = processCPU(recvPID)
	s.ok = ok1 && ok2
	s.t0 = time.Now()
}

func (s *streamCPU) end(recvPID int) {
	s.wall = time.Since(s.t0)
	send, sf, ok1 := processCPU(0)
	recv, rf, ok2 := processCPU(recvPID)
	s.ok = s.ok && ok1 && ok2
	s.send, s.recv = send-s.send0, recv-s.recv0
	s.sendFlt, s.recvFlt = sf-s.sendF0, rf-s.recvF0
}

// reportStreamRun reports a stream that moved bytes in elapsed beside a
// ping-pong: its MB/s, a raw crypto/tls stream's moving the same bytes to
// tlsSink right after it, their ratio, and the ping's p99 over idleP99
// (when known).
func reportStreamRun(b *testing.B, tlsSink string, moved int64, elapsed, p99, idleP99 time.Duration) {
	got := float64(moved) / elapsed.Seconds() / 1e6
	raw := float64(moved) / streamTLS(b, tlsSink, moved, 1<<20).Seconds() / 1e6
	b.ReportMetric(got, "stream-MB/s")
	b.ReportMetric(raw, "tls-MB/s")
	b.ReportMetric(got/raw, "stream/tls")
	if idleP99 > 0 {
		b.ReportMetric(float64(p99)/float64(idleP99), "p99/idle")
	}
}

// pingpongTLSHist runs b.N 64-byte round trips over a fresh crypto/tls
// connection to the transport peer (which echoes them), reports their
// quantiles and returns the p99.
func pingpongTLSHist(b *testing.B, addr string) time.Duration {
	b.Helper()
	tc, err := tls.Dial("tcp", addr, tlsconn.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close()
	item := transportFrame()
	in := make([]byte, len(item))
	var h latencyHist
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := tc.Write(item); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(tc, in); err != nil {
			b.Fatal(err)
		}
		h.Record(time.Since(t0))
	}
	b.StopTimer()
	h.Report(b)
	return h.Quantile(0.99)
}

// streamTLSConn starts a goroutine writing size-byte frames over a fresh
// crypto/tls connection to the transport peer's sink as fast as it takes
// them. stop ends it once the sink has read everything (the end marker's
// answer); sent counts the bytes of frames whose write returned.
func streamTLSConn(b *testing.B, addr string, size int) (stop func(), sent *atomic.Int64) {
	b.Helper()
	tc, err := tls.Dial("tcp", addr, tlsconn.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	if err := tc.Handshake(); err != nil {
		_ = tc.Close()
		b.Fatal(err)
	}
	sent = new(atomic.Int64)
	var quit atomic.Bool
	done := make(chan error, 1)
	go func() {
		frame := make([]byte, 4+size)
		binary.BigEndian.PutUint32(frame, uint32(size))
		for !quit.Load() {
			if _, err := tc.Write(frame); err != nil {
				done <- err
				return
			}
			sent.Add(int64(size))
		}
		var marker [4]byte
		if _, err := tc.Write(marker[:]); err != nil {
			done <- err
			return
		}
		_, err := io.ReadFull(tc, marker[:])
		done <- err
	}()
	for sent.Load() < int64(4*size) { // the stream is flowing
		time.Sleep(time.Millisecond)
	}
	return func() {
		quit.Store(true)
		if err := <-done; err != nil {
			b.Error(err)
		}
		_ = tc.Close()
	}, sent
}

// streamMesh starts a process of n sending size-byte messages to a sink on
// peer as fast as the link takes them. stop ends it (and the sink); sent
// counts the bytes whose Send returned.
func streamMesh(b *testing.B, n *node.Node, peer string, size int) (stop func(), sent *atomic.Int64) {
	b.Helper()
	sent = new(atomic.Int64)
	quit := make(chan struct{})
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- n.Run(context.Background(), func(p *node.Process) error {
			sink, err := p.Spawn(peer, "sink", p.Self(), 1<<62)
			if err != nil {
				close(ready)
				return err
			}
			close(ready)
			msg := make([]byte, size)
			for {
				select {
				case <-quit:
					return p.Exit(sink, node.Kill)
				default:
				}
				if err := p.Send(sink, msg); err != nil {
					return err
				}
				sent.Add(int64(size))
			}
		})
	}()
	<-ready
	for sent.Load() < int64(4*size) { // the stream is flowing
		time.Sleep(time.Millisecond)
	}
	return func() {
		close(quit)
		if err := <-done; err != nil {
			b.Error(err)
		}
	}, sent
}

// streamTLS moves total bytes (rounded up to whole frames) in size-byte
// frames over a fresh crypto/tls connection to the transport peer's sink and
// returns how long that took, until the sink acknowledged the end marker.
func streamTLS(b *testing.B, addr string, total int64, size int) time.Duration {
	b.Helper()
	tc, err := tls.Dial("tcp", addr, tlsconn.ClientConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Handshake(); err != nil {
		b.Fatal(err)
	}
	frame := make([]byte, 4+size)
	binary.BigEndian.PutUint32(frame, uint32(size))
	bw := bufio.NewWriterSize(tc, 64<<10)
	start := time.Now()
	for sent := int64(0); sent < total; sent += int64(size) {
		if _, err := bw.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	var marker [4]byte // a zero-length frame: the sink answers it
	if _, err := bw.Write(marker[:]); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(tc, marker[:]); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
