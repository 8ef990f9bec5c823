package codec

// Invariants of framing:
//   - A frame is an 8-byte header then Length payload bytes; Length is
//     checked against Limits.MaxFrame before anything is read or allocated.
//   - FrameReader.Next either returns one whole frame, ErrNeedMore (a prefix
//     of a valid frame: read more), or another error (the stream is bad and
//     the link must be closed). It never consumes a partial frame.
//   - A message item from AppendMessage is itself a valid batch frame of one
//     record, so the Batcher merges runs of them by concatenating records.

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// Version is the wire version written in every frame header.
const Version = 1

// HeaderSize is the size of a frame header.
const HeaderSize = 8

// Kind says what a frame carries.
type Kind uint8

// Frame kinds.
const (
	KindBatch        Kind = 1  // message records
	KindFragment     Kind = 2  // one piece of a large message
	KindSpawnRequest Kind = 3  // SpawnRequest
	KindSpawnReply   Kind = 4  // SpawnReply
	KindLink         Kind = 5  // Link
	KindUnlink       Kind = 6  // Link (same shape)
	KindExit         Kind = 7  // Exit
	KindMonitor      Kind = 8  // Monitor
	KindDemonitor    Kind = 9  // Monitor (same shape)
	KindDown         Kind = 10 // Down
	KindRegistry     Kind = 11 // Registry: opaque payload owned by package global
	KindTick         Kind = 12 // Tick: heartbeat ping
	KindTock         Kind = 13 // Tick: heartbeat echo
	KindNodes        Kind = 14 // Nodes: node-list gossip
	KindHello        Kind = 15 // Hello: handshake greeting
	KindProof        Kind = 16 // Proof: handshake cookie proof
	kindMax               = KindProof
)

var kindNames = [...]string{"", "batch", "fragment", "spawn-request", "spawn-reply", "link", "unlink", "exit",
	"monitor", "demonitor", "down", "registry", "tick", "tock", "nodes", "hello", "proof"}

