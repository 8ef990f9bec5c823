package bench

// Services: Call against a ping-pong of the same run, SendAfter's memory
// and lateness, and a supervisor's restart of a crashed child.
//
//	go test -run '^$' -bench 'Call|SendAfter|SupervisorRestart' -benchmem -count 6 ./bench/
//
// Compare call with pingpong within one run (ratios). The remote cases run
// both nodes in this OS process.

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/meshrt/mesh/node"
	"github.com/meshrt/mesh/supervisor"
)

func quietNode(b *testing.B, name string) *node.Node {
	b.Helper()
	n, err := node.Start(name+"@127.0.0.1:0", "cookie", node.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Stop(context.Background()) })
	return n
}

// echoServer answers Requests with their body and echoes any PID it is
// sent with payload64 (the ping-pong baseline).
func echoServer(p *node.Process) error {
	for {
		m, err := p.Receive(context.Background())
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case node.Request:
			_ = p.Reply(m, payload64)
		case node.PID:
			_ = p.Send(m, payload64)
		}
	}
}

// BenchmarkCall compares a call with a ping-pong to the same echo server,
// local and remote: each iteration makes one ping-pong and one call, so
// both see the same machine, and the benchmark reports the p50 of each and
// their ratio (call-vs-pingpong-p50; issue 12's targets: at most 2 local,
// 1.1 remote). ns/op is the sum of the two.
//
// callers-8-vs-1 alternates chunks of calls made by one caller and by 8
// concurrent callers (processes of one node) to one server, and reports how
// many more calls a second the 8 make (target: at least 3).
func BenchmarkCall(b *testing.B) {
	for _, where := range []string{"local", "remote"} {
		setup := func(b *testing.B) (*node.Node, node.PID) {
			a := quietNode(b, "a")
			srvNode := a
			if where == "remote" {
				srvNode = quietNode(b, "b")
				if err := a.Connect(context.Background(), srvNode.Self()); err != nil {
					b.Fatal(err)
				}
			}
			return a, srvNode.SpawnFunc(echoServer)
		}
		b.Run(where+"/vs-pingpong", func(b *testing.B) {
			a, srv := setup(b)
			var ping, call latencyHist
			err := a.Run(context.Background(), func(p *node.Process) error {
				var self any = p.Self()
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				pingpong := func() error {
					t0 := time.Now()
					if err := p.Send(srv, self); err != nil {
						return err
					}
					_, err := p.Receive(ctx)
					ping.Record(time.Since(t0))
					return err
				}
				callOnce := func() error {
					t0 := time.Now()
					_, err := p.Call(ctx, srv, payload64)
					call.Record(time.Since(t0))
					return err
				}
				for i := range b.N {
					first, second := pingpong, callOnce
					if i%2 == 1 { // neither always goes first
						first, second = callOnce, pingpong
					}
					if err := first(); err != nil {
						return err
					}
					if err := second(); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			reportVs(b, "call", &call, "pingpong", &ping)
		})
		b.Run(where+"/callers-8-vs-1", func(b *testing.B) {
			a, srv := setup(b)
			const callers, chunk = 8, 128 // calls per chunk, in either mode
			start := make([]chan int, callers)
			done := make(chan error, callers)
			for i := range start {
				start[i] = make(chan int)
				go func() {
					done <- a.Run(context.Background(), func(p *node.Process) error {
						for k := range start[i] {
							var err error
							for range k {
								if _, err = p.Call(context.Background(), srv, payload64); err != nil {
									break
								}
							}
							done <- err
						}
						return nil
					})
				}()
			}
			wait := func(k int) {
				for range k {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
			}
			var one, eight time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n += 2 * chunk {
				t0 := time.Now()
				start[0] <- chunk
				wait(1)
				t1 := time.Now()
				for _, s := range start {
					s <- chunk / callers
				}
				wait(callers)
				one += t1.Sub(t0)
				eight += time.Since(t1)
			}
			b.StopTimer()
			for _, s := range start {
				close(s)
			}
			wait(callers)
			b.ReportMetric(one.Seconds()/eight.Seconds(), "calls/s-8-vs-1")
		})
	}
}

// reportVs reports the p50 and p99 (µs) of two histograms measured in the
// same iterations, and the ratios of their p50s and of their p99s.
func reportVs(b *testing.B, name string, h *latencyHist, base string, bh *latencyHist) {
	us := func(h *latencyHist, q float64) float64 { return float64(h.Quantile(q).Nanoseconds()) / 1e3 }
	b.ReportMetric(us(h, 0.5), name+"-p50-us")
	b.ReportMetric(us(h, 0.99), name+"-p99-us")
	b.ReportMetric(us(bh, 0.5), base+"-p50-us")
	b.ReportMetric(us(bh, 0.99), base+"-p99-us")
	b.ReportMetric(us(h, 0.5)/us(bh, 0.5), name+"-vs-"+base+"-p50")
	b.ReportMetric(us(h, 0.99)/us(bh, 0.99), name+"-vs-"+base+"-p99")
}

// BenchmarkSendAfter: "pending=1M" holds a million timers and reports
// their heap (MiB per million; target at most 200), beside as many
// time.AfterFunc timers, the runtime's own, measured the same way.
// "lateness" sets b.N timers due 100 µs apart, each beside a time.AfterFunc
// due at the same instant that sends the same process a message, and
// reports how late each kind arrives (p50, p99; target p99 at most 1 ms
// on an idle machine). On Linux a third column, kernel-late, is the floor
// of the same schedule: an OS thread sleeping in a blocking timerfd read
// until each deadline (kernelTimerLateness), run beside the other two. On Linux the node's timer goroutine sleeps on a
// timerfd, and the runtime runs its own due timers at the same wake-up, so
// there the AfterFunc column is no longer Go's lateness alone (up to a
// millisecond on an idle process): compare with a build from before the
// timerfd for that (docs/services.md).
func BenchmarkSendAfter(b *testing.B) {
	b.Run("pending=1M", func(b *testing.B) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // every runtime timer on the one P the sleep cleans
		n := quietNode(b, "a")
		target := n.SpawnFunc(func(p *node.Process) error { _, err := p.Receive(context.Background()); return err })
		var msg any = 1
		timers := make([]*node.Timer, 1<<20)
		runtimeTimers := make([]*time.Timer, 1<<20)
		heap := func() int64 {
			// Stopped runtime timers stay in their P's timer heap, with
			// what they hold, until that P schedules again and cleans
			// them out; with one P (above), a sleep is that round. Else
			// the AfterFunc timers of one iteration are freed during the
			// next one's measure (a delta that is short, or negative).
			time.Sleep(10 * time.Millisecond)
			var m runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m)
			return int64(m.HeapAlloc)
		}
		// The first iteration is reported: later ones find the node's
		// heap slice and the P's timer heap grown already (8 MiB less).
		var mesh, rt int64
		b.ResetTimer()
		for i := range b.N {
			before := heap()
			for i := range timers {
				timers[i] = n.SendAfter(time.Hour, target, msg)
			}
			if d := heap() - before; i == 0 {
				mesh = d
			}
			for _, t := range timers {
				t.Stop()
			}
			clear(timers)
			before = heap()
			for i := range runtimeTimers {
				runtimeTimers[i] = time.AfterFunc(time.Hour, func() { _ = n.Send(target, msg) })
			}
			if d := heap() - before; i == 0 {
				rt = d
			}
			for _, t := range runtimeTimers {
				t.Stop()
			}
			clear(runtimeTimers)
		}
		b.ReportMetric(float64(mesh)/(1<<20), "MiB/1M-timers")
		b.ReportMetric(float64(rt)/(1<<20), "MiB/1M-AfterFunc")
	})
	b.Run("lateness", func(b *testing.B) {
		n := quietNode(b, "a")
		var h, base latencyHist
		type afterFunc struct{ at time.Time }
		const spacing = 100 * time.Microsecond
		kernel := make(chan *latencyHist, 1)
		err := n.Run(context.Background(), func(p *node.Process) error {
			self := p.Self()
			b.ResetTimer()
			// The first is due once all are set (setting one takes about
			// a µs; 100 ms leaves room for a loaded machine).
			start := time.Now().Add(100 * time.Millisecond)
			go func() { kernel <- kernelTimerLateness(start, b.N, spacing) }()
			for i := range b.N {
				at := start.Add(time.Duration(i) * spacing)
				p.SendAfter(time.Until(at), self, at)
				time.AfterFunc(time.Until(at), func() { _ = p.Send(self, afterFunc{at}) })
			}
			for range 2 * b.N {
				m, err := p.Receive(context.Background())
				if err != nil {
					return err
				}
				switch m := m.(type) {
				case time.Time:
					h.Record(time.Since(m))
				case afterFunc:
					base.Record(time.Since(m.at))
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		reportVs(b, "sendafter-late", &h, "afterfunc-late", &base)
		if k := <-kernel; k != nil {
			reportVs(b, "sendafter-late", &h, "kernel-late", k)
		}
	})
}

// BenchmarkSupervisorRestart measures from a crash request to the
// restarted child's first message (target p50 at most 50 µs), beside, in
// the same iterations, the same request to a process spawned and linked
// by hand that answers and exits (spawn-and-link, the baseline).
func BenchmarkSupervisorRestart(b *testing.B) {
	n := quietNode(b, "a")
	var h, base latencyHist
	err := n.Run(context.Background(), func(p *node.Process) error {
		self := p.Self()
		child := func(q *node.Process) error {
			_ = q.Send(self, q.Self())
			_, err := q.Receive(context.Background())
			if err == nil {
				err = errors.New("crash")
			}
			return err
		}
		_, err := supervisor.Start(p, supervisor.Spec{Intensity: 1 << 30, Period: time.Second,
			Children: []supervisor.Child{{ID: "c", Start: child}}})
		if err != nil {
			return err
		}
		m, err := p.Receive(context.Background())
		if err != nil {
			return err
		}
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			_ = p.Send(m.(node.PID), "crash")
			if m, err = p.Receive(context.Background()); err != nil {
				return err
			}
			h.Record(time.Since(t0))

			t0 = time.Now()
			if _, err := p.SpawnLinkFunc(func(q *node.Process) error { return q.Send(self, "up") }); err != nil {
				return err
			}
			if _, err := p.ReceiveMatch(context.Background(), func(m any) bool { return m == "up" }); err != nil {
				return err
			}
			base.Record(time.Since(t0))
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	reportVs(b, "restart", &h, "spawnlink", &base)
}
