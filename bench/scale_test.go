package bench

// Cluster scale: N nodes in this process, each joined to the first, then
// left idle. For each N it reports
//
//	mesh-s       time from the joins until every node lists the N-1 others
//	reg-p50-ms   time until a name registered on the last node is visible on
//	reg-p99-ms   a node (median and 99th percentile over the nodes)
//	join-p50-ms  the same for a group join on the last node
//	join-p99-ms
//	conns        connection ends (sum of every node's List; 2 per link)
//	heap-MiB     live heap the cluster added
//	goroutines   goroutines the cluster added
//	idle-cpu-%   CPU of the whole process over an idle window (ticks only), in
//	             percent of one core
//
// It is a tool, not a regression benchmark: one iteration per size, sizes
// and the idle window set by environment:
//
//	MESH_SCALE_NODES=10,25,50,100 MESH_SCALE_IDLE=10s \
//	  go test -run '^$' -bench 'MeshScale' -benchtime 1x -timeout 30m ./bench/
//
// The in-run baseline of idle-cpu-% is idle-cpu-base-%: the same window with
// no node running, measured first. A join the first node refuses (too many
// handshakes at once) is retried after 50-150 ms; with MESH_SCALE_SEEDS=1
// every node is also started with the first as its seed.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshrt/mesh/node"
)

func scaleSizes(b *testing.B) []int {
	s := os.Getenv("MESH_SCALE_NODES")
	if s == "" {
		s = "10,25,50,100"
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("MESH_SCALE_NODES=%q: want sizes of at least 2", s)
		}
		out = append(out, n)
	}
	return out
}

func scaleIdle(b *testing.B) time.Duration {
	s := os.Getenv("MESH_SCALE_IDLE")
	if s == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		b.Fatalf("MESH_SCALE_IDLE=%q: %v", s, err)
	}
	return d
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleCPU is the CPU the process uses over d, in percent of one core.
func idleCPU(b *testing.B, d time.Duration) float64 {
	c0, t0 := cpuTime(b), time.Now()
	time.Sleep(d)
	return 100 * float64(cpuTime(b)-c0) / float64(time.Since(t0))
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func BenchmarkMeshScale(b *testing.B) {
	idle := scaleIdle(b)
	base := idleCPU(b, idle)
	for _, n := range scaleSizes(b) {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for range b.N {
				meshScale(b, n, idle, base)
			}
		})
	}
}

func meshScale(b *testing.B, size int, idle time.Duration, base float64) {
	heap0, g0 := heapInUse(), runtime.NumGoroutine()
	nodes := make([]*node.Node, size)
	for i := range nodes {
		var opts []node.Option
		if i > 0 && os.Getenv("MESH_SCALE_SEEDS") != "" {
			opts = append(opts, node.WithSeeds(nodes[0].Self()))
		}
		n, err := node.Start(fmt.Sprintf("s%d@127.0.0.1:0", i), "scale", opts...)
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
	}
	defer func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = n.Stop(ctx)
			})
		}
		wg.Wait()
	}()

	// Every node joins the first at once; the mesh forms by gossip.
	start := time.Now()
	var wg sync.WaitGroup
	for _, n := range nodes[1:] {
		wg.Go(func() {
			// A join refused while the first node is flooded with
			// handshakes is tried again, as a program would.
			for try := 0; ; try++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := n.Connect(ctx, nodes[0].Self())
				cancel()
				if err == nil {
					return
				}
				if try == 20 {
					b.Logf("%s: join: %v", n.Self(), err)
					return
				}
				time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	deadline := start.Add(2 * time.Minute)
	for {
		full := 0
		worst := size
		for _, n := range nodes {
			l := len(n.List())
			if l == size-1 {
				full++
			}
			worst = min(worst, l)
		}
		if full == size {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no full mesh of %d after %v: %d nodes complete, the worst has %d of %d peers",
				size, time.Since(start), full, worst, size-1)
		}
		time.Sleep(time.Millisecond)
	}
	mesh := time.Since(start)

	// A registration on the last node, watched on every node.
	last := nodes[size-1]
	pid := last.SpawnFunc(func(p *node.Process) error { _, err := p.Receive(context.Background()); return err })
	seen := make([]time.Duration, size)
	regStart := time.Now()
	if err := last.Global().Register("scale-probe", pid); err != nil {
		b.Fatal(err)
	}
	for left := size; left > 0; {
		for i, n := range nodes {
			if seen[i] == 0 {
				if _, ok := n.Global().Whereis("scale-probe"); ok {
					seen[i] = max(time.Since(regStart), time.Nanosecond)
					left--
				}
			}
		}
		if time.Since(regStart) > time.Minute {
			b.Fatal("the registration did not reach every node in a minute")
		}
		runtime.Gosched()
	}
	slices.Sort(seen)

	// A group join on the last node, watched on every node.
	joined := make([]time.Duration, size)
	joinStart := time.Now()
	if err := last.Groups().Join("scale-probe", pid); err != nil {
		b.Fatal(err)
	}
	for left := size; left > 0; {
		for i, n := range nodes {
			if joined[i] == 0 && len(n.Groups().Members("scale-probe")) == 1 {
				joined[i] = max(time.Since(joinStart), time.Nanosecond)
				left--
			}
		}
		if time.Since(joinStart) > time.Minute {
			b.Fatal("the group join did not reach every node in a minute")
		}
		runtime.Gosched()
	}
	slices.Sort(joined)

	conns := 0
	for _, n := range nodes {
		conns += len(n.List())
	}
	heap := heapInUse()
	goroutines := runtime.NumGoroutine() - g0
	time.Sleep(time.Second) // let the last handshakes and gossip settle
	cpu := idleCPU(b, idle)

	b.ReportMetric(mesh.Seconds(), "mesh-s")
	b.ReportMetric(ms(seen[len(seen)/2]), "reg-p50-ms")
	b.ReportMetric(ms(seen[(len(seen)*99)/100]), "reg-p99-ms")
	b.ReportMetric(ms(joined[len(joined)/2]), "join-p50-ms")
	b.ReportMetric(ms(joined[(len(joined)*99)/100]), "join-p99-ms")
	b.ReportMetric(float64(conns), "conns")
	b.ReportMetric(float64(heap-min(heap, heap0))/(1<<20), "heap-MiB")
	b.ReportMetric(float64(goroutines), "goroutines")
	b.ReportMetric(cpu, "idle-cpu-%")
	b.ReportMetric(base, "idle-cpu-base-%")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
