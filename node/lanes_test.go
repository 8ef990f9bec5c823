package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// big returns a message that goes as fragments (on the bulk lane), tagged
// with seq.
func bigTagged(seq int) string {
	return strconv.Itoa(seq) + ":" + strings.Repeat("x", 3*wireFragment)
}

const wireFragment = 64 << 10

// tagOf returns the sequence number a test message carries.
func tagOf(m any) (int, error) {
	switch v := m.(type) {
	case int:
		return v, nil
	case string:
		i := strings.IndexByte(v, ':')
		if i < 0 {
			return 0, fmt.Errorf("untagged string message %.20q", v)
		}
		return strconv.Atoi(v[:i])
	}
	return 0, fmt.Errorf("unexpected message %T %.20v", m, m)
}

// streamBulk keeps the link from a to b busy with large messages from
// another process, so the bulk lane is never empty while a test runs.
func streamBulk(t *testing.T, a, b *Node) {
	t.Helper()
	stop := make(chan struct{})
	sink := b.SpawnFunc(func(q *Process) error {
		for {
			if _, err := q.Receive(context.Background()); err != nil {
				return err
			}
		}
	})
	done := make(chan struct{})
	a.SpawnFunc(func(p *Process) error {
		defer close(done)
		msg := strings.Repeat("s", 1<<20)
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			if err := p.Send(sink, msg); err != nil {
				return nil
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		<-done
		b.local(sink).die(Kill)
	})
}

// A process's messages keep their order across the link's lanes (and its
// companion connection) whatever they are addressed to: large ones (fragments, on the bulk lane) and small
// ones (which other senders' items overtake), to a name and to the PID of
// the same process, while another process streams large messages on the
// same link. TestSendNamed failed when fragments went on the bulk lane
// with the order kept by the receiver per (from, to as addressed).
func TestSendOrderAcrossLanesAndAddressForms(t *testing.T) {
	forEachLinkMode(t, testSendOrderAcrossLanesAndAddressForms)
}

func testSendOrderAcrossLanesAndAddressForms(t *testing.T, m linkMode) {
	cli, srv := startNamed(t, "a", "c", m.opts...), startNamed(t, "b", "c", m.opts...)
	connect(t, cli, srv)
	streamBulk(t, cli, srv)
	m.ready(t, cli, srv)
	const rounds = 24
	got := make(chan error, 1)
	s := srv.SpawnFunc(func(q *Process) error {
		for want := range 4 * rounds {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			seq, err := tagOf(m)
			if err == nil && seq != want {
				err = fmt.Errorf("message %d arrived when %d was due", seq, want)
			}
			if err != nil {
				got <- err
				return nil
			}
		}
		got <- nil
		return nil
	})
	if err := srv.Register("sink", s); err != nil {
		t.Fatal(err)
	}
	within(t, cli, func(p *Process) error {
		for r := range rounds {
			seq := 4 * r
			// A large named send, then small sends by PID and by name,
			// then a large send by PID; rounds alternate which comes first.
			sends := []func() error{
				func() error { return p.SendNamed(srv.Self(), "sink", bigTagged(seq)) },
				func() error { return p.Send(s, seq+1) },
				func() error { return p.SendNamed(srv.Self(), "sink", seq+2) },
				func() error { return p.Send(s, bigTagged(seq+3)) },
			}
			if r%2 == 1 {
				sends[0] = func() error { return p.Send(s, bigTagged(seq)) }
				sends[3] = func() error { return p.SendNamed(srv.Self(), "sink", bigTagged(seq+3)) }
			}
			for _, send := range sends {
				if err := send(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testWait):
		t.Fatal("the sink did not get every message")
	}
}

// Signals keep their place behind the sender's large messages: an exit
// signal sent after a large message arrives after it, and so do the exit
// signal of a link and the Down of a monitor when the sender exits right
// after sending one.
func TestSignalsStayBehindTheSendersLargeMessages(t *testing.T) {
	forEachLinkMode(t, testSignalsStayBehindTheSendersLargeMessages)
}

func testSignalsStayBehindTheSendersLargeMessages(t *testing.T, m linkMode) {
	cli, srv := startNamed(t, "a", "c", m.opts...), startNamed(t, "b", "c", m.opts...)
	connect(t, cli, srv)
	streamBulk(t, cli, srv)
	m.ready(t, cli, srv)
	const rounds = 6
	events := make(chan string, 16*rounds)
	// The receiver traps exits (an exit signal becomes a message), monitors
	// every PID it is sent and answers it, and reports what it receives.
	r := srv.SpawnFunc(func(q *Process) error {
		q.TrapExit(true)
		events <- "trapping"
		for {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			switch v := m.(type) {
			case string:
				events <- "message"
			case Exit:
				events <- fmt.Sprintf("exit %v", v.Reason)
			case Down:
				events <- fmt.Sprintf("down %v", v.Reason)
			case PID:
				q.Monitor(v)
				if err := q.Send(v, "monitored"); err != nil {
					return err
				}
			default:
				events <- fmt.Sprintf("%T", m)
			}
		}
	})
	t.Cleanup(func() {
		if q := srv.local(r); q != nil { // gone already when the node stopped first
			q.die(Kill)
		}
	})
	// expect checks the next two events. Each round waits for its own:
	// the senders of different rounds are different processes, whose
	// items have no order between them.
	expect := func(round int, want ...string) error {
		for _, w := range want {
			select {
			case got := <-events:
				if got != w {
					return fmt.Errorf("round %d: got %q; want %q", round, got, w)
				}
			case <-time.After(testWait):
				return fmt.Errorf("round %d: %q did not come", round, w)
			}
		}
		return nil
	}
	// The first exit signal must find the receiver trapping exits: before
	// it traps them, a signal kills it (its large message, on its way
	// first, then never reported).
	select {
	case got := <-events:
		if got != "trapping" {
			t.Fatalf("the receiver's first event is %q; want \"trapping\"", got)
		}
	case <-time.After(testWait):
		t.Fatal("the receiver did not start")
	}
	within(t, cli, func(p *Process) error {
		for round := range rounds {
			// An explicit exit signal after a large message.
			if err := p.Send(r, bigTagged(0)); err != nil {
				return err
			}
			if err := p.Exit(r, "after"); err != nil {
				return err
			}
			if err := expect(round, "message", "exit after"); err != nil {
				return err
			}
		}
		for round := range 2 * rounds {
			// A process that exits right after a large message: linked to
			// the receiver (its exit signal follows the message), or
			// monitored by it (the Down does).
			ready := make(chan error, 1)
			cli.SpawnFunc(func(q *Process) error {
				if round%2 == 0 {
					ready <- q.Link(r)
				} else {
					if err := q.Send(r, q.Self()); err != nil {
						ready <- err
						return nil
					}
					_, err := q.Receive(context.Background()) // "monitored"
					ready <- err
				}
				if err := q.Send(r, bigTagged(0)); err != nil {
					return err
				}
				return fmt.Errorf("gone")
			})
			if err := <-ready; err != nil {
				return err
			}
			last := "exit gone"
			if round%2 == 1 {
				last = "down gone"
			}
			if err := expect(round, "message", last); err != nil {
				return err
			}
		}
		return nil
	})
}
