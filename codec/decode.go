package codec

// Invariants of the term decoder:
//   - Every length and count is checked against the bytes that remain and
//     against the Limits before anything is allocated, so an allocation is
//     never larger than a small multiple of the input.
//   - The decoder never panics on any input (fuzzed) and recursion is
//     bounded by Limits.MaxDepth.
//   - A value decodes to the Go type it was encoded from.

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/meshrt/mesh/internal/intern"
)

// Unmarshal decodes one term that fills all of b, with default limits.
// It is safe to call from any goroutine.
func Unmarshal(b []byte) (any, error) {
	v, n, err := DecodeTerm(b, nil)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes after the term", ErrCorrupt, len(b)-n)
	}
	return v, nil
}

// DecodeTerm decodes the term at the start of b and returns it with the
// number of bytes it used. lim nil means [DefaultLimits]; a b longer than
// lim.MaxMessage is refused whole, so pass just the term's bytes. The result never aliases b (a registered type's
// UnmarshalBinary sees a sub-slice of b and must copy what it keeps). It is
// safe to call from any goroutine.
func DecodeTerm(b []byte, lim *Limits) (v any, n int, err error) {
	return decodeTerm(b, lim, nil)
}

// DecodeTermSlab is [DecodeTerm] for a goroutine that decodes many
// messages in a row: the boxes of small strings and atoms (a string header
// and its bytes, up to 232 bytes) are carved from *slab, a pointer-free
// block of 1 KiB that it replaces when it runs short, instead of taking an
// allocation each. A small string or atom equal to the last one carved from
// the slab is that same value, not a new copy (strings are immutable: the
// sharing cannot be seen), so a stream that repeats a value takes no memory
// for it. A decoded value keeps the slab it was carved from alive, so a
// caller that keeps one small string out of many holds up to 1 KiB for it;
// drop *slab (set it to nil) when the stream pauses. The caller owns *slab:
// one per goroutine, never shared, starting nil and then only what the
// previous call left there (anything else is replaced by a fresh block).
func DecodeTermSlab(b []byte, lim *Limits, slab *[]byte) (v any, n int, err error) {
	return decodeTerm(b, lim, slab)
}

func decodeTerm(b []byte, lim *Limits, slab *[]byte) (v any, n int, err error) {
	// The limits travel as four ints, not a copied Limits struct: copying
	// the struct here cost a third of a small message's decode (the
	// compiler's overlapping 16-byte moves stall store forwarding).
	depth, elems, str, maxMsg, expand := lim.termLimits()
	if len(b) > maxMsg {
		return nil, 0, fmt.Errorf("%w: term of %d bytes over MaxMessage %d", ErrLimit, len(b), maxMsg)
	}
	// Field by field, for the same reason: a literal is built aside and
	// copied in with 16-byte moves.
	var d decoder
	d.b, d.maxDepth, d.maxString, d.elems = b, depth, str, elems
	d.mem = expand*len(b) + DecodeSlack
	d.slab = slab
	v, err = d.term(0)
	if err != nil {
		return nil, 0, err
	}
	return v, d.off, nil
}

type decoder struct {
	b         []byte
	off       int
	maxDepth  int     // Limits.MaxDepth, resolved
	maxString int     // Limits.MaxString, resolved
	elems     int     // elements still allowed in this term
	mem       int     // bytes the decode may still allocate (Limits.MaxExpansion)
	slab      *[]byte // DecodeTermSlab's slab; nil: a box is an allocation
}

var (
	errTrunc      = fmt.Errorf("%w: input ends inside a term", ErrTruncated)
	errVarint     = fmt.Errorf("%w: bad varint", ErrCorrupt)
	errDepth      = fmt.Errorf("%w: nesting over MaxDepth", ErrLimit)
	errElems      = fmt.Errorf("%w: more elements than MaxElems", ErrLimit)
	errStringSize = fmt.Errorf("%w: string over MaxString", ErrLimit)
	errNameSize   = fmt.Errorf("%w: name over %d bytes", ErrCorrupt, maxNameBytes)
	errExpansion  = fmt.Errorf("%w: the value would decode to more memory than MaxExpansion allows", ErrLimit)
)

// Estimated allocation of decoded values, charged against decoder.mem: an
// interface slot, a string or slice header in its box, a map's header and
// each map entry with its share of the table.
const (
	costSlot     = 16
	costBox      = 24
	costMap      = 48
	costMapEntry = 64
)

// charge takes n bytes from the decode's allocation budget.
func (d *decoder) charge(n int) error {
	if n > d.mem {
		return errExpansion
	}
	d.mem -= n
	return nil
}

func (d *decoder) uvarint() (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if d.off >= len(d.b) {
			return 0, errTrunc
		}
		c := d.b[d.off]
		d.off++
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, errVarint
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, errVarint
}

