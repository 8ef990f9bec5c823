package bench

// Registry benchmarks. Each pair runs the registry and its baseline in the
// same run, so the ratio holds on a noisy machine:
//
//	go test -run '^$' -bench 'Global' -benchmem -count 6 ./bench/
//
// On real in-process nodes: VisibleEverywhere5 (Register until all five
// replicas show it, in units of a message round trip measured in the same
// run) and ConnectSync100k (a node joins one holding 100 000 names; baseline:
// the in-memory Merge of the same snapshot).
//
// Whereis: b.RunParallel readers with one writer goroutine registering and
// unregistering other names the whole time; baseline: a map behind a
// sync.RWMutex with the same writer. Merge: a 100 000-name snapshot merged
// into an empty replica; baseline: building a map of the same names.

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
	"github.com/meshrt/mesh/node"
)

type benchHost struct{ name string }

func (h benchHost) Self() string          { return h.name }
func (h benchHost) Broadcast([]byte)      {}
func (h benchHost) Connected(string) bool { return true }
func (h benchHost) Alive(codec.PID) bool  { return true }
func (h benchHost) Notify(codec.PID, any) {}

const selfNode = "self@127.0.0.1:7000"

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func pidOf(node string, i int) codec.PID {
	return codec.PID{Node: node, Incarnation: 1, ID: uint64(i) + 1}
}

// table is what both contenders hold: name → PID, plus a writer that churns
// other names.
type table interface {
	lookup(name string) (codec.PID, bool)
	put(name string, pid codec.PID)
	del(name string)
}

type registryTable struct{ r *global.Registry }

func (t registryTable) lookup(n string) (codec.PID, bool) { return t.r.Whereis(n) }
func (t registryTable) put(n string, p codec.PID)         { _ = t.r.Register(n, p) }
func (t registryTable) del(n string)                      { _ = t.r.Unregister(n) }

type rwTable struct {
	mu sync.RWMutex
	m  map[string]codec.PID
}

func (t *rwTable) lookup(n string) (codec.PID, bool) {
	t.mu.RLock()
	p, ok := t.m[n]
	t.mu.RUnlock()
	return p, ok
}
func (t *rwTable) put(n string, p codec.PID) { t.mu.Lock(); t.m[n] = p; t.mu.Unlock() }
func (t *rwTable) del(n string)              { t.mu.Lock(); delete(t.m, n); t.mu.Unlock() }

func BenchmarkGlobalWhereis(b *testing.B) {
	for _, size := range []int{1000, 100_000} {
		keys := names("svc", size)
		churn := names("churn", 1000)
		contenders := []struct {
			name string
			make func() table
		}{
			{"registry", func() table { return registryTable{&global.New(benchHost{selfNode}).Registry} }},
			{"rwmutex-map", func() table { return &rwTable{m: make(map[string]codec.PID)} }},
		}
		// writer: "busy" registers and unregisters back to back; "10k/s"
		// paces one registration or unregistration every 100µs.
		for _, pace := range []time.Duration{0, 100 * time.Microsecond} {
			for _, c := range contenders {
				wname := "busy"
				if pace > 0 {
					wname = "10k/s"
				}
				b.Run(fmt.Sprintf("names=%d/writer=%s/%s", size, wname, c.name), func(b *testing.B) {
					t := c.make()
					for i, k := range keys {
						t.put(k, pidOf(selfNode, i))
					}
					var stop atomic.Bool
					var writes atomic.Int64
					done := make(chan struct{})
					go func() {
						defer close(done)
						tick := time.Now()
						for i := 0; !stop.Load(); i++ {
							k := churn[i%len(churn)]
							if i/len(churn)%2 == 0 {
								t.put(k, pidOf(selfNode, size+i%len(churn)))
							} else {
								t.del(k)
							}
							writes.Add(1)
							if pace > 0 {
								tick = tick.Add(pace)
								for time.Now().Before(tick) && !stop.Load() {
									runtime.Gosched()
								}
							}
						}
					}()
					b.ReportAllocs()
					b.ResetTimer()
					start := time.Now()
					b.RunParallel(func(pb *testing.PB) {
						i := 0
						for pb.Next() {
							if _, ok := t.lookup(keys[i]); !ok {
								panic("lost " + keys[i])
							}
							i++
							if i == len(keys) {
								i = 0
							}
						}
					})
					elapsed := time.Since(start)
					b.StopTimer()
					stop.Store(true)
					<-done
					b.ReportMetric(float64(b.N)/elapsed.Seconds()/1e6, "Mlookups/s")
					b.ReportMetric(float64(writes.Load())/elapsed.Seconds(), "writes/s")
				})
			}
		}
	}
}

