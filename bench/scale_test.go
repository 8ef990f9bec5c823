package bench

// Cluster scale: N nodes in this process, each joined to the first, then
// left idle. For each N it reports
//
//	mesh-s       time from the joins until every node lists the N-1 others
//	form-cpu-s   CPU the process used meanwhile (on a shared machine the
//	             wall time is mostly waiting for a core; this is the work)
//	reg-p50-ms   time until a name registered on the last node is visible on
//	reg-p99-ms   a node (median and 99th percentile over the nodes)
//	join-p50-ms  the same for a group join on the last node
//	join-p99-ms
//	conns        connection ends (sum of every node's List; 2 per link)
//	heap-MiB     live heap the cluster added
//	goroutines   goroutines the cluster added
//	idle-cpu-%   CPU of the whole process over an idle window (ticks only), in
//	             percent of one core
//	fds          file descriptors the cluster holds once formed (1 per link end)
//	fds-peak     the most it held while forming (sampled every 10th poll)
//	hs-ok        handshakes that made a link, counted at both ends (2 per link)
//	hs-dup       handshakes refused as the duplicate of a crossing dial
//	hs-failed    handshakes that failed otherwise (timeouts, limits)
//
// It is a tool, not a regression benchmark: one iteration per size, sizes
// and the idle window set by environment:
//
//	MESH_SCALE_NODES=10,25,50,100 MESH_SCALE_IDLE=10s \
//	  go test -run '^$' -bench 'MeshScale' -benchtime 1x -timeout 30m ./bench/
//
// The in-run baseline of idle-cpu-% is idle-cpu-base-%: the same window with
// no node running, measured first. A join the first node refuses (too many
// handshakes at once) is retried with a capped exponential backoff, 100 ms
// to 2 s with jitter, as WithSeeds would; with MESH_SCALE_SEEDS=1
// every node is also started with the first as its seed. The nodes log at
// Warn (a peer-up line per link end would bury the output).
//
// MESH_SCALE_TICK=d starts the nodes with node.WithTickTimeout(d) (an idle
// cluster's CPU is its ticks: it scales with 1/d).
//
// MESH_SCALE_PROFILE=dir writes, for each size N, CPU profiles of the
// formation (dir/form-N.cpu, from the first join to the full mesh) and of the
// idle window (dir/idle-N.cpu), and a block profile of the formation
// (dir/form-N.block, every blocking event sampled).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// scaleTick is MESH_SCALE_TICK, the nodes' tick timeout (0: the default).
func scaleTick(b *testing.B) time.Duration {
	s := os.Getenv("MESH_SCALE_TICK")
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		b.Fatalf("MESH_SCALE_TICK=%q: %v", s, err)
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

// openFDs is the number of file descriptors the process holds (Linux).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

// profile starts a CPU profile written to MESH_SCALE_PROFILE/name, if that
// is set; the returned func stops it.
func profile(b *testing.B, name string) func() { return cpuProfile(b, "MESH_SCALE_PROFILE", name) }

// blockProfile samples every blocking event until the returned func writes
// them to MESH_SCALE_PROFILE/name, if that is set.
func blockProfile(b *testing.B, name string) func() {
	dir := os.Getenv("MESH_SCALE_PROFILE")
	if dir == "" {
		return func() {}
	}
	runtime.SetBlockProfileRate(1)
	return func() {
		runtime.SetBlockProfileRate(0)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("block").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// handshakes sums mesh_handshakes_total over the nodes by result: ok,
// duplicate, and every other result as failed (logged by result).
func handshakes(b *testing.B, g prometheus.Gatherer) map[string]float64 {
	out, failed := handshakeCounts(b, g)
	if len(failed) > 0 {
		b.Logf("failed handshakes by result: %v", failed)
	}
	return out
}

// handshakeCounts is handshakes' sums, and the failed ones by result.
func handshakeCounts(b *testing.B, g prometheus.Gatherer) (out, failed map[string]float64) {
	mfs, err := g.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out = map[string]float64{}
	failed = map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "mesh_handshakes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			result := "failed"
			for _, l := range m.GetLabel() {
				if l.GetName() != "result" {
					continue
				}
				if v := l.GetValue(); v == "ok" || v == "duplicate" {
					result = v
				} else {
					failed[v] += m.GetCounter().GetValue()
				}
			}
			out[result] += m.GetCounter().GetValue()
		}
	}
	return out, failed
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
	heap0, g0, fd0 := heapInUse(), runtime.NumGoroutine(), openFDs()
	tick := scaleTick(b)
	reg := prometheus.NewRegistry()
	quiet := quietLogger()
	nodes := make([]*node.Node, size)
	for i := range nodes {
		opts := []node.Option{node.WithLogger(quiet), node.WithMetrics(reg)}
		if tick > 0 {
			opts = append(opts, node.WithTickTimeout(tick))
		}
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
	stopCPU := profile(b, fmt.Sprintf("form-%d.cpu", size))
	stopBlock := blockProfile(b, fmt.Sprintf("form-%d.block", size))
	fdPeak := openFDs()
	cpu0 := cpuTime(b)
	start := time.Now()
	var wg sync.WaitGroup
	var joinsDone atomic.Int64
	stopTrace := scaleTrace(b, nodes, reg, start, cpu0, &joinsDone)
	for _, n := range nodes[1:] {
		wg.Go(func() {
			defer joinsDone.Add(1)
			// A join refused while the first node is flooded with
			// handshakes is tried again, backing off as a program
			// would (all the joins come from one address, 127.0.0.1,
			// over the first node's per-source handshake limit).
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
				d := min(100*time.Millisecond<<try, 2*time.Second)
				time.Sleep(d/2 + rand.N(d/2))
			}
		})
	}
	wg.Wait()
	// The poll looks only at the nodes not seen complete yet, then checks
	// them all once more (a node that lost a peer meanwhile goes back on
	// the list), every 1% of the time so far, at least 10 ms: a List of
	// every node every 10 ms cost 0.5 s of the 100-node formation's CPU.
	deadline := start.Add(2 * time.Minute)
	pending := slices.Clone(nodes)
	for poll := 0; ; poll++ {
		worst := size
		left := pending[:0]
		for _, n := range pending {
			if l := len(n.List()); l != size-1 {
				left = append(left, n)
				worst = min(worst, l)
			}
		}
		pending = left
		if poll%10 == 0 {
			fdPeak = max(fdPeak, openFDs())
		}
		if len(pending) == 0 {
			for _, n := range nodes {
				if len(n.List()) != size-1 {
					pending = append(pending, n)
				}
			}
			if len(pending) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("no full mesh of %d after %v: %d nodes complete, the worst has %d of %d peers",
				size, time.Since(start), size-len(pending), worst, size-1)
		}
		time.Sleep(max(10*time.Millisecond, time.Since(start)/100))
	}
	mesh := time.Since(start)
	formCPU := cpuTime(b) - cpu0
	stopTrace()
	stopCPU()
	stopBlock()

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
	// Return the formation's garbage to the OS now: the runtime's scavenger
	// would otherwise do it during the idle window, where it is not an
	// idle cost.
	debug.FreeOSMemory()
	fds := openFDs() - fd0
	hs := handshakes(b, reg)
	stopCPU = profile(b, fmt.Sprintf("idle-%d.cpu", size))
	cpu := idleCPU(b, idle)
	stopCPU()

	b.ReportMetric(mesh.Seconds(), "mesh-s")
	b.ReportMetric(formCPU.Seconds(), "form-cpu-s")
	b.ReportMetric(ms(seen[len(seen)/2]), "reg-p50-ms")
	b.ReportMetric(ms(seen[(len(seen)*99)/100]), "reg-p99-ms")
	b.ReportMetric(ms(joined[len(joined)/2]), "join-p50-ms")
	b.ReportMetric(ms(joined[(len(joined)*99)/100]), "join-p99-ms")
	b.ReportMetric(float64(conns), "conns")
	b.ReportMetric(float64(heap-min(heap, heap0))/(1<<20), "heap-MiB")
	b.ReportMetric(float64(goroutines), "goroutines")
	b.ReportMetric(cpu, "idle-cpu-%")
	b.ReportMetric(base, "idle-cpu-base-%")
	b.ReportMetric(float64(fds), "fds")
	b.ReportMetric(float64(fdPeak-fd0), "fds-peak")
	b.ReportMetric(hs["ok"], "hs-ok")
	b.ReportMetric(hs["duplicate"], "hs-dup")
	b.ReportMetric(hs["failed"], "hs-failed")
}

// scaleTrace logs, with MESH_SCALE_TRACE set, every 250 ms of the
// formation: the joins returned, the link ends up, the handshakes by result
// and the CPU used so far. The returned func stops it.
func scaleTrace(b *testing.B, nodes []*node.Node, reg prometheus.Gatherer, start time.Time, cpu0 time.Duration, joins *atomic.Int64) func() {
	if os.Getenv("MESH_SCALE_TRACE") == "" {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ends := 0
			for _, n := range nodes {
				ends += len(n.List())
			}
			hs, _ := handshakeCounts(b, reg)
			b.Logf("%6.2fs joins %3d ends %5d hs ok %5.0f dup %4.0f failed %4.0f cpu %5.2fs",
				time.Since(start).Seconds(), joins.Load(), ends, hs["ok"], hs["duplicate"], hs["failed"], (cpuTime(b) - cpu0).Seconds())
		}
	})
	return func() { close(done); wg.Wait() }
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