func (d *decoder) varint() (int64, error) {
	u, err := d.uvarint()
	return int64(u>>1) ^ -int64(u&1), err
}

func (d *decoder) byte1() (byte, error) {
	if d.off >= len(d.b) {
		return 0, errTrunc
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *decoder) fixed(n int) ([]byte, error) {
	if len(d.b)-d.off < n {
		return nil, errTrunc
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p, nil
}

// lenBytes reads a uvarint length bounded by max and the remaining input,
// then the bytes (aliasing the input).
func (d *decoder) lenBytes(max int) ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, errStringSize
	}
	if n > 0 { // an empty string or atom allocates nothing
		if err := d.charge(int(n) + costBox); err != nil {
			return nil, err
		}
	}
	return d.fixed(int(n))
}

// count reads an element count, bounded by MaxElems and by the remaining
// input (every element takes at least one byte).
func (d *decoder) count() (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(d.elems) {
		return 0, errElems
	}
	if n > uint64(len(d.b)-d.off) {
		return 0, errTrunc
	}
	if err := d.charge(int(n)*costSlot + costBox); err != nil {
		return 0, err
	}
	d.elems -= int(n)
	return int(n), nil
}

// name reads a node or type name (at most maxNameBytes).
func (d *decoder) name() ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > maxNameBytes {
		return nil, errNameSize
	}
	return d.fixed(int(n))
}

func (d *decoder) ident() (node string, inc, id uint64, err error) {
	nb, err := d.name()
	if err != nil {
		return "", 0, 0, err
	}
	ib, err := d.fixed(8)
	if err != nil {
		return "", 0, 0, err
	}
	id, err = d.uvarint()
	if err != nil {
		return "", 0, 0, err
	}
	return intern.Bytes(nb), binary.LittleEndian.Uint64(ib), id, nil
}

func (d *decoder) pid() (PID, error) {
	n, i, id, err := d.ident()
	return PID{Node: n, Incarnation: i, ID: id}, err
}

func (d *decoder) ref() (Ref, error) {
	n, i, id, err := d.ident()
	return Ref{Node: n, Incarnation: i, ID: id}, err
}

func (d *decoder) term(depth int) (any, error) {
	tag, err := d.byte1()
	if err != nil {
		return nil, err
	}
	switch tag {
	case tagNil:
		return nil, nil
	case tagFalse:
		return false, nil
	case tagTrue:
		return true, nil
	case tagString:
		p, err := d.lenBytes(d.maxString)
		if err != nil {
			return nil, err
		}
		return d.box(p, stringType), nil
	case tagAtom:
		p, err := d.lenBytes(d.maxString)
		if err != nil {
			return nil, err
		}
		return d.box(p, atomType), nil
	case tagBytes:
		p, err := d.lenBytes(d.maxString)
		if err != nil {
			return nil, err
		}
		if len(p) == 0 {
			return []byte{}, nil
		}
		return append([]byte(nil), p...), nil // no zeroing before the copy
	case tagInt, tagInt16, tagInt32, tagInt64:
		x, err := d.varint()
		if err != nil {
			return nil, err
		}
		switch tag {
		case tagInt:
			if int64(int(x)) != x {
				return nil, fmt.Errorf("%w: int overflows this platform", ErrCorrupt)
			}
			return int(x), nil
		case tagInt16:
			if int64(int16(x)) != x {
				return nil, fmt.Errorf("%w: int16 out of range", ErrCorrupt)
			}
			return int16(x), nil
		case tagInt32:
			if int64(int32(x)) != x {
				return nil, fmt.Errorf("%w: int32 out of range", ErrCorrupt)
			}
			return int32(x), nil
		}
		return x, nil
	case tagInt8:
		c, err := d.byte1()
		return int8(c), err
	case tagUint8:
		c, err := d.byte1()
		return c, err
	case tagUint, tagUint16, tagUint32, tagUint64, tagUintptr:
		x, err := d.uvarint()
		if err != nil {
			return nil, err
		}
		switch tag {
		case tagUint:
			if uint64(uint(x)) != x {
				return nil, fmt.Errorf("%w: uint overflows this platform", ErrCorrupt)
			}
			return uint(x), nil
		case tagUint16:
			if uint64(uint16(x)) != x {
				return nil, fmt.Errorf("%w: uint16 out of range", ErrCorrupt)
			}
			return uint16(x), nil
		case tagUint32:
			if uint64(uint32(x)) != x {
				return nil, fmt.Errorf("%w: uint32 out of range", ErrCorrupt)
			}
			return uint32(x), nil
		case tagUintptr:
			if uint64(uintptr(x)) != x {
				return nil, fmt.Errorf("%w: uintptr out of range", ErrCorrupt)
			}
			return uintptr(x), nil
		}
		return x, nil
	case tagFloat32:
		p, err := d.fixed(4)
		if err != nil {
			return nil, err
		}
		return math.Float32frombits(binary.LittleEndian.Uint32(p)), nil
	case tagFloat64:
		p, err := d.fixed(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(p)), nil
	case tagPID:
		return d.pid()
	case tagRef:
		return d.ref()
	case tagTuple, tagList:
		if depth >= d.maxDepth {
			return nil, errDepth
		}
		n, err := d.count()
		if err != nil {
			return nil, err
		}
		typ := listType
		if tag == tagTuple {
			typ = tupleType
		}
		xs, v := newSeq(n, typ)
		for i := range xs {
			if xs[i], err = d.term(depth + 1); err != nil {
				return nil, err
			}
		}
		return v, nil
	case tagMap:
		if depth >= d.maxDepth {
			return nil, errDepth
		}
		n, err := d.count()
		if err != nil {
			return nil, err
		}
		if err := d.charge(costMap + n*(costMapEntry-costSlot)); err != nil {
			return nil, err
		}
		m := make(map[string]any, n)
		for range n {
			k, err := d.lenBytes(d.maxString)
			if err != nil {
				return nil, err
			}
			v, err := d.term(depth + 1)
			if err != nil {
				return nil, err
			}
			ks := string(k)
			if _, dup := m[ks]; dup {
				return nil, fmt.Errorf("%w: duplicate map key", ErrCorrupt)
			}
			m[ks] = v
		}
		return m, nil
	case tagUser:
		if depth >= d.maxDepth {
			return nil, errDepth
		}
		return d.user(depth)
	case tagNilBytes:
		return []byte(nil), nil
	case tagNilTuple:
		return Tuple(nil), nil
	case tagNilList:
		return []any(nil), nil
	case tagNilMap:
		return map[string]any(nil), nil
	case tagStrings, tagInts, tagStringMap, tagIntMap, tagTime, tagDuration, tagError:
		return d.everyday(tag)
	}
	return nil, fmt.Errorf("%w: unknown term tag 0x%02x", ErrCorrupt, tag)
}

