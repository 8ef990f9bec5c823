package node

import (
	"context"
	"log/slog"
	"sync"
	"testing"
)

// sink starts a process on n that drains its mailbox until it gets "stop".
func sink(tb testing.TB, n *Node) (PID, func()) {
	done := make(chan struct{})
	pid := n.SpawnFunc(func(q *Process) error {
		defer close(done)
		for {
			m, err := q.Receive(context.Background())
			if err != nil || m == "stop" {
				return err
			}
		}
	})
	return pid, func() { _ = n.Send(pid, "stop"); <-done }
}

func benchNode(b *testing.B, name string) *Node {
	n, err := Start(name+"@127.0.0.1:0", "c", WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Stop(context.Background()) })
	return n
}

// BenchmarkProcessSend is one process streaming small messages to a local
// and to a remote process (nodes in this OS process), the path whose
// caches the goroutine safety of Send touches.
//
//	go test -run '^$' -bench ProcessSend -benchmem -count 6 ./node/
func BenchmarkProcessSend(b *testing.B) {
	for _, remote := range []bool{false, true} {
		name := "local"
		if remote {
			name = "remote"
		}
		b.Run(name, func(b *testing.B) {
			a := benchNode(b, "a")
			dst := a
			if remote {
				dst = benchNode(b, "b")
			}
			to, stop := sink(b, dst)
			defer stop()
			msg := any("sixty-four bytes of payload, more or less, as benchmarks use them")
			ctx := context.Background()
			_ = a.Run(ctx, func(p *Process) error {
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if err := p.Send(to, msg); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				return nil
			})
		})
	}
}

func TestProcessSendAllocatesNothing(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	// AllocsPerRun counts every allocation in the test binary: the sinks
	// receive nothing until the measurement is over, so that decoding the
	// messages (a string each, on the receiving node) is not counted as the
	// sender's. They end with their nodes.
	gate := make(chan struct{})
	defer close(gate)
	held := func(n *Node) PID {
		return n.SpawnFunc(func(q *Process) error {
			<-gate
			for {
				if _, err := q.Receive(context.Background()); err != nil {
					return err
				}
			}
		})
	}
	local, remote := held(a), held(b)
	msg := any("payload")
	within(t, a, func(p *Process) error {
		for _, to := range []PID{local, remote} {
			_ = p.Send(to, msg) // warm the caches
			if n := testing.AllocsPerRun(1000, func() { _ = p.Send(to, msg) }); n != 0 {
				t.Errorf("Send to %v: %v allocs; want 0", to, n)
			}
		}
		return nil
	})
}

// Send, SendNamed and Exit are safe from any goroutine of a process.
func TestSendFromManyGoroutinesOfOneProcess(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	const goroutines, each = 8, 500
	counts := make(chan int, 2)
	counter := func(n *Node) PID {
		return n.SpawnFunc(func(q *Process) error {
			got := 0
			for got < 3*goroutines*each {
				if _, err := q.Receive(context.Background()); err != nil {
					return err
				}
				got++
			}
			counts <- got
			return nil
		})
	}
	local, remote := counter(a), counter(b)
	if err := b.Register("counter", remote); err != nil {
		t.Fatal(err)
	}
	if err := a.Register("counter", local); err != nil {
		t.Fatal(err)
	}
	within(t, a, func(p *Process) error {
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					_ = p.Send(local, i)
					_ = p.Send(remote, i)
					_ = p.SendNamed(a.Self(), "counter", i)
					_ = p.SendNamed(b.Self(), "counter", i)
					_ = p.Send(local, i)
					_ = p.Send(remote, i)
				}
			}()
		}
		wg.Wait()
		return nil
	})
	for range 2 {
		if got := <-counts; got != 3*goroutines*each {
			t.Fatalf("a counter got %d messages", got)
		}
	}
	// Exit from another goroutine of the process.
	within(t, a, func(p *Process) error {
		victim := a.SpawnFunc(func(q *Process) error { _, err := q.Receive(context.Background()); return err })
		ref := p.Monitor(victim)
		done := make(chan error)
		go func() { done <- p.Exit(victim, Kill) }()
		if err := <-done; err != nil {
			return err
		}
		m, err := recvMatch(p, func(m any) bool { d, ok := m.(Down); return ok && d.Ref == ref })
		if err != nil || m.(Down).Reason != Killed {
			return err
		}
		return nil
	})
}
