package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
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
	if raceEnabled {
		// The race detector's sync.Pool drops items at random, so the
		// send queue's pooled chunks are sometimes made anew: 1 alloc per
		// send in 4 of 15 runs. `make test` runs the allocation tests
		// once more without -race.
		t.Skip("allocation counts are pinned without -race")
	}
	if meshDebug {
		t.Skip("the meshdebug build's checks allocate")
	}
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	// AllocsPerRun counts every allocation in the test binary, so nothing
	// else may allocate meanwhile. The local sink receives nothing until
	// the measurement is over (its decoding is not the sender's); it ends
	// with its node. The remote target is a process that has exited: its
	// node drops what arrives for it without allocating. (A held remote
	// sink's mailbox grew by chunks while the sends queued up, and with the
	// pools the race detector empties at random that once came to a
	// thousand allocations in a run of a thousand sends.)
	gate := make(chan struct{})
	defer close(gate)
	local := a.SpawnFunc(func(q *Process) error {
		<-gate
		for {
			if _, err := q.Receive(context.Background()); err != nil {
				return err
			}
		}
	})
	exited := make(chan struct{})
	remote := b.SpawnFunc(func(*Process) error { close(exited); return nil })
	<-exited
	within(t, a, func(p *Process) error {
		check := func(to PID, msg any) {
			_ = p.Send(to, msg) // warm the caches
			if n := testing.AllocsPerRun(1000, func() { _ = p.Send(to, msg) }); n != 0 {
				t.Errorf("Send of %T to %v: %v allocs; want 0", msg, to, n)
			}
		}
		check(local, "payload")
		// A string goes straight into the link's queue (send_direct.go);
		// a tuple holding a PID through the process's scratch buffer.
		check(remote, "payload")
		check(remote, codec.Tuple{p.Self(), "payload"})
		return nil
	})
}

// The local path end to end allocates nothing in steady state: a send to a
// process of the same node and its receive, and a round trip between two
// (issue 15; bench/local_test.go measures their cost against a channel's).
func TestLocalSendReceiveAndPingPongAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race, and the mailbox's queue segments are pooled")
	}
	n := startNode(t)
	ctx := context.Background()
	echo := n.SpawnFunc(func(q *Process) error {
		for {
			m, err := q.Receive(ctx)
			if err != nil {
				return err
			}
			_ = q.Send(m.(PID), "pong")
		}
	})
	within(t, n, func(p *Process) error {
		var msg, self any = "payload", p.Self()
		// The first rounds fill the pools (queue segments, the runtime's
		// wait records) that the steady state reuses.
		for range 1000 {
			_ = p.Send(p.Self(), msg)
			if _, err := p.Receive(ctx); err != nil {
				return err
			}
			_ = p.Send(echo, self)
			if _, err := p.Receive(ctx); err != nil {
				return err
			}
		}
		if a := testing.AllocsPerRun(1000, func() {
			_ = p.Send(p.Self(), msg)
			_, _ = p.Receive(ctx)
		}); a != 0 {
			t.Errorf("local Send+Receive: %v allocs; want 0", a)
		}
		if a := testing.AllocsPerRun(1000, func() {
			_ = p.Send(echo, self)
			_, _ = p.Receive(ctx)
		}); a != 0 {
			t.Errorf("local ping-pong: %v allocs per round trip; want 0", a)
		}
		return nil
	})
}