// eface is the runtime layout of an interface{} value.
type eface struct {
	typ, data unsafe.Pointer
}

var (
	stringType = typeOf("")
	atomType   = typeOf(Atom(""))
	tupleType  = typeOf(Tuple(nil))
	listType   = typeOf([]any(nil))
)

// Small tuples and lists: their slice header (the interface value's data)
// and their elements in one allocation instead of two. The header points
// into its own block, and keeping either keeps the other, as before (the
// header kept the elements' array). A PID first in one, as in {Self,
// Msg}, keeps a box of its own: in the same block, a PID kept alone (a
// server's list of callers) kept the whole message alive with it
// (TestAKeptPIDDoesNotKeepItsMessage).
type (
	seq1 struct {
		h []any
		a [1]any
	}
	seq2 struct {
		h []any
		a [2]any
	}
	seq3 struct {
		h []any
		a [3]any
	}
	seq4 struct {
		h []any
		a [4]any
	}
)

// newSeq returns the elements of a tuple or list of n elements, and the
// interface value of type typ (Tuple or []any) holding them.
func newSeq(n int, typ unsafe.Pointer) (xs []any, v any) {
	var h *[]any
	switch n {
	case 1:
		s := new(seq1)
		s.h, h = s.a[:], &s.h
	case 2:
		s := new(seq2)
		s.h, h = s.a[:], &s.h
	case 3:
		s := new(seq3)
		s.h, h = s.a[:], &s.h
	case 4:
		s := new(seq4)
		s.h, h = s.a[:], &s.h
	default:
		xs = make([]any, n)
		if typ == tupleType {
			return xs, Tuple(xs)
		}
		return xs, xs
	}
	return *h, eface2any(typ, unsafe.Pointer(h))
}

