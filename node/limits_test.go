package node

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	dto "github.com/prometheus/client_model/go"
)

// A message over WithMaxMessage fails at Send with codec.ErrLimit, and the
// connection other processes share stays up and keeps delivering.
func TestSendOverMaxMessageFailsAtSendAndTheLinkLives(t *testing.T) {
	a := startNamed(t, "a", "c", WithMaxMessage(1<<20))
	b := startNamed(t, "b", "c", WithMaxMessage(1<<20))
	within(t, b, func(p *Process) error {
		within(t, a, func(q *Process) error {
			if err := q.Send(p.Self(), make([]byte, 2<<20)); !errors.Is(err, codec.ErrLimit) {
				t.Errorf("Send of 2 MiB over a 1 MiB limit: %v, want ErrLimit", err)
			}
			if len(a.List()) != 1 {
				t.Error("the link went down")
			}
			return q.Send(p.Self(), "after")
		})
		m, err := recv(p)
		if err != nil || m != "after" {
			t.Errorf("got %v, %v; want the next message", m, err)
		}
		return nil
	})
}

// The receiving side respects its own limit: a peer that sends a larger
// message (here, one configured with a larger limit) is cut.
func TestReceiverCutsAPeerThatSendsOverItsMaxMessage(t *testing.T) {
	a := startNamed(t, "a", "c")
	b := startNamed(t, "b", "c", WithMaxMessage(1<<20))
	target := b.SpawnFunc(func(p *Process) error { _, err := recv(p); return err })
	connect(t, a, b)
	within(t, a, func(q *Process) error {
		// Nil, or not connected if b cut the link while the fragments
		// were still being queued.
		_ = q.Send(target, make([]byte, 2<<20))
		return nil
	})
	eventually(t, "b counts a cut at message_size", func() bool {
		var m dto.Metric
		_ = b.metrics.peersCut.WithLabelValues("message_size").Write(&m)
		return m.GetCounter().GetValue() >= 1
	})
}

// A large message is decoded by its receiver when it receives it, not on
// the event loop as it arrives: a big decode holds the process it is for,
// never the link every other process shares.
func TestLargeMessagesAreDecodedByTheirReceiverNotOnTheLoop(t *testing.T) {
	a := startNamed(t, "a", "c")
	b := startNamed(t, "b", "c")
	var largeDecodes atomic.Int64
	decode := b.decoder.Decode
	b.decoder.Decode = func(m []byte) (any, error) {
		if len(m) > maxEncodedDelivery {
			largeDecodes.Add(1)
		}
		return decode(m)
	}
	large := bytes.Repeat([]byte("x"), 4*maxEncodedDelivery)
	gate := make(chan struct{})
	got := make(chan []any, 1)
	sink := b.SpawnFunc(func(p *Process) error {
		<-gate
		var ms []any
		for range 2 {
			m, err := recv(p)
			if err != nil {
				return err
			}
			ms = append(ms, m)
		}
		got <- ms
		return nil
	})
	within(t, a, func(q *Process) error {
		if err := q.Send(sink, large); err != nil {
			return err
		}
		return q.Send(sink, "after")
	})
	eventually(t, "both messages in the sink's mailbox", func() bool {
		p := b.procs.get(sink.ID)
		return p != nil && p.mb.Len() == 2
	})
	if n := largeDecodes.Load(); n != 0 {
		t.Fatalf("%d large decodes before the receiver received anything, want 0", n)
	}
	close(gate)
	select {
	case ms := <-got:
		if m, ok := ms[0].([]byte); !ok || !bytes.Equal(m, large) {
			t.Fatalf("first message: %T of %d bytes, want the large []byte", ms[0], len(m))
		}
		if ms[1] != "after" {
			t.Fatalf("second message %v, want after", ms[1])
		}
	case <-time.After(testWait):
		t.Fatal("the sink received nothing")
	}
	if n := largeDecodes.Load(); n != 1 {
		t.Fatalf("%d large decodes, want 1, by the receiver", n)
	}
}

// A reply too large to decode on the loop reaches the caller whole, and
// the caller decodes it.
func TestLargeRemoteReplyIsDecodedByTheCaller(t *testing.T) {
	a, b := startNamed(t, "a", "c"), startNamed(t, "b", "c")
	var largeDecodes atomic.Int64
	decode := a.decoder.Decode
	a.decoder.Decode = func(m []byte) (any, error) {
		if len(m) > maxEncodedDelivery {
			largeDecodes.Add(1)
		}
		return decode(m)
	}
	large := bytes.Repeat([]byte("y"), 4*maxEncodedDelivery)
	s := b.SpawnFunc(server(func(*Process, Request) (any, error) { return large, nil }))
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	v, err := a.Call(ctx, s, "give")
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := v.([]byte); !ok || !bytes.Equal(m, large) {
		t.Fatalf("reply: %T, want the large []byte", v)
	}
	if n := largeDecodes.Load(); n != 1 {
		t.Fatalf("%d large decodes through the node's decoder, want 1 (the caller's)", n)
	}
}