// snapshotOf returns a peer's 100 000-name snapshot frame.
func snapshotOf(peer string, n int) []byte {
	h := benchHost{peer}
	r := global.New(h)
	for i, k := range names("svc", n) {
		if err := r.Register(k, pidOf(peer, i)); err != nil {
			panic(err)
		}
	}
	return r.Snapshot()
}

func BenchmarkGlobalMerge100k(b *testing.B) {
	const n = 100_000
	const peer = "peer@127.0.0.1:7001"
	snap := snapshotOf(peer, n)
	b.Run("registry", func(b *testing.B) {
		b.SetBytes(int64(len(snap)))
		b.ReportAllocs()
		for b.Loop() {
			r := global.New(benchHost{selfNode})
			if err := r.Merge(peer, snap); err != nil {
				b.Fatal(err)
			}
			if r.Len() != n {
				b.Fatalf("Len %d", r.Len())
			}
		}
	})
	// Baseline: the least any replica must do, a map of the names.
	keys := names("svc", n)
	b.Run("map-build", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := make(map[string]codec.PID)
			for i, k := range keys {
				m[k] = pidOf(peer, i)
			}
			if len(m) != n {
				b.Fatal(len(m))
			}
		}
	})
}

func BenchmarkGlobalRegister(b *testing.B) {
	for _, size := range []int{1000, 100_000} {
		keys := names("svc", size)
		b.Run(fmt.Sprintf("names=%d/registry", size), func(b *testing.B) {
			r := global.New(benchHost{selfNode})
			for i, k := range keys {
				_ = r.Register(k, pidOf(selfNode, i))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := keys[i%size]
				_ = r.Unregister(k)
				_ = r.Register(k, pidOf(selfNode, i%size))
				i++
			}
		})
		b.Run(fmt.Sprintf("names=%d/rwmutex-map", size), func(b *testing.B) {
			t := &rwTable{m: make(map[string]codec.PID)}
			for i, k := range keys {
				t.put(k, pidOf(selfNode, i))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := keys[i%size]
				t.del(k)
				t.put(k, pidOf(selfNode, i%size))
				i++
			}
		})
	}
}

// startCluster starts k nodes on 127.0.0.1 and waits for the full mesh.
func startCluster(b *testing.B, k int) []*node.Node {
	b.Helper()
	nodes := make([]*node.Node, k)
	for i := range nodes {
		n, err := node.Start(fmt.Sprintf("g%d@127.0.0.1:0", i), "bench-cookie")
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = n.Stop(ctx)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if err := nodes[0].Connect(ctx, n.Self()); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "full mesh", func() bool {
		for _, n := range nodes {
			if len(n.List()) != k-1 {
				return false
			}
		}
		return true
	})
	return nodes
}

func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// idle spawns a process that waits until the node stops.
func idle(n *node.Node) node.PID {
	return n.SpawnFunc(func(p *node.Process) error {
		_, err := p.Receive(context.Background())
		return err
	})
}

