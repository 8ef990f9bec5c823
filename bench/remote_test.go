package bench

// Two-process node benchmarks: this process runs a Mesh node that talks to
// a peer node in another OS process (bench/internal/nodepeer). Each
// scenario has its in-run baseline from transport_test.go: the same traffic
// over net.Conn + crypto/tls (one writer through a queue, 64 KiB bufio,
// flushed when the queue empties), against bench/internal/transportpeer.
//
//	go test -run '^$' -bench Remote -benchtime 2000000x ./bench/
//
// Compare impl=mesh with impl=tls within one run (ratios), not across runs.
//
// The load=busy scenarios run the same ping-pong and spawn with CPU burners
// beside them: MESH_BENCH_BURN processes (default 1, one core of the
// reference 2-core machine) each running `sh -c 'while :; do :; done'`,
// started before the scenario and killed after it, the mesh and the
// crypto/tls baseline alike. Ping-pongs report p50, p90, p99 and p99.9 of
// the round trip (µs) from a histogram.
//
//	go test -run '^$' -bench 'Remote/pingpong' -benchtime 20000x -count 5 ./bench/ | tee new.txt

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/meshrt/mesh/bench/internal/sockbuf"
	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

func BenchmarkRemote(b *testing.B) {
	dir := b.TempDir()
	build := func(pkg string) string {
		bin := filepath.Join(dir, filepath.Base(pkg))
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			b.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
		return bin
	}
	peerName := startNodePeer(b, build("./internal/nodepeer"))
	tbin := build("./internal/transportpeer")
	tlsSink := startTransportPeer(b, tbin, "-mode", "tls", "-echo=false")
	tlsEcho := startTransportPeer(b, tbin, "-mode", "tls", "-echo=true")

	n := startConnectedNode(b, "bench", peerName)
	for _, senders := range []int{1, 2, 8} {
		name := "oneway/senders=" + itoa(senders)
		b.Run(name+"/impl=mesh", func(b *testing.B) { onewayMesh(b, n, peerName, senders) })
		b.Run(name+"/impl=tls", func(b *testing.B) { onewayTLS(b, tlsSink, 1, senders) })
	}
	// Ping-pong and spawn, on the machine as it is (load=idle) and with the
	// burners running (load=busy), each beside its baseline.
	for _, busy := range []bool{false, true} {
		load := "load=idle/"
		if busy {
			load = "load=busy/"
		}
		burn := func(b *testing.B) {
			if busy {
				b.Cleanup(startBurners(b))
			}
		}
		b.Run("pingpong/"+load+"impl=mesh", func(b *testing.B) { burn(b); pingpongMesh(b, n, peerName) })
		b.Run("pingpong/"+load+"impl=tls", func(b *testing.B) { burn(b); pingpongTLS(b, tlsEcho) })
		for _, spawners := range []int{1, 8} {
			if busy && spawners > 1 {
				continue
			}
			b.Run("spawn/"+load+"spawners="+itoa(spawners), func(b *testing.B) {
				burn(b)
				spawnMesh(b, n, peerName, spawners)
			})
		}
	}
}

// startBurners starts the CPU burners of the load=busy scenarios (see the
// file comment) and returns the function that kills them.
func startBurners(b *testing.B) (stop func()) {
	b.Helper()
	count := 1
	if v := os.Getenv("MESH_BENCH_BURN"); v != "" {
		var err error
		if count, err = strconv.Atoi(v); err != nil || count < 0 {
			b.Fatalf("MESH_BENCH_BURN=%q: want a count of burner processes", v)
		}
	}
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		cmds = nil
	}
	for range count {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			stop()
			b.Fatalf("starting a burner: %v", err)
		}
		cmds = append(cmds, c)
	}
	return stop
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// startConnectedNode starts a node name@127.0.0.1 (cookie "bench") that
// stops with the benchmark, connected to the node peer peerName.
func startConnectedNode(b *testing.B, name, peerName string, extra ...node.Option) *node.Node {
	b.Helper()
	opts, err := sockbuf.Options()
	if err != nil {
		b.Fatal(err)
	}
	opts = append(append(opts, node.WithLogger(quietLogger())), extra...)
	n, err := node.Start(name+"@127.0.0.1:0", "bench", opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Connect(ctx, peerName); err != nil {
		b.Fatal(err)
	}
	return n
}

func startNodePeer(b *testing.B, bin string) string {
	return startPeerProcess(b, "NAME ", bin, "-cookie", "bench")
}

// onewayMesh streams b.N 64-byte string messages from senders processes to
// one sink process on the peer node, and waits for the sink's "done".
func onewayMesh(b *testing.B, n *node.Node, peer string, senders int) {
	b.ReportAllocs()
	err := n.Run(context.Background(), func(p *node.Process) error {
		sink, err := p.Spawn(peer, "sink", p.Self(), b.N)
		if err != nil {
			return err
		}
		b.ResetTimer()
		splitSenders(b.N, senders, func(_, count int) {
			err := n.Run(context.Background(), func(q *node.Process) error {
				for range count {
					if err := q.Send(sink, payload64); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Error(err)
			}
		})
		_, err = p.ReceiveMatch(context.Background(), func(m any) bool { return m == "done" })
		b.StopTimer()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// pingpongMesh measures round trips to an echo process on the peer node.
func pingpongMesh(b *testing.B, n *node.Node, peer string) (p99 time.Duration) {
	b.ReportAllocs()
	var h latencyHist
	err := n.Run(context.Background(), func(p *node.Process) error {
		echo, err := p.Spawn(peer, "echo")
		if err != nil {
			return err
		}
		var msg any = codec.Tuple{p.Self(), payload64}
		dump := newPingDump(b)
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			if err := p.Send(echo, msg); err != nil {
				return err
			}
			if _, err := p.Receive(context.Background()); err != nil {
				return err
			}
			d := time.Since(t0)
			h.Record(d)
			dump.record(t0, d)
		}
		b.StopTimer()
		dump.close()
		return p.Exit(echo, node.Kill)
	})
	if err != nil {
		b.Fatal(err)
	}
	h.Report(b)
	return h.Quantile(0.99)
}

// spawnMesh measures remote spawns (request, spawn, reply) of a process that
// returns at once, from spawners processes in parallel.
func spawnMesh(b *testing.B, n *node.Node, peer string, spawners int) {
	b.ReportAllocs()
	b.ResetTimer()
	splitSenders(b.N, spawners, func(_, count int) {
		err := n.Run(context.Background(), func(p *node.Process) error {
			for range count {
				if _, err := p.Spawn(peer, "noop"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Error(err)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "spawns/s")
}
