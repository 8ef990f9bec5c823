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

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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

	n, err := node.Start("bench@127.0.0.1:0", "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Connect(ctx, peerName); err != nil {
		b.Fatal(err)
	}
	for _, senders := range []int{1, 2, 8} {
		name := "oneway/senders=" + itoa(senders)
		b.Run(name+"/impl=mesh", func(b *testing.B) { onewayMesh(b, n, peerName, senders) })
		b.Run(name+"/impl=tls", func(b *testing.B) { onewayTLS(b, tlsSink, 1, senders) })
	}
	b.Run("pingpong/impl=mesh", func(b *testing.B) { pingpongMesh(b, n, peerName) })
	b.Run("pingpong/impl=tls", func(b *testing.B) { pingpongTLS(b, tlsEcho) })
	for _, spawners := range []int{1, 8} {
		b.Run("spawn/spawners="+itoa(spawners), func(b *testing.B) { spawnMesh(b, n, peerName, spawners) })
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
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
func pingpongMesh(b *testing.B, n *node.Node, peer string) {
	b.ReportAllocs()
	lat := make([]time.Duration, b.N)
	err := n.Run(context.Background(), func(p *node.Process) error {
		echo, err := p.Spawn(peer, "echo")
		if err != nil {
			return err
		}
		var msg any = codec.Tuple{p.Self(), payload64}
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			if err := p.Send(echo, msg); err != nil {
				return err
			}
			if _, err := p.Receive(context.Background()); err != nil {
				return err
			}
			lat[i] = time.Since(t0)
		}
		b.StopTimer()
		return p.Exit(echo, node.Kill)
	})
	if err != nil {
		b.Fatal(err)
	}
	reportLatency(b, lat)
}

// spawnMesh measures remote spawns (request, spawn, reply) of a process that
// returns at once, from spawners processes in parallel.
func spawnMesh(b *testing.B, n *node.Node, peer string, spawners int) {
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