func typeOf(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

// boxSmall is the largest string boxed in a single allocation.
const boxSmall = 1024

// Slabs (DecodeTermSlab): boxes are carved from pointer-free blocks of
// slabSize, one allocation per block instead of one per box. A received
// stream of small strings spent a fifth of the receiving process's CPU in
// the allocator, one call a message.
//
// A slab is its block sliced to the bytes used so far (len: the next free
// offset, cap: slabSize), so the block's start is always at hand. Its first
// slabHdr bytes say which box was carved last: its offset (8 bytes, 0 for
// none) and its kind (kindString or kindAtom). A small string equal to that
// box is returned as the box itself: a stream repeating one value (a
// status, a tag, a benchmark's payload) then writes no memory for it, and
// its receiver's heap does not grow with it. A fresh box per message cost
// the receiving node of a 64-byte one-way stream about 120 ns of its ~280 a
// message (the box written to cold memory, the collections and page
// returns it drives); meshbench's throughput scenario sends one repeated
// payload, so it measures this case (docs/benchmarks.md). The header is
// checked before it is trusted, so a slab not made here (the caller's
// contract forbids one) can only miss, never read outside its block: its
// cap must be slabSize, the offset inside the used bytes, and the string
// header found there must point right behind itself.
const (
	// slabSize is a slab's size: the most a kept box can hold alive.
	slabSize = 1024
	// slabMax is the largest box carved from a slab; larger ones take a
	// block of their own.
	slabMax = 248
	// slabHdr is the slab's header: the last box's offset and kind.
	slabHdr = 16
)

// Kinds of the last box, in a slab's header.
const (
	kindString = 1
	kindAtom   = 2
)

// box is boxString carving from d's slab when there is one, or returning
// the slab's last box when p equals it.
func (d *decoder) box(p []byte, typ unsafe.Pointer) any {
	const hdr = int(unsafe.Sizeof(""))
	size := (hdr + len(p) + 7) &^ 7 // 8-aligned: the next box's header
	if d.slab == nil || len(p) == 0 || size > slabMax {
		return boxString(p, typ)
	}
	kind := uint64(kindString)
	if typ == atomType {
		kind = kindAtom
	}
	s := *d.slab
	base := unsafe.Pointer(unsafe.SliceData(s))
	if cap(s) != slabSize || len(s) < slabHdr || len(s)&7 != 0 || uintptr(base)&7 != 0 {
		s = make([]byte, slabHdr, slabSize) // zeroed: no last box
		base = unsafe.Pointer(unsafe.SliceData(s))
	} else if sp := lastBox(s, kind); sp != nil && *sp == string(p) {
		return eface2any(typ, unsafe.Pointer(sp))
	}
	off := len(s)
	if off+size > slabSize {
		s = make([]byte, slabHdr, slabSize)
		base, off = unsafe.Pointer(unsafe.SliceData(s)), slabHdr
	}
	s = s[:off+size]
	v := boxInto(s[off:], p, typ)
	*(*uint64)(base) = uint64(off)
	*(*uint64)(unsafe.Add(base, 8)) = kind
	*d.slab = s
	return v
}

// lastBox returns the string header of slab s's last box if it is of kind
// and its header checks out (see slabHdr), or nil. s has cap slabSize, an
// 8-aligned start and at least slabHdr bytes. The header's words are read
// as integers until they check out: a pointer-typed garbage word must not
// reach a register the collector may scan.
func lastBox(s []byte, kind uint64) *string {
	const hdr = uint64(unsafe.Sizeof(""))
	base := unsafe.Pointer(unsafe.SliceData(s))
	off := *(*uint64)(base)
	if off < slabHdr || off&7 != 0 || off > uint64(len(s))-hdr || *(*uint64)(unsafe.Add(base, 8)) != kind {
		return nil
	}
	data := *(*uintptr)(unsafe.Add(base, off))
	n := *(*uint64)(unsafe.Add(base, off+8))
	if data != uintptr(base)+uintptr(off+hdr) || n > uint64(len(s))-off-hdr {
		return nil
	}
	return (*string)(unsafe.Add(base, off))
}

// eface2any returns the interface value of type typ whose data is p.
func eface2any(typ, p unsafe.Pointer) any {
	var v any
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = typ, p
	return v
}

// boxString returns string(p), as the string-kinded type typ (string or
// Atom), in an interface value with ONE allocation
// instead of two (the bytes and the boxed string header): the header lives
// in the first 16 bytes of the same pointer-free block as the bytes. This
// is sound because the only pointer inside the block points into the block
// itself, so the collector never needs to scan it: the block is live exactly
// while the interface (or a string taken from it) points into it. A slab
// holding several such boxes is sound for the same reason: every pointer
// in it points into it, and it lives while any of its boxes does.
func boxString(p []byte, typ unsafe.Pointer) any {
	if len(p) == 0 || len(p) > boxSmall {
		// Empty strings box without allocating; large ones take two
		// allocations but skip zeroing a large block.
		if typ == atomType {
			return Atom(p)
		}
		return string(p)
	}
	const hdr = int(unsafe.Sizeof(""))
	return boxInto(make([]byte, hdr+len(p)), p, typ)
}

// boxInto writes the box of p into buf (8-aligned, 16+len(p) bytes or
// more) and returns it as typ.
func boxInto(buf, p []byte, typ unsafe.Pointer) any {
	const hdr = int(unsafe.Sizeof(""))
	copy(buf[hdr:], p)
	sp := (*string)(unsafe.Pointer(&buf[0]))
	*sp = unsafe.String(&buf[hdr], len(p))
	var v any
	e := (*eface)(unsafe.Pointer(&v))
	e.typ = typ
	e.data = unsafe.Pointer(sp)
	return v
}
