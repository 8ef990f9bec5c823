package node

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
)

// soakCounts are the stream's books: what each side saw, per epoch. The
// sender starts a new epoch each time it is told the link went down (a Down
// with reason noconnection), so a message of an earlier epoch that did not
// arrive was lost with a notification, and one of the last epoch was lost
// silently.
type soakCounts struct {
	mu       sync.Mutex
	sent     map[uint64]int
	received map[uint64]int
	lastSeq  map[uint64]uint64
	disorder int // a message arriving out of order or twice in its epoch
}

func (c *soakCounts) add(m map[uint64]int, epoch uint64) {
	c.mu.Lock()
	m[epoch]++
	c.mu.Unlock()
}

// TestMixedSoak streams sequence-checked messages, with a large one every
// 100, from a to b while the link is cut and healed at random and names are
// registered and unregistered, for MESH_SOAK (make soak). It ends with a
// verdict line: sent, received, lost with notification, lost silently (must
// be 0), out of order (must be 0), and goroutines and heap before and after.
func TestMixedSoak(t *testing.T) {
	soak := os.Getenv("MESH_SOAK")
	if soak == "" {
		t.Skip("MESH_SOAK unset: the mixed soak runs under make soak")
	}
	d, err := time.ParseDuration(soak)
	if err != nil {
		t.Fatalf("MESH_SOAK=%q: %v", soak, err)
	}
	goroutines0, heap0 := settledFootprint()
	func() {
		a, b := startNamed(t, "soaka", "c"), startNamed(t, "soakb", "c")
		connect(t, a, b)
		c := &soakCounts{sent: map[uint64]int{}, received: map[uint64]int{}, lastSeq: map[uint64]uint64{}}

		recvDone := make(chan struct{})
		receiver := b.SpawnFunc(func(p *Process) error {
			defer close(recvDone)
			for {
				m, err := p.Receive(context.Background())
				if err != nil {
					return err
				}
				tup, ok := m.(codec.Tuple)
				if !ok {
					return nil // the stop signal
				}
				epoch, seq := tup[0].(uint64), tup[1].(uint64)
				c.mu.Lock()
				if last, seen := c.lastSeq[epoch]; seen && seq <= last {
					c.disorder++
				}
				c.lastSeq[epoch] = seq
				c.received[epoch]++
				c.mu.Unlock()
			}
		})

		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		var wg sync.WaitGroup
		var notified atomic.Uint64
		faultsDone := make(chan struct{})
		wg.Add(1)
		go func() { // faults: cut the link at random, heal it
			defer wg.Done()
			defer close(faultsDone)
			for ctx.Err() == nil {
				select {
				case <-time.After(time.Duration(300+time.Now().UnixNano()%700) * time.Millisecond):
				case <-ctx.Done():
					return
				}
				cutLink(a, b)
			}
		}()
		wg.Add(1)
		go func() { // registry churn
			defer wg.Done()
			holder := a.SpawnFunc(func(p *Process) error { _, err := p.Receive(ctx); return err })
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("soak%d", i%50)
				if a.Global().Register(name, holder) != nil {
					_ = a.Global().Unregister(name)
				}
				time.Sleep(time.Millisecond)
			}
		}()

		big := make([]byte, 256<<10)
		var final uint64
		within(t, a, func(p *Process) error {
			epoch, seq := uint64(1), uint64(0)
			p.Monitor(receiver)
			// takeDowns starts a new epoch for each Down received.
			takeDowns := func(reconnect bool) {
				for {
					m, ok := p.mb.TryReceive()
					if !ok {
						return
					}
					if _, down := m.(Down); down {
						notified.Add(1)
						epoch, seq = epoch+1, 0
						for reconnect && ctx.Err() == nil && a.Connect(ctx, b.Self()) != nil {
							time.Sleep(10 * time.Millisecond)
						}
						p.Monitor(receiver)
					}
				}
			}
			for ctx.Err() == nil {
				takeDowns(true)
				seq++
				var pad []byte
				if seq%100 == 0 {
					pad = big
				}
				if err := p.Send(receiver, codec.Tuple{epoch, seq, pad}); err != nil {
					seq-- // refused at Send: the sender knows, nothing was sent
					time.Sleep(time.Millisecond)
					continue
				}
				c.add(c.sent, epoch)
			}
			// A cut at the very end is told after the last send: wait
			// for the faults to stop, then for the Down such a cut sends.
			<-faultsDone
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				takeDowns(false)
			}
			final = epoch
			return nil
		})
		cancel()
		wg.Wait()
		// Let the last epoch drain: it must arrive whole unless a Down
		// (which would start another epoch) says otherwise.
		deadline := time.Now().Add(testWait)
		for time.Now().Before(deadline) {
			c.mu.Lock()
			done := c.received[final] >= c.sent[final]
			c.mu.Unlock()
			if done {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = b.Send(receiver, "stop")
		<-recvDone

		c.mu.Lock()
		var sent, received, withNote, silent int
		for e, s := range c.sent {
			sent += s
			lost := s - c.received[e]
			if e == final {
				silent += lost
			} else {
				withNote += lost
			}
		}
		for _, r := range c.received {
			received += r
		}
		disorder := c.disorder
		c.mu.Unlock()
		stopNode(t, a)
		stopNode(t, b)
		goroutines1, heap1 := settledFootprint()
		fmt.Printf("soak verdict: %v, %d link cuts notified: sent %d, received %d, lost with notification %d, lost silently %d, out of order %d; goroutines %d -> %d, heap %.1f -> %.1f MiB\n",
			d, notified.Load(), sent, received, withNote, silent, disorder, goroutines0, goroutines1, float64(heap0)/(1<<20), float64(heap1)/(1<<20))
		if silent != 0 || disorder != 0 {
			t.Errorf("lost silently %d, out of order %d: both must be 0", silent, disorder)
		}
	}()
}

// settledFootprint returns the goroutine count and live heap after a GC,
// once background goroutines have had a moment to end.
func settledFootprint() (int, uint64) {
	var ms runtime.MemStats
	n := runtime.NumGoroutine()
	for range 20 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		n = min(n, runtime.NumGoroutine())
	}
	runtime.ReadMemStats(&ms)
	return n, ms.HeapAlloc
}
