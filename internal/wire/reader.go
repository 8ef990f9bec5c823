package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/intern"
)

// maxNameBytes bounds node names (as codec does) and actor names.
const maxNameBytes = 255

var (
	errTrunc  = fmt.Errorf("%w: input ends inside a field", codec.ErrTruncated)
	errVarint = fmt.Errorf("%w: bad varint", codec.ErrCorrupt)
)

func appendUvarint(dst []byte, x uint64) []byte {
	for x >= 0x80 {
		dst = append(dst, byte(x)|0x80)
		x >>= 7
	}
	return append(dst, byte(x))
}

func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// appendIdent appends a PID or Ref body: the term encoding without its tag.
func appendIdent(dst []byte, node string, inc, id uint64) []byte {
	dst = appendUvarint(dst, uint64(len(node)))
	dst = append(dst, node...)
	dst = binary.LittleEndian.AppendUint64(dst, inc)
	return appendUvarint(dst, id)
}

func appendPID(dst []byte, p codec.PID) []byte { return appendIdent(dst, p.Node, p.Incarnation, p.ID) }
func appendRef(dst []byte, r codec.Ref) []byte { return appendIdent(dst, r.Node, r.Incarnation, r.ID) }

// reader reads the fields of a payload. The methods that return no error
// keep the first one (sticky) in err; end reports it.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) uvarint() (uint64, error) {
	// One byte is the common case (IDs, lengths), and this runs three
	// times a message on the loop (MessageIter.Next). Two and three bytes
	// are a link's request numbers and a node's process serials past 127
	// and 16 383 (two a remote spawn on each side): read here, they cost
	// about a fifth of binary.Uvarint's loop and call. Any length decodes
	// to what binary.Uvarint gives (TestUvarintIsBinaryUvarint).
	if r.off < len(r.b) && r.b[r.off] < 0x80 {
		x := r.b[r.off]
		r.off++
		return uint64(x), nil
	}
	b := r.b[r.off:]
	if len(b) > 1 && b[1] < 0x80 {
		r.off += 2
		return uint64(b[0]&0x7f) | uint64(b[1])<<7, nil
	}
	if len(b) > 2 && b[2] < 0x80 {
		r.off += 3
		return uint64(b[0]&0x7f) | uint64(b[1]&0x7f)<<7 | uint64(b[2])<<14, nil
	}
	x, n := binary.Uvarint(b)
	switch {
	case n > 0:
		r.off += n
		return x, nil
	case n == 0:
		return 0, errTrunc
	}
	return 0, errVarint // over 64 bits
}

// u reads a uvarint into the sticky error.
func (r *reader) u() uint64 {
	if r.err != nil {
		return 0
	}
	x, err := r.uvarint()
	r.err = err
	return x
}

func (r *reader) fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b)-r.off < n {
		r.err = errTrunc
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

// lenBytes reads a uvarint length bounded by max, then the bytes (aliasing
// the payload).
func (r *reader) lenBytes(max int) []byte {
	n := r.u()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.err = fmt.Errorf("%w: field of %d bytes, at most %d", codec.ErrCorrupt, n, max)
		return nil
	}
	return r.fixed(int(n))
}

func (r *reader) str(max int) string { return string(r.lenBytes(max)) }

func (r *reader) bool() bool {
	b := r.fixed(1)
	if r.err != nil {
		return false
	}
	if b[0] > 1 {
		r.err = fmt.Errorf("%w: bool byte %d", codec.ErrCorrupt, b[0])
		return false
	}
	return b[0] == 1
}

func (r *reader) ident() (node string, inc, id uint64) { return r.identLike("") }

// identLike is ident for an identity that most likely names the node
// known (a reply's process is its sender's): a name equal to known is
// returned as known, with no look-up in the intern table (the name's hash
// and a map probe, about 150 instructions); any other is interned.
func (r *reader) identLike(known string) (node string, inc, id uint64) {
	nb := r.lenBytes(maxNameBytes)
	ib := r.fixed(8)
	id = r.u()
	if r.err != nil {
		return "", 0, 0
	}
	if node = known; string(nb) != known {
		node = intern.Bytes(nb)
	}
	return node, binary.LittleEndian.Uint64(ib), id
}

func (r *reader) pid() codec.PID { return r.pidLike("") }

// pidLike is pid through identLike.
func (r *reader) pidLike(known string) codec.PID {
	n, i, id := r.identLike(known)
	return codec.PID{Node: n, Incarnation: i, ID: id}
}

func (r *reader) ref() codec.Ref {
	n, i, id := r.ident()
	return codec.Ref{Node: n, Incarnation: i, ID: id}
}

// term decodes one tagged term in place.
func (r *reader) term(lim *codec.Limits) any {
	if r.err != nil {
		return nil
	}
	v, n, err := codec.DecodeTerm(r.b[r.off:], lim)
	r.err = err
	r.off += n
	return v
}

// end reports the sticky error, or ErrCorrupt if bytes are left over.
func (r *reader) end(what string) error {
	if r.err != nil {
		return fmt.Errorf("%s: %w", what, r.err)
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%w: %s: %d trailing bytes", codec.ErrCorrupt, what, len(r.b)-r.off)
	}
	return nil
}
