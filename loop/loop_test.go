package loop

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/leaktest"
)

func TestMain(m *testing.M) {
	// gnet's worker pool (ants) starts goroutines at package init.
	leaktest.VerifyTestMain(m)
}

func TestEchoKeepsOrderPerSender(t *testing.T) {
	const senders, perSender = 8, 3000
	echo := func(c *Conn, f []byte) {
		if err := c.Enqueue(context.Background(), frame(nil, f)); err != nil {
			t.Errorf("echo: %v", err)
		}
	}
	order := newOrderCheck(senders)
	p := newPair(t, echo, order.frame)
	if got := p.cliConn.Info(); got != "srv" {
		t.Fatalf("client Info = %v, want srv", got)
	}
	if got := p.srvConn.Info(); got != "cli" {
		t.Fatalf("server Info = %v, want cli", got)
	}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			payload := make([]byte, 64)
			for i := range perSender {
				binary.BigEndian.PutUint32(payload, uint32(s))
				binary.BigEndian.PutUint32(payload[4:], uint32(i))
				buf = frame(buf[:0], payload)
				if err := p.cliConn.Enqueue(context.Background(), buf); err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 20*time.Second, "all echoes", func() bool {
		n, _, _ := p.cliHandl.count()
		return n == senders*perSender
	})
	bad, next := order.result()
	if bad != 0 {
		t.Fatalf("%d frames out of order", bad)
	}
	for s, n := range next {
		if n != perSender {
			t.Fatalf("sender %d: got %d frames, want %d", s, n, perSender)
		}
	}
}
