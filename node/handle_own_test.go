package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshrt/mesh/codec"
)

// ownProbe is a reply whose decode records where it ran: inside the read
// of a link (peer.OnData on the stack), as the message of the process
// reading that link inline is decoded (flushRun, mailbox.PushEncodedOwn:
// held, not queued), or elsewhere (Receive, for a queued one). Only
// TestAReplyReadInlineIsTheProcesssOwnMessage sends it.
type ownProbe struct{ n uint64 }

var ownProbeInRead, ownProbeDecoded atomic.Int64

func (v ownProbe) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(b, v.n), nil
}

func (v *ownProbe) UnmarshalBinary(b []byte) error {
	if len(b) != 8 {
		return errors.New("ownProbe: not 8 bytes")
	}
	v.n = binary.BigEndian.Uint64(b)
	ownProbeDecoded.Add(1)
	if decodedInRead() {
		ownProbeInRead.Add(1)
	}
	return nil
}

// decodedInRead reports that its caller runs inside a link's OnData.
func decodedInRead() bool {
	pcs := make([]uintptr, 128)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if f.Function == "github.com/meshrt/mesh/node.(*peer).OnData" {
			return true
		}
		if !more {
			return false
		}
	}
}

var ownProbeOnce sync.Once

func registerOwnProbe(t *testing.T) {
	ownProbeOnce.Do(func() {
		if err := codec.Register("node_test.ownProbe", ownProbe{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAReplyReadInlineIsTheProcesssOwnMessage: a process that waits for
// its reply reads the link inline, and the reply, a message for that very
// process, is decoded there, in the read, and held for the receive
// (flushRun's PushEncodedOwn), not queued in its mailbox and decoded by
// Receive. Rounds run until one reply came that way; every reply is the
// right one, once.
func TestAReplyReadInlineIsTheProcesssOwnMessage(t *testing.T) {
	registerOwnProbe(t)
	a, b := rwNodes(t)
	echo := b.SpawnFunc(func(q *Process) error { // answers {from, n} with ownProbe{n}
		for {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			from, body, err := request(m)
			if err != nil {
				return err
			}
			n, ok := body.(uint64)
			if !ok {
				return fmt.Errorf("echo: a body of %T", body)
			}
			if err := q.Send(from, ownProbe{n}); err != nil {
				return err
			}
		}
	})
	ownProbeInRead.Store(0)
	ownProbeDecoded.Store(0)
	const maxRounds = 2000
	rounds := uint64(0)
	within(t, a, func(p *Process) error {
		for ; ownProbeInRead.Load() == 0; rounds++ {
			if rounds == maxRounds {
				return fmt.Errorf("none of %d replies was decoded inside the read of the link (%d decoded elsewhere): none was the reading process's own", rounds, ownProbeDecoded.Load())
			}
			if err := p.Send(echo, codec.Tuple{p.Self(), rounds}); err != nil {
				return err
			}
			m, err := p.Receive(context.Background())
			if err != nil {
				return err
			}
			if m != (ownProbe{rounds}) {
				return fmt.Errorf("round %d: got %#v", rounds, m)
			}
		}
		if m, ok := p.mb.TryReceive(); ok {
			return fmt.Errorf("a message too many: %#v", m)
		}
		return nil
	})
	if n := ownProbeDecoded.Load(); n != int64(rounds) {
		t.Fatalf("%d replies decoded in %d rounds", n, rounds)
	}
	t.Logf("%d rounds until a reply was decoded in the read", rounds)
}
