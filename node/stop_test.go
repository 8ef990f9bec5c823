package node

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Regression: Stop handed each link's queue and close_notify to the event
// loop and closed at once, and what the socket could not take was dropped:
// large messages whose Send had returned arrived megabytes short, or not at
// all. Stop now drains each link before closing it. Four senders keep the
// link's queue, gnet's buffer and the sockets full when Stop comes.
func TestStopDeliversLargeMessagesTheirSendAccepted(t *testing.T) {
	// Ticks are not what is tested either: under -race on a loaded machine
	// the receiving side, busy with 32 MiB, was once silent past the
	// default 15 s tick timeout.
	quiet := WithTickTimeout(10 * time.Minute)
	a, b := startNamed(t, "a", "c", quiet), startNamed(t, "b", "c", quiet)
	// Connected first, with the test's own bound: a Send's dial on demand
	// has the handshake timeout, which a loaded machine under -race can pass
	// (seen with both cores burned), and the dial is not what is tested.
	connect(t, a, b)
	const senders, size = 4, 8 << 20
	msgs := make([][]byte, senders)
	for s := range msgs {
		msgs[s] = bytes.Repeat([]byte{byte(s + 1)}, size)
	}
	within(t, b, func(p *Process) error {
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		for _, m := range msgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- a.Send(p.Self(), m)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			return err
		}
		for range senders {
			m, err := recv(p)
			if err != nil {
				return fmt.Errorf("a message never arrived: %w", err)
			}
			got, ok := m.([]byte)
			if !ok || len(got) != size || got[0] == 0 || int(got[0]) > senders || !bytes.Equal(got, msgs[got[0]-1]) {
				return fmt.Errorf("got %T of %d bytes, want one of the %d MiB messages sent", m, len(got), size>>20)
			}
		}
		return nil
	})
}

// Regression: Stop called on two goroutines at once (a process may stop its
// own node while its owner stops it too) left one of them waiting for ever:
// the last process signals idle once, and only one Stop took the signal.
func TestConcurrentStopsBothReturn(t *testing.T) {
	n, err := Start("n@127.0.0.1:0", "c")
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	n.SpawnFunc(func(*Process) error { <-gate; return nil }) // runs until the gate opens, killed or not
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- n.Stop(ctx) }()
	}
	// Give both Stops the time to reach their wait (not needed for the
	// test to pass: a Stop that comes later returns at once).
	time.Sleep(50 * time.Millisecond)
	close(gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
}
