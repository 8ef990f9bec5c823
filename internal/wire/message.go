package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/meshrt/mesh/codec"
)

// AppendMessage appends one message as a self-contained item: a batch frame
// holding one record (uvarint to, uvarint from, uvarint term length, term).
// to and from are process IDs; their node and incarnation are implied by the
// link. A term that encodes to more than maxTerm bytes (<= 0:
// codec.DefaultMaxMessage) is refused with an error wrapping codec.ErrLimit:
// the receiver would refuse it. It does not allocate for builtin terms when
// dst has room. On error dst is returned with its original length. Safe
// from any goroutine.
//
// If the item is longer than the link's fragment size, split it with a
// [Fragmenter] instead of enqueueing it whole.
func AppendMessage(dst []byte, to, from uint64, msg any, maxTerm int) ([]byte, error) {
	if maxTerm <= 0 {
		maxTerm = codec.DefaultMaxMessage
	}
	// The common large values are refused before they are copied.
	switch x := msg.(type) {
	case []byte:
		if len(x) > maxTerm {
			return dst, errTooLarge(len(x), maxTerm)
		}
	case string:
		if len(x) > maxTerm {
			return dst, errTooLarge(len(x), maxTerm)
		}
	}
	start := len(dst)
	dst, at := beginFrame(dst, KindBatch)
	dst = appendUvarint(dst, to)
	dst = appendUvarint(dst, from)
	lenAt := len(dst)
	dst = append(dst, 0)
	out, err := codec.AppendTerm(dst, msg)
	if err != nil {
		return dst[:start], err
	}
	if n := len(out) - lenAt - 1; n > maxTerm {
		return dst[:start], errTooLarge(n, maxTerm)
	}
	out = patchLength(out, lenAt)
	return endFrame(out, at), nil
}

func errTooLarge(n, max int) error {
	return fmt.Errorf("%w: message of %d bytes or more, over the max message %d", codec.ErrLimit, n, max)
}

// patchLength writes the uvarint length of out[at+1:] at out[at], where one
// byte was reserved, moving the body if the varint needs more bytes.
func patchLength(out []byte, at int) []byte {
	n := len(out) - at - 1
	if n < 0x80 {
		out[at] = byte(n)
		return out
	}
	var tmp [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(tmp[:], uint64(n))
	out = append(out, tmp[:w-1]...)
	copy(out[at+w:], out[at+1:at+1+n])
	copy(out[at:], tmp[:w])
	return out
}

// Message is one message record. Term aliases the frame (or reassembly
// buffer) it came from: decode or copy it before the next call that reads.
type Message struct {
	To, From uint64
	Term     []byte
}

// Decode decodes the message's term, which must fill Term exactly. Safe
// from any goroutine while Term is valid.
func (m Message) Decode(lim *codec.Limits) (any, error) {
	v, n, err := codec.DecodeTerm(m.Term, lim)
	if err != nil {
		return nil, err
	}
	if n != len(m.Term) {
		return nil, fmt.Errorf("%w: %d bytes after the message term", codec.ErrCorrupt, len(m.Term)-n)
	}
	return v, nil
}

// MessageIter walks the records of a batch frame without allocating. Not
// safe for concurrent use.
//
//	it := f.Messages()
//	for it.Next() { use(it.Message()) }
//	if err := it.Err(); err != nil { close the link }
type MessageIter struct {
	r   reader
	m   Message
	err error
}

// Messages returns an iterator over a batch frame's records (safe from any
// goroutine while the payload is valid). For any other
// kind the iterator yields nothing and Err reports codec.ErrCorrupt.
func (f Frame) Messages() MessageIter {
	if f.Kind != KindBatch {
		return MessageIter{err: fmt.Errorf("%w: %v frame is not a batch", codec.ErrCorrupt, f.Kind)}
	}
	return MessageIter{r: reader{b: f.Payload}}
}

// Next advances to the next record; false at the end or on error.
func (it *MessageIter) Next() bool {
	if it.err != nil || it.r.off >= len(it.r.b) {
		return false
	}
	to, err := it.r.uvarint()
	if err != nil {
		it.err = err
		return false
	}
	from, err := it.r.uvarint()
	if err != nil {
		it.err = err
		return false
	}
	n, err := it.r.uvarint()
	if err != nil {
		it.err = err
		return false
	}
	if n == 0 || n > uint64(len(it.r.b)-it.r.off) {
		it.err = fmt.Errorf("%w: message term of %d bytes, %d left in the batch", codec.ErrCorrupt, n, len(it.r.b)-it.r.off)
		return false
	}
	term := it.r.b[it.r.off : it.r.off+int(n)]
	it.r.off += int(n)
	// Field by field: a Message built on the stack and copied in was
	// read back with 16-byte moves of 8-byte stores, a store-forwarding
	// stall on every record.
	it.m.To, it.m.From, it.m.Term = to, from, term
	return true
}

// Message returns the current record.
func (it *MessageIter) Message() Message { return it.m }

// Err returns the error that stopped the iteration, if any.
func (it *MessageIter) Err() error { return it.err }