// A remote stream that mixes values encoded straight into the link's queue
// with values encoded through the sender's buffer arrives in the order
// sent, each as the type it was sent as.
func TestSendDirectAndBufferedKeepOrder(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	const total = 3000
	got := make(chan []any, 1)
	sinkPID := b.SpawnFunc(func(q *Process) error {
		var ms []any
		for len(ms) < total {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			ms = append(ms, m)
		}
		got <- ms
		return nil
	})
	msgFor := func(self PID, i int) any {
		switch i % 4 {
		case 0:
			return i // direct
		case 1:
			return codec.Tuple{self, int64(i), codec.Tuple{}} // nested: buffered
		case 2:
			return codec.Tuple{self, codec.Atom("n"), int64(i), strings.Repeat("x", i%300)} // direct (a call's shape)
		default:
			return map[string]any{"i": i} // buffered
		}
	}
	var self PID
	within(t, a, func(p *Process) error {
		self = p.Self()
		for i := range total {
			if err := p.Send(sinkPID, msgFor(self, i)); err != nil {
				return err
			}
		}
		return nil
	})
	// The direct path is the one a TLS link's connection offers.
	if pe, err := a.peerFor(b.Self()); err != nil {
		t.Fatal(err)
	} else if _, ok := pe.conn.(*loop.Conn); !ok {
		t.Fatalf("the link's connection is a %T, not a *loop.Conn: no direct sends", pe.conn)
	}
	var ms []any
	select {
	case ms = <-got:
	case <-time.After(testWait):
		t.Fatal("the sink did not get every message")
	}
	for i, m := range ms {
		if want := msgFor(self, i); !reflect.DeepEqual(m, want) {
			t.Fatalf("message %d: got %#v, want %#v", i, m, want)
		}
	}
}