// String names the kind, for logs and metrics labels. Safe from any
// goroutine.
func (k Kind) String() string {
	if k > 0 && k <= kindMax {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Frame flags.
const (
	// FlagS2 marks a payload compressed as one S2 block.
	FlagS2     uint8 = 1 << 0
	knownFlags       = FlagS2
)

// Features are per-link capabilities each peer advertises in its hello; a
// link uses the intersection ([Negotiate]).
type Features uint64

// Feature flags.
const (
	// FeatureS2 means the peer decodes S2-compressed frames.
	FeatureS2 Features = 1 << 0
	// FeatureFragments means the peer reassembles fragmented messages.
	FeatureFragments Features = 1 << 1
	// SupportedFeatures is everything this package implements.
	SupportedFeatures = FeatureS2 | FeatureFragments
)

// Negotiate returns the features both peers advertised. Pure function.
func Negotiate(local, remote Features) Features { return local & remote }

// Frame is one parsed frame. Payload aliases the reader's input or its
// decompression buffer: it is valid until the next call to Next.
type Frame struct {
	Kind    Kind
	Flags   uint8 // as on the wire; Payload is already decompressed
	Payload []byte
}

// AppendHeader appends a frame header for a payload of n bytes. Safe from
// any goroutine.
func AppendHeader(dst []byte, k Kind, flags uint8, n int) []byte {
	dst = append(dst, Version, byte(k), flags, 0)
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// beginFrame appends a header with a zero length and returns its offset.
func beginFrame(dst []byte, k Kind) ([]byte, int) {
	return AppendHeader(dst, k, 0, 0), len(dst)
}

func endFrame(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at+4:], uint32(len(dst)-at-HeaderSize))
	return dst
}

// AppendMessage appends one message as a self-contained item: a batch frame
// holding one record (uvarint to, uvarint from, uvarint term length, term).
// to and from are process IDs; their node and incarnation are implied by the
// link. It does not allocate for builtin terms when dst has room. On error
// dst is returned with its original length. Safe from any goroutine.
//
// If the item is longer than the link's fragment size, split it with a
// [Fragmenter] instead of enqueueing it whole.
func AppendMessage(dst []byte, to, from uint64, msg any) ([]byte, error) {
	start := len(dst)
	dst, at := beginFrame(dst, KindBatch)
	dst = appendUvarint(dst, to)
	dst = appendUvarint(dst, from)
	lenAt := len(dst)
	dst = append(dst, 0)
	out, err := appendTerm(dst, msg, 0)
	if err != nil {
		return dst[:start], err
	}
	out = patchLength(out, lenAt)
	return endFrame(out, at), nil
}

// FrameReader parses frames from a byte stream. Use one per link direction;
// it is not safe for concurrent use (it runs on the link's event loop).
type FrameReader struct {
	lim      Limits
	features Features
	scratch  []byte // decompression buffer, reused
}

// NewFrameReader returns a reader enforcing lim (nil: defaults) that accepts
// compressed frames only if features (the negotiated set) allow them.
func NewFrameReader(lim *Limits, features Features) *FrameReader {
	return &FrameReader{lim: lim.resolve(), features: features}
}

var errNeedMore = ErrNeedMore

// Next parses the frame at the start of b. It returns the frame and the
// number of bytes it took; ErrNeedMore (n == 0) when b holds only a prefix of
// a frame; any other error means the stream is corrupt or over a limit and
// the link should be closed. Frame.Payload is valid until the next call.
func (r *FrameReader) Next(b []byte) (f Frame, n int, err error) {
	if len(b) < HeaderSize {
		if len(b) > 0 && b[0] != Version {
			return Frame{}, 0, fmt.Errorf("%w: %d", ErrVersion, b[0])
		}
		return Frame{}, 0, errNeedMore
	}
	if b[0] != Version {
		return Frame{}, 0, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	k := Kind(b[1])
	if k == 0 || k > kindMax {
		return Frame{}, 0, fmt.Errorf("%w: unknown frame kind %d", ErrCorrupt, b[1])
	}
	flags := b[2]
	if flags&^knownFlags != 0 || b[3] != 0 {
		return Frame{}, 0, fmt.Errorf("%w: unknown frame flags %#x/%#x", ErrCorrupt, flags, b[3])
	}
	size := binary.BigEndian.Uint32(b[4:])
	if uint64(size) > uint64(r.lim.MaxFrame) {
		return Frame{}, 0, fmt.Errorf("%w: frame of %d bytes over MaxFrame %d", ErrLimit, size, r.lim.MaxFrame)
	}
	end := HeaderSize + int(size)
	if len(b) < end {
		return Frame{}, 0, errNeedMore
	}
	p := b[HeaderSize:end]
	if flags&FlagS2 != 0 {
		if r.features&FeatureS2 == 0 {
			return Frame{}, 0, fmt.Errorf("%w: compressed frame on a link without S2", ErrCorrupt)
		}
		if p, err = r.inflate(p); err != nil {
			return Frame{}, 0, err
		}
	}
	return Frame{Kind: k, Flags: flags, Payload: p}, end, nil
}

// inflate decompresses an S2 block, refusing one whose announced size is
// over MaxFrame before allocating.
func (r *FrameReader) inflate(p []byte) ([]byte, error) {
	n, err := s2.DecodedLen(p)
	if err != nil {
		return nil, fmt.Errorf("%w: s2: %w", ErrCorrupt, err)
	}
	if n > r.lim.MaxFrame {
		return nil, fmt.Errorf("%w: frame decompresses to %d bytes, over MaxFrame %d", ErrLimit, n, r.lim.MaxFrame)
	}
	if cap(r.scratch) < n {
		r.scratch = make([]byte, n)
	}
	out, err := s2.Decode(r.scratch[:n], p)
	if err != nil {
		return nil, fmt.Errorf("%w: s2: %w", ErrCorrupt, err)
	}
	return out, nil
}

// Message is one message record. Term aliases the frame (or reassembly
// buffer) it came from: decode or copy it before the next call that reads.
type Message struct {
	To, From uint64
	Term     []byte
}

// Decode decodes the message's term, which must fill Term exactly. Safe
// from any goroutine while Term is valid.
func (m Message) Decode(lim *Limits) (any, error) {
	v, n, err := DecodeTerm(m.Term, lim)
	if err != nil {
		return nil, err
	}
	if n != len(m.Term) {
		return nil, fmt.Errorf("%w: %d bytes after the message term", ErrCorrupt, len(m.Term)-n)
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
	d   decoder
	m   Message
	err error
}

// Messages returns an iterator over a batch frame's records (safe from any
// goroutine while the payload is valid). For any other
// kind the iterator yields nothing and Err reports ErrCorrupt.
func (f Frame) Messages() MessageIter {
	if f.Kind != KindBatch {
		return MessageIter{err: fmt.Errorf("%w: %v frame is not a batch", ErrCorrupt, f.Kind)}
	}
	return MessageIter{d: decoder{b: f.Payload}}
}

// Next advances to the next record; false at the end or on error.
func (it *MessageIter) Next() bool {
	if it.err != nil || it.d.off >= len(it.d.b) {
		return false
	}
	to, err := it.d.uvarint()
	if err != nil {
		it.err = err
		return false
	}
	from, err := it.d.uvarint()
	if err != nil {
		it.err = err
		return false
	}
	n, err := it.d.uvarint()
	if err != nil {
		it.err = err
		return false
	}
	if n == 0 || n > uint64(len(it.d.b)-it.d.off) {
		it.err = fmt.Errorf("%w: message term of %d bytes, %d left in the batch", ErrCorrupt, n, len(it.d.b)-it.d.off)
		return false
	}
	term := it.d.b[it.d.off : it.d.off+int(n)]
	it.d.off += int(n)
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
