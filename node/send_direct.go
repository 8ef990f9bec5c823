package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
)

// Remote sends of small built-in values are encoded straight into the
// link's send queue (loop.Conn.EnqueueAppend): no encoding into the
// sender's scratch buffer and copy after, and no claim on that buffer (two
// atomic operations a send, which on the sending core wait for the
// stores before them). The encoder runs under the queue's lock, which the
// loop's drain takes too, so only values whose encoding is bounded and runs
// no user code go this way: nil, bools, strings, atoms, byte slices,
// integers and floats, PIDs and references, and tuples and lists of
// those, all within maxDirectTerm bytes: a call's {From, Request} among
// them. Everything else (maps, user types, larger values) takes the
// scratch buffer as before; both reach the same queue in
// the order sent. So does a value whose bound exceeds the node's message
// limit (WithMaxMessage under 1 KiB): the general path refuses it with
// codec.ErrLimit at once, where the queue's encoder would find it only
// after waiting for room in a full queue.

// maxDirectTerm bounds the encoded term a direct send may carry.
const maxDirectTerm = 1 << 10

// directItemBound is the most a message item adds beyond its term: the
// frame header, two uvarint PIDs, and the term's length (a uvarint of at
// most maxDirectTerm).
const directItemBound = wire.HeaderSize + 2*10 + 2

// directBound returns an upper bound of the encoded size of msg when it is
// a value a direct send may encode (see above), else -1.
func directBound(msg any) int {
	switch x := msg.(type) {
	case codec.Tuple:
		return seqBound(x)
	case []any:
		if x == nil {
			return 1
		}
		return seqBound(x)
	}
	n := scalarBound(msg)
	if n > maxDirectTerm {
		return -1
	}
	return n
}

// seqBound bounds a tuple or list of scalars: its tag, count and elements.
func seqBound(xs []any) int {
	if len(xs) > maxDirectTerm {
		return -1
	}
	n := 1 + 10
	for _, e := range xs {
		b := scalarBound(e)
		if b < 0 {
			return -1
		}
		if n += b; n > maxDirectTerm {
			return -1
		}
	}
	return n
}

// scalarBound bounds a scalar the codec encodes by itself (a tag, then at
// most a uvarint or 8 bytes, or a length and the bytes), else -1. The
// cases are exact dynamic types, as the codec's own type switch has them:
// a named type of the user's takes the general path.
func scalarBound(v any) int {
	switch x := v.(type) {
	case nil, bool:
		return 1
	case string:
		return 1 + 10 + len(x)
	case codec.Atom:
		return 1 + 10 + len(x)
	case []byte:
		return 1 + 10 + len(x)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return 1 + 10
	case codec.PID:
		return identBound(x.Node)
	case codec.Ref:
		return identBound(x.Node)
	}
	return -1
}

// identBound bounds a PID or a Ref of node: a tag, the name's length and
// bytes, the incarnation (8 bytes) and the ID (a uvarint); -1 for a node
// name longer than a node name may be (maxNameLen, the codec's bound too),
// which the general path then reports, so that the queue's encoder never
// fails.
func identBound(node string) int {
	if len(node) > maxNameLen {
		return -1
	}
	return 1 + 10 + len(node) + 8 + 10
}

// directFits reports whether a value of the given directBound can never
// exceed the node's message limit, so the encoder cannot fail on it.
func (n *Node) directFits(bound int) bool {
	max := n.limits.MaxMessage
	if max <= 0 {
		max = codec.DefaultMaxMessage
	}
	return bound <= max
}

// sendDirect is sendRemote for a value directBound accepted (bound is its
// result): it encodes msg into the send queue of lc, pe's connection.
func (n *Node) sendDirect(pe *peer, lc *loop.Conn, bound int, from uint64, to PID, msg any) error {
	if to.Incarnation != pe.incarnation {
		return nil // a process of an earlier run of that node: long gone
	}
	max := n.limits.MaxMessage
	err := lc.EnqueueAppend(context.Background(), directItemBound+bound, func(dst []byte) ([]byte, error) {
		return wire.AppendMessage(dst, to.ID, from, msg, max)
	})
	if err == nil {
		return nil
	}
	if errors.Is(err, loop.ErrClosed) {
		err = newPeerError("", err)
	}
	return fmt.Errorf("send to %v: %w", to, err)
}