// pingRTT measures round trips of a small message from a process of a to
// an echo process on each of others, all at once, until every pong is back:
// the unit the registry's latency is reported in (with one peer, a plain
// round trip; with all peers, the same fan-out a registration makes).
func pingRTT(b *testing.B, a *node.Node, others []*node.Node, rounds int) []time.Duration {
	b.Helper()
	echoes := make([]node.PID, len(others))
	for i, c := range others {
		echoes[i] = c.SpawnFunc(func(p *node.Process) error {
			for {
				m, err := p.Receive(context.Background())
				if err != nil {
					return nil
				}
				if from, ok := m.(node.PID); ok {
					_ = p.Send(from, "pong")
				}
			}
		})
	}
	rtts := make([]time.Duration, 0, rounds)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := a.Run(ctx, func(p *node.Process) error {
		for range rounds {
			start := time.Now()
			for _, e := range echoes {
				if err := p.Send(e, p.Self()); err != nil {
					return err
				}
			}
			for range echoes {
				if _, err := p.Receive(ctx); err != nil {
					return err
				}
			}
			rtts = append(rtts, time.Since(start))
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return rtts
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// BenchmarkGlobalVisibleEverywhere5 times Register on one node of a 5-node
// in-process cluster until every other node's Whereis sees the name; the
// baselines, measured in the same run, are the round trip of a small message
// between two of its nodes, and the fan-out round trip (a ping to a process
// on each of the four others, until all four pongs are back). Registrations rotate over the registering nodes
// and are for a process of the registering node (half) or of the next node
// (half: a request to the owner, then its add).
func BenchmarkGlobalVisibleEverywhere5(b *testing.B) {
	nodes := startCluster(b, 5)
	pids := make([]node.PID, len(nodes))
	for i, n := range nodes {
		pids[i] = idle(n)
	}
	rtt := pingRTT(b, nodes[0], nodes[1:2], 500)
	fan := pingRTT(b, nodes[0], nodes[1:], 500)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		reg := nodes[i%len(nodes)]
		owner := pids[i%len(nodes)]
		if i%2 == 1 {
			owner = pids[(i+1)%len(nodes)]
		}
		name := fmt.Sprintf("vis-%d", i)
		start := time.Now()
		if err := reg.Global().Register(name, owner); err != nil {
			b.Fatal(err)
		}
		waitFor(b, name+" everywhere", func() bool {
			for _, n := range nodes {
				if pid, ok := n.Global().Whereis(name); !ok || pid != owner {
					return false
				}
			}
			return true
		})
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	rtt = append(rtt, pingRTT(b, nodes[0], nodes[1:2], 500)...)
	fan = append(fan, pingRTT(b, nodes[0], nodes[1:], 500)...)
	r50, f50 := quantile(rtt, 0.5), quantile(fan, 0.5)
	b.ReportMetric(float64(f50.Microseconds()), "fanout-rtt-p50-µs")
	b.ReportMetric(float64(quantile(lat, 0.5))/float64(f50), "p50-fanout-RTTs")
	b.ReportMetric(float64(quantile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(quantile(lat, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(r50.Microseconds()), "rtt-p50-µs")
	b.ReportMetric(float64(quantile(lat, 0.5))/float64(r50), "p50-RTTs")
	b.ReportMetric(float64(quantile(lat, 0.99))/float64(r50), "p99-RTTs")
}

// BenchmarkGlobalConnectSync100k times a node joining a node that holds
// 100 000 names: from Connect until the joiner's Len() is 100 000 (TLS and
// cookie handshake included). The baseline, in the same run, is the
// in-memory Merge of the same names.
func BenchmarkGlobalConnectSync100k(b *testing.B) {
	const n = 100_000
	holder, err := node.Start("holder@127.0.0.1:0", "bench-cookie")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = holder.Stop(ctx)
	})
	pid := idle(holder)
	keys := names("svc", n)
	for _, k := range keys {
		if err := holder.Global().Register(k, pid); err != nil {
			b.Fatal(err)
		}
	}
	// The same table on a stand-alone replica, for the snapshot's size and
	// the merge-only baseline (a node's users cannot take its snapshot).
	src := global.New(benchHost{holder.Self()})
	for _, k := range keys {
		if err := src.Register(k, pid); err != nil {
			b.Fatal(err)
		}
	}
	snap := src.Snapshot()
	b.Run("connect", func(b *testing.B) {
		b.SetBytes(int64(len(snap)))
		for b.Loop() {
			joiner, err := node.Start("joiner@127.0.0.1:0", "bench-cookie")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := joiner.Connect(ctx, holder.Self()); err != nil {
				b.Fatal(err)
			}
			waitFor(b, "100 000 names", func() bool { return joiner.Global().Len() == n })
			b.StopTimer()
			_ = joiner.Stop(ctx)
			cancel()
			waitFor(b, "joiner gone", func() bool { return len(holder.List()) == 0 })
			b.StartTimer()
		}
	})
	b.Run("merge-only", func(b *testing.B) {
		b.SetBytes(int64(len(snap)))
		for b.Loop() {
			r := global.New(benchHost{selfNode})
			if err := r.Merge(holder.Self(), snap); err != nil {
				b.Fatal(err)
			}
		}
	})
}
