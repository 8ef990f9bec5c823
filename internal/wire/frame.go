package wire

// Invariants of framing:
//   - A frame is an 8-byte header then Length payload bytes; Length is
//     checked against the reader's max frame before anything is read or
//     allocated.
//   - FrameReader.Next either returns one whole frame, ErrNeedMore (a prefix
//     of a valid frame: read more), or another error (the stream is bad and
//     the link must be closed). It never consumes a partial frame.
//   - A message item from AppendMessage is itself a valid batch frame of one
//     record, so the Batcher merges runs of them by concatenating records.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/meshrt/mesh/codec"
)

// Version is the wire version written in every frame header.
const Version = 1

// HeaderSize is the size of a frame header.
const HeaderSize = 8

// DefaultMaxFrame is the default bound on one frame's payload, before and
// after decompression.
const DefaultMaxFrame = 4 << 20

// Errors of the framing layer. Corrupt input and input over a limit wrap
// codec.ErrCorrupt and codec.ErrLimit, like the terms inside.
var (
	// ErrVersion reports a frame of a wire version this package does not
	// speak.
	ErrVersion = errors.New("wire: unsupported wire version")
	// ErrNeedMore is returned by [FrameReader.Next] when the bytes given
	// hold no complete frame yet: read more and call again. It is never
	// wrapped, so == works as well as errors.Is.
	ErrNeedMore = errors.New("wire: need more bytes")
)

// Kind says what a frame carries.
type Kind uint8

// Frame kinds. Each control kind has its own type (the comment names it).
const (
	KindBatch        Kind = 1  // message records
	KindFragment     Kind = 2  // one piece of a large message
	KindSpawnRequest Kind = 3  // SpawnRequest
	KindSpawnReply   Kind = 4  // SpawnReply
	KindLink         Kind = 5  // Link
	KindUnlink       Kind = 6  // Unlink
	KindExit         Kind = 7  // Exit
	KindMonitor      Kind = 8  // Monitor
	KindDemonitor    Kind = 9  // Demonitor
	KindDown         Kind = 10 // Down
	KindRegistry     Kind = 11 // Registry: opaque payload owned by package global
	KindTick         Kind = 12 // Tick: heartbeat ping
	KindTock         Kind = 13 // Tock: heartbeat echo
	KindNodes        Kind = 14 // Nodes: node-list gossip
	// 15 and 16 were the handshake's hello and proof: retired, never reused.
	KindGoodbye Kind = 17 // Goodbye: the sender is about to close the link, and why
	KindGroups  Kind = 18 // Groups: opaque payload owned by the node's process groups
	KindPublish Kind = 19 // Publish: one message for every local member of a group
	KindSync    Kind = 20 // Sync: answer with an Ack once every frame before it is handled
	KindAck     Kind = 21 // Ack: frames handled on a companion connection, or a Sync's answer
	kindMax          = KindAck
)

var kindNames = [...]string{"", "batch", "fragment", "spawn-request", "spawn-reply", "link", "unlink", "exit",
	"monitor", "demonitor", "down", "registry", "tick", "tock", "nodes", "", "", "goodbye", "groups", "publish", "sync", "ack"}

// String names the kind, for logs and metrics labels. Safe from any
// goroutine.
func (k Kind) String() string {
	if k > 0 && k <= kindMax && kindNames[k] != "" {
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
// link uses the bits both set (local & remote).
type Features uint64

// Feature flags.
const (
	// FeatureS2 means the peer decodes S2-compressed frames.
	FeatureS2 Features = 1 << 0
	// FeatureFragments means the peer reassembles fragmented messages.
	FeatureFragments Features = 1 << 1
	// FeatureCompanion means the peer takes a companion connection: a
	// second connection of the link, dialled by the node whose bulk data
	// (large messages' fragments) it carries, so that the first carries
	// small messages and control frames past it (package node's
	// companion.go).
	FeatureCompanion Features = 1 << 2
	// SupportedFeatures is everything this package implements.
	SupportedFeatures = FeatureS2 | FeatureFragments | FeatureCompanion

	// RoleCompanion is set in a hello's features, and in no link's, by
	// a node that dials a companion connection of the link it already
	// has with the acceptor.
	RoleCompanion Features = 1 << 63
)

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

// FrameReader parses frames from a byte stream. Use one per link direction;
// it is not safe for concurrent use (it runs on the link's event loop).
type FrameReader struct {
	maxFrame int
	features Features
	scratch  []byte // decompression buffer, reused
}

// NewFrameReader returns a reader that refuses frames over maxFrame payload
// bytes (<= 0: DefaultMaxFrame) and accepts compressed frames only if
// features (the negotiated set) allow them. Safe from any goroutine.
func NewFrameReader(maxFrame int, features Features) *FrameReader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &FrameReader{maxFrame: maxFrame, features: features}
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
	if k == 0 || k > kindMax || kindNames[k] == "" {
		return Frame{}, 0, fmt.Errorf("%w: unknown frame kind %d", codec.ErrCorrupt, b[1])
	}
	flags := b[2]
	if flags&^knownFlags != 0 || b[3] != 0 {
		return Frame{}, 0, fmt.Errorf("%w: unknown frame flags %#x/%#x", codec.ErrCorrupt, flags, b[3])
	}
	size := binary.BigEndian.Uint32(b[4:])
	if uint64(size) > uint64(r.maxFrame) {
		return Frame{}, 0, fmt.Errorf("%w: frame of %d bytes over the max frame %d", codec.ErrLimit, size, r.maxFrame)
	}
	end := HeaderSize + int(size)
	if len(b) < end {
		return Frame{}, 0, errNeedMore
	}
	p := b[HeaderSize:end]
	if flags&FlagS2 != 0 {
		if r.features&FeatureS2 == 0 {
			return Frame{}, 0, fmt.Errorf("%w: compressed frame on a link without S2", codec.ErrCorrupt)
		}
		if p, err = r.inflate(p); err != nil {
			return Frame{}, 0, err
		}
	}
	return Frame{Kind: k, Flags: flags, Payload: p}, end, nil
}

// inflate decompresses an S2 block, refusing one whose announced size is
// over the max frame before allocating.
func (r *FrameReader) inflate(p []byte) ([]byte, error) {
	n, err := s2.DecodedLen(p)
	if err != nil {
		return nil, fmt.Errorf("%w: s2: %w", codec.ErrCorrupt, err)
	}
	if n > r.maxFrame {
		return nil, fmt.Errorf("%w: frame decompresses to %d bytes, over the max frame %d", codec.ErrLimit, n, r.maxFrame)
	}
	if cap(r.scratch) < n {
		r.scratch = make([]byte, n)
	}
	out, err := s2.Decode(r.scratch[:n], p)
	if err != nil {
		return nil, fmt.Errorf("%w: s2: %w", codec.ErrCorrupt, err)
	}
	return out, nil
}
