package wire

// Invariants of the Batcher:
//   - Output order equals item order: consecutive uncompressed message items
//     are merged into one batch frame, every other item is passed through
//     (possibly compressed) in place.
//   - A batch frame never exceeds MaxBatch payload bytes (before
//     compression) unless a single record is larger.
//   - In steady state (dst and the scratch buffer grown) Drain does not
//     allocate.

import (
	"encoding/binary"

	"github.com/klauspost/compress/s2"
)

// Batcher defaults.
const (
	DefaultMaxBatch      = 256 << 10
	DefaultCompressAbove = 4 << 10
)

// BatcherOptions configure a [Batcher].
type BatcherOptions struct {
	// Features is the negotiated feature set of the link; FeatureS2 enables
	// compression.
	Features Features
	// MaxBatch caps the payload of one batch frame (default
	// DefaultMaxBatch). Keep it at most the peer's MaxFrame.
	MaxBatch int
	// CompressAbove is the smallest payload worth compressing (default
	// DefaultCompressAbove). A payload that does not shrink by at least 1/8
	// is sent uncompressed.
	CompressAbove int
}

// Batcher turns a drained run of items (message items from AppendMessage,
// fragment items, control frames) into the bytes to write. One per link;
// not safe for concurrent use: it runs on the link's event loop.
type Batcher struct {
	opt     BatcherOptions
	scratch []byte
	// Counters for metrics, updated by Drain.
	Frames, Messages, Compressed uint64
	BytesIn, BytesOut            uint64
	MessageBytes                 uint64 // bytes of the message items among BytesIn
}

// NewBatcher returns a batcher for one link.
func NewBatcher(opt BatcherOptions) *Batcher {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = DefaultMaxBatch
	}
	if opt.CompressAbove <= 0 {
		opt.CompressAbove = DefaultCompressAbove
	}
	return &Batcher{opt: opt}
}

// Drain appends to dst the wire bytes for items, in order, and returns the
// extended dst. Its signature is the transport's drain hook. Items must be
// whole frames as produced by this package; a malformed item is passed
// through untouched (the peer will refuse it). Not safe for concurrent use.
func (b *Batcher) Drain(dst []byte, items [][]byte) []byte {
	if len(items) == 1 && b.whole(items[0]) {
		// One message item, as a direct write drains it: the batch frame
		// the loop below would build around its record is the item itself.
		it := items[0]
		n := uint64(len(it))
		b.BytesIn += n
		b.Messages++
		b.MessageBytes += n
		b.Frames++
		b.BytesOut += n
		return append(dst, it...)
	}
	batchAt := -1 // offset in dst of the open batch frame's header
	for _, it := range items {
		b.BytesIn += uint64(len(it))
		if len(it) >= HeaderSize && it[0] == Version && Kind(it[1]) == KindBatch && it[2] == 0 {
			rec := it[HeaderSize:]
			if batchAt >= 0 && len(dst)-batchAt-HeaderSize+len(rec) > b.opt.MaxBatch {
				dst = b.closeBatch(dst, batchAt)
				batchAt = -1
			}
			if batchAt < 0 {
				batchAt = len(dst)
				dst = AppendHeader(dst, KindBatch, 0, 0)
			}
			dst = append(dst, rec...)
			b.Messages++
			b.MessageBytes += uint64(len(it))
			continue
		}
		if batchAt >= 0 {
			dst = b.closeBatch(dst, batchAt)
			batchAt = -1
		}
		if len(it) >= HeaderSize && Kind(it[1]) == KindFragment && it[2] == 0 {
			at := len(dst)
			dst = append(dst, it...)
			dst = b.seal(dst, at)
			continue
		}
		dst = append(dst, it...)
		b.Frames++
	}
	if batchAt >= 0 {
		dst = b.closeBatch(dst, batchAt)
	}
	return dst
}

// whole reports whether it is a message item that Drain, given it alone,
// would send as it is: a batch frame without flags whose header gives its
// length, too short to compress.
func (b *Batcher) whole(it []byte) bool {
	return len(it) >= HeaderSize && it[0] == Version && Kind(it[1]) == KindBatch && it[2] == 0 && it[3] == 0 &&
		int(binary.BigEndian.Uint32(it[4:])) == len(it)-HeaderSize &&
		(b.opt.Features&FeatureS2 == 0 || len(it)-HeaderSize < b.opt.CompressAbove)
}

func (b *Batcher) closeBatch(dst []byte, at int) []byte {
	return b.seal(dst, at)
}

// seal patches the length of the frame at dst[at:] and compresses its
// payload in place when the link allows it and it pays.
func (b *Batcher) seal(dst []byte, at int) []byte {
	b.Frames++
	p := dst[at+HeaderSize:]
	if b.opt.Features&FeatureS2 != 0 && len(p) >= b.opt.CompressAbove {
		need := s2.MaxEncodedLen(len(p))
		if need > 0 {
			if cap(b.scratch) < need {
				b.scratch = make([]byte, need)
			}
			c := s2.Encode(b.scratch[:need], p)
			if len(c) < len(p)-len(p)/8 {
				dst = append(dst[:at+HeaderSize], c...)
				dst[at+2] |= FlagS2
				b.Compressed++
			}
		}
	}
	binary.BigEndian.PutUint32(dst[at+4:], uint32(len(dst)-at-HeaderSize))
	b.BytesOut += uint64(len(dst) - at)
	return dst
}
