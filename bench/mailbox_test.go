package bench

// Mailbox and MPSC queue benchmarks, each next to a buffered Go channel doing
// the same work in the same run, so results read as ratios:
//
//	go test -run '^$' -bench 'MPSC|Mailbox' -benchmem -count 5 ./bench/
//
// One op is one message (or one round trip for PingPong). Sub-benchmarks are
// named <impl>/<shape> so benchstat lines queue and chan up side by side.

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/meshrt/mesh/mailbox"
)

// chanBuffer is the capacity of every baseline channel.
const chanBuffer = 1024

// msg64 is a 64-byte string boxed once, so benchmarks measure the transport,
// not the conversion to any.
var msg64 any = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// split returns how many of n messages producer i of p sends.
func split(n, p, i int) int {
	k := n / p
	if i < n%p {
		k++
	}
	return k
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkMPSC: P producers push b.N messages in all, one consumer takes
// them. The queue's consumer yields when it finds the queue empty; the
// channel's blocks.
//
// Three implementations per producer count:
//   - chan: a channel buffered to chanBuffer (the baseline);
//   - queue-window: the queue with the same capacity as the channel, so both
//     compare at equal memory: every 32 pushes a producer yields while more
//     than chanBuffer messages are queued (Len), where the channel's sender
//     would block;
//   - queue: the queue unbounded, as the runtime uses it. With more producers
//     than the consumer can serve on 2 cores the queue grows to millions of
//     messages here, so this measures allocation and cache misses of a long
//     queue as much as the queue's own operations.
func BenchmarkMPSC(b *testing.B) {
	for _, p := range []int{1, 2, 8} {
		name := "producers=" + strconv.Itoa(p)
		for _, window := range []bool{false, true} {
			impl := "queue/"
			if window {
				impl = "queue-window/"
			}
			b.Run(impl+name, func(b *testing.B) {
				var q mailbox.Queue[any]
				var wg sync.WaitGroup
				b.ReportAllocs()
				b.ResetTimer()
				for i := range p {
					wg.Go(func() {
						for j := range split(b.N, p, i) {
							if window && j%32 == 0 {
								for q.Len() > chanBuffer {
									runtime.Gosched()
								}
							}
							q.Push(msg64)
						}
					})
				}
				for got := 0; got < b.N; {
					if _, ok := q.Pop(); ok {
						got++
					} else {
						runtime.Gosched()
					}
				}
				wg.Wait()
				reportRate(b)
			})
		}
		b.Run("chan/"+name, func(b *testing.B) {
			ch := make(chan any, chanBuffer)
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for i := range p {
				wg.Go(func() {
					for range split(b.N, p, i) {
						ch <- msg64
					}
				})
			}
			for range b.N {
				<-ch
			}
			wg.Wait()
			reportRate(b)
		})
	}
}

// BenchmarkMailbox: one sender goroutine, one receiving owner; the owner parks
// whenever it catches up, as a process does.
func BenchmarkMailbox(b *testing.B) {
	b.Run("mailbox/1to1", func(b *testing.B) {
		m := mailbox.New()
		ctx := context.Background()
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		wg.Go(func() {
			for range b.N {
				m.Push(msg64)
			}
		})
		for range b.N {
			if _, err := m.Receive(ctx); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
		reportRate(b)
	})
	b.Run("chan/1to1", func(b *testing.B) {
		ch := make(chan any, chanBuffer)
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		wg.Go(func() {
			for range b.N {
				ch <- msg64
			}
		})
		for range b.N {
			<-ch
		}
		wg.Wait()
		reportRate(b)
	})
	// PingPong: one op is a round trip, so every receive finds its mailbox
	// empty and parks (or spins): the cost of park and wake-up.
	b.Run("mailbox/pingpong", func(b *testing.B) {
		ping, pong := mailbox.New(), mailbox.New()
		ctx := context.Background()
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		wg.Go(func() {
			for range b.N {
				v, err := ping.Receive(ctx)
				if err != nil {
					return
				}
				pong.Push(v)
			}
		})
		for range b.N {
			ping.Push(msg64)
			if _, err := pong.Receive(ctx); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
	})
	b.Run("chan/pingpong", func(b *testing.B) {
		ping, pong := make(chan any, 1), make(chan any, 1)
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		wg.Go(func() {
			for range b.N {
				pong <- <-ping
			}
		})
		for range b.N {
			ping <- msg64
			<-pong
		}
		wg.Wait()
	})
}
