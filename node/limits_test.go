package node

import (
	"errors"
	"testing"

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
