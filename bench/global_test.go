package bench

// Registry benchmarks. Each pair runs the registry and its baseline in the
// same run, so the ratio holds on a noisy machine:
//
//	go test -run '^$' -bench 'Global' -benchmem -count 6 ./bench/
//
// Whereis: b.RunParallel readers with one writer goroutine registering and
// unregistering other names the whole time; baseline: a map behind a
// sync.RWMutex with the same writer. Merge: a 100 000-name snapshot merged
// into an empty replica; baseline: building a map of the same names.

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
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
			{"registry", func() table { return registryTable{global.New(benchHost{selfNode})} }},
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