func TestDirectBound(t *testing.T) {
	long := strings.Repeat("x", maxDirectTerm)
	tests := []struct {
		name   string
		msg    any
		direct bool
	}{
		{"nil", nil, true},
		{"string", "hello", true},
		{"atom", codec.Atom("ok"), true},
		{"bytes", []byte("abc"), true},
		{"nil bytes", []byte(nil), true},
		{"int64", int64(-7), true},
		{"float32", float32(1.5), true},
		{"tuple of scalars", codec.Tuple{codec.Atom("stamp"), int64(1), "m"}, true},
		{"empty list", []any{}, true},
		{"nil list", []any(nil), true},
		{"string at the bound", long, false},
		{"tuple past the bound", codec.Tuple{long[:600], long[:600]}, false},
		{"pid", PID{Node: "a@h:1", Incarnation: 1 << 63, ID: 1 << 63}, true},
		{"ref", Ref{Node: "a@h:1", Incarnation: 1 << 63, ID: 1 << 63}, true},
		{"call", codec.Tuple{PID{Node: strings.Repeat("n", 255), Incarnation: 1 << 63, ID: 1 << 63}, codec.Atom("get")}, true},
		{"pid of an overlong node name", PID{Node: strings.Repeat("n", 256), ID: 1}, false},
		{"nested tuple", codec.Tuple{codec.Tuple{}}, false},
		{"map", map[string]any{}, false},
		{"named string type", codec.Error("e"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bound := directBound(tt.msg)
			if (bound >= 0) != tt.direct {
				t.Fatalf("directBound = %d, want direct %v", bound, tt.direct)
			}
			if !tt.direct {
				return
			}
			item, err := wire.AppendMessage(nil, 1<<40, 1<<40, tt.msg, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(item) > directItemBound+bound {
				t.Fatalf("item of %d bytes over its bound %d", len(item), directItemBound+bound)
			}
		})
	}
}

// A direct send over the peer's message limit fails at Send with
// codec.ErrLimit, as any other send does, and the link stays up.
func TestSendDirectOverLimit(t *testing.T) {
	a := startNamed(t, "a", "c", WithMaxMessage(64))
	b := startNamed(t, "b", "c", WithMaxMessage(64))
	to, stop := sink(t, b)
	defer stop()
	// Such a value takes the general path, which refuses it at once: the
	// queue's encoder would find it only after waiting for room.
	if big := strings.Repeat("x", 100); a.directFits(directBound(big)) || !b.directFits(directBound("small")) {
		t.Error("directFits: want a 100-byte string over a 64-byte limit refused, a small one taken")
	}
	within(t, a, func(p *Process) error {
		if err := p.Send(to, strings.Repeat("x", 100)); !errors.Is(err, codec.ErrLimit) {
			t.Errorf("Send of 100 bytes with a 64-byte limit: %v, want codec.ErrLimit", err)
		}
		if err := p.Send(to, "small"); err != nil {
			t.Errorf("Send after the refused one: %v", err)
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

// A remote send encodes: once Send returns, the sender may change or reuse
// what it sent. A large []byte goes as fragments copied straight from its
// bytes (sendValueFragmented), so every fragment must be copied before
// Send returns, even when the link's bulk lane is full and later fragments
// wait for room. One buffer, rewritten after each send, carries every
// message here, from a process and from outside any process; each must
// arrive as it was when sent.
func TestRemoteSendOfALargeByteSliceIsCopiedBeforeSendReturns(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	connect(t, a, b)
	const msgs, size = 6, 1<<20 + 3 // 17 fragments each, over the lane's high mark together
	check := func(m any, want byte) error {
		got, ok := m.([]byte)
		if !ok || len(got) != size {
			return fmt.Errorf("got %T of %d bytes, want []byte of %d", m, len(got), size)
		}
		for i, c := range got {
			if c != want {
				return fmt.Errorf("message %d: byte %d is %d (changed after Send returned)", want, i, c)
			}
		}
		return nil
	}
	within(t, b, func(p *Process) error {
		errc := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			errc <- a.Run(ctx, func(q *Process) error {
				buf := make([]byte, size)
				for i := range msgs {
					for j := range buf {
						buf[j] = byte(i + 1)
					}
					if err := q.Send(p.Self(), buf); err != nil {
						return err
					}
				}
				clear(buf)
				return nil
			})
		}()
		for i := range msgs {
			m, err := recv(p)
			if err != nil {
				return fmt.Errorf("message %d never arrived: %w", i+1, err)
			}
			if err := check(m, byte(i+1)); err != nil {
				return err
			}
		}
		if err := <-errc; err != nil {
			return err
		}
		buf := make([]byte, size)
		for i := range msgs {
			for j := range buf {
				buf[j] = byte(100 + i)
			}
			if err := a.Send(p.Self(), buf); err != nil {
				return err
			}
		}
		clear(buf)
		for i := range msgs {
			m, err := recv(p)
			if err != nil {
				return fmt.Errorf("message %d never arrived: %w", 100+i, err)
			}
			if err := check(m, byte(100+i)); err != nil {
				return err
			}
		}
		return nil
	})
}

// BenchmarkRemotePingPong is the latency probe's round trip with both nodes
// in this OS process, so that one CPU or allocation profile holds both
// sides: a process sends {Self, payload} to an echo process on the other
// node, which sends the payload back.
//
//	go test -run '^$' -bench RemotePingPong -benchmem -cpuprofile cpu.out ./node/
func BenchmarkRemotePingPong(b *testing.B) {
	a, far := benchNode(b, "a"), benchNode(b, "b")
	ctx := context.Background()
	echo := far.SpawnFunc(func(q *Process) error {
		for {
			m, err := q.Receive(ctx)
			if err != nil {
				return err
			}
			t := m.(codec.Tuple)
			if err := q.Send(t[0].(PID), t[1]); err != nil {
				return err
			}
		}
	})
	_ = a.Run(ctx, func(p *Process) error {
		var msg any = codec.Tuple{p.Self(), strings.Repeat("x", 64)}
		for range 1000 {
			_ = p.Send(echo, msg)
			if _, err := p.Receive(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := p.Send(echo, msg); err != nil {
				b.Fatal(err)
			}
			if _, err := p.Receive(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		return nil
	})
}

// BenchmarkRemoteSpawn is a remote spawn (request, the far node's start of
// a process that returns at once, the reply) with both nodes in this OS
// process, so that one profile holds both sides.
//
//	go test -run '^$' -bench RemoteSpawn -benchmem -memprofile mem.out ./node/
func BenchmarkRemoteSpawn(b *testing.B) {
	a, far := benchNode(b, "a"), benchNode(b, "b")
	far.Define("noop", func(*Process, []any) error { return nil })
	_ = a.Run(context.Background(), func(p *Process) error {
		for range 1000 {
			if _, err := p.Spawn(far.Self(), "noop"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := p.Spawn(far.Self(), "noop"); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		return nil
	})
}
