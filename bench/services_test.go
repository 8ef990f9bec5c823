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
	"sync"
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
		b.Run(where+"/pingpong", func(b *testing.B) {
			a, srv := setup(b)
			var h latencyHist
			_ = a.Run(context.Background(), func(p *node.Process) error {
				var self any = p.Self()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					t0 := time.Now()
					_ = p.Send(srv, self)
					if _, err := p.Receive(context.Background()); err != nil {
						b.Fatal(err)
					}
					h.Record(time.Since(t0))
				}
				return nil
			})
			h.Report(b)
		})
		b.Run(where+"/call", func(b *testing.B) {
			a, srv := setup(b)
			var h latencyHist
			_ = a.Run(context.Background(), func(p *node.Process) error {
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					t0 := time.Now()
					if _, err := p.Call(context.Background(), srv, payload64); err != nil {
						b.Fatal(err)
					}
					h.Record(time.Since(t0))
				}
				return nil
			})
			h.Report(b)
		})
		b.Run(where+"/call-8", func(b *testing.B) {
			// 8 callers share b.N calls; compare calls/s with call's.
			a, srv := setup(b)
			var wg sync.WaitGroup
			per := (b.N + 7) / 8
			b.ReportAllocs()
			b.ResetTimer()
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = a.Run(context.Background(), func(p *node.Process) error {
						for range per {
							if _, err := p.Call(context.Background(), srv, payload64); err != nil {
								b.Error(err)
								return err
							}
						}
						return nil
					})
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkSendAfter: "pending" holds a million timers and reports their
// memory (MiB per million); "lateness" fires b.N timers spread over 100 ms
// and reports how late they arrive.
func BenchmarkSendAfter(b *testing.B) {
	b.Run("pending=1M", func(b *testing.B) {
		n := quietNode(b, "a")
		target := n.SpawnFunc(func(p *node.Process) error { _, err := p.Receive(context.Background()); return err })
		var msg any = 1
		timers := make([]*node.Timer, 1<<20)
		b.ResetTimer()
		for range b.N {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range timers {
				timers[i] = n.SendAfter(time.Hour, target, msg)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB/1M-timers")
			for _, t := range timers {
				t.Stop()
			}
		}
	})
	b.Run("lateness", func(b *testing.B) {
		n := quietNode(b, "a")
		var h latencyHist
		_ = n.Run(context.Background(), func(p *node.Process) error {
			b.ResetTimer()
			for i := range b.N {
				d := time.Duration(i%100) * time.Millisecond
				p.SendAfter(d, p.Self(), time.Now().Add(d))
			}
			for range b.N {
				m, err := p.Receive(context.Background())
				if err != nil {
					return err
				}
				h.Record(time.Since(m.(time.Time)))
			}
			return nil
		})
		h.Report(b)
	})
}

// BenchmarkSupervisorRestart measures from a crash request to the
// restarted child's first message.
func BenchmarkSupervisorRestart(b *testing.B) {
	n := quietNode(b, "a")
	var h latencyHist
	_ = n.Run(context.Background(), func(p *node.Process) error {
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
			b.Fatal(err)
		}
		m, _ := p.Receive(context.Background())
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			_ = p.Send(m.(node.PID), "crash")
			if m, err = p.Receive(context.Background()); err != nil {
				return err
			}
			h.Record(time.Since(t0))
		}
		return nil
	})
	h.Report(b)
}
