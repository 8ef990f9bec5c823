package global

// Wire format of the registry's two frames. Invariants:
//   - Every length and count is checked against what is left of the input
//     before anything is allocated, so a decoder's allocation is bounded by a
//     small multiple of its input, and no input makes it panic.
//   - Decoding is all or nothing: a frame with any bad part yields an error
//     and no entries.
//
// Layout (uvarint = encoding/binary unsigned varint):
//
//	ops frame:      0x01  count:uvarint  (kind:byte entry){count}
//	snapshot frame: 0x02  count:uvarint  entry{count}
//	entry:          name:str  pidNode:node  incarnation:uvarint  id:uvarint
//	                version:uvarint  origin:node
//	str:            len:uvarint  bytes{len}
//	node:           str | 0x00 ref:uvarint
//
// A node name is written out (a str, never empty) the first time a frame
// uses it and by reference after that: ref is the index, in order of first
// appearance, of the first maxNodeRefs node names written out in the frame.
// A snapshot repeats two or three node names in every entry, so references
// keep a 100 000-name snapshot near 2.7 MB, inside one control frame
// (wire.DefaultMaxFrame, 4 MiB).
//
// Op kinds: 1 add, 2 remove (both sent only by the owner of the entry, the
// node of its PID); 3 register request, 4 unregister request (sent by any node,
// acted on only by the owner).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

const (
	frameOps      = 0x01
	frameSnapshot = 0x02
)

type opKind byte

const (
	opAdd opKind = iota + 1
	opRemove
	opRegisterReq
	opUnregisterReq
)

func (k opKind) String() string {
	switch k {
	case opAdd:
		return "add"
	case opRemove:
		return "remove"
	case opRegisterReq:
		return "register-request"
	case opUnregisterReq:
		return "unregister-request"
	}
	return fmt.Sprintf("op(%d)", byte(k))
}

type op struct {
	kind opKind
	e    Entry
}

const (
	// MaxNameLen is the longest name, in bytes, the registry accepts by
	// default (see WithMaxNameLen).
	MaxNameLen = 255
	// maxNameLimit is the hard ceiling for WithMaxNameLen and the decoder.
	maxNameLimit = 64 << 10
	// maxNodeLen bounds node names inside PIDs and origins.
	maxNodeLen = 1024
	// maxVersion bounds versions so a hostile peer cannot push the Lamport
	// clock to overflow.
	maxVersion = math.MaxUint64 >> 2
	// minEntryLen is the smallest encoded entry: four one-byte lengths or
	// values plus at least one name byte and one node byte.
	minEntryLen = 8
	// maxNodeRefs bounds a frame's table of node names that may be
	// referred to.
	maxNodeRefs = 64
)

// ErrMalformed reports a registry frame that cannot be decoded or breaks the
// protocol (for example an add for a process of another node than the
// sender).
var ErrMalformed = errors.New("global: malformed frame")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendEntry appends e with every node name written out.
func appendEntry(b []byte, e *Entry) []byte {
	var refs nodeRefs
	return refs.appendEntry(b, e)
}

// nodeRefs is an encoder's table of the node names a frame has written out,
// mirroring the decoder's (see the layout above). The zero value starts a
// frame with no references; a nil map writes every name out.
type nodeRefs struct {
	index map[string]uint64
	n     uint64
}

func (r *nodeRefs) appendNode(b []byte, s string) []byte {
	if i, ok := r.index[s]; ok {
		b = append(b, 0)
		return binary.AppendUvarint(b, i)
	}
	if r.index != nil && r.n < maxNodeRefs {
		r.index[s] = r.n
	}
	r.n++
	return appendString(b, s)
}

func (r *nodeRefs) appendEntry(b []byte, e *Entry) []byte {
	b = appendString(b, e.Name)
	b = r.appendNode(b, e.PID.Node)
	b = binary.AppendUvarint(b, e.PID.Incarnation)
	b = binary.AppendUvarint(b, e.PID.ID)
	b = binary.AppendUvarint(b, e.Version)
	return r.appendNode(b, e.Origin)
}

func (r *nodeRefs) reset() {
	if r.index == nil {
		r.index = make(map[string]uint64, 4)
	}
	clear(r.index)
	r.n = 0
}

// decoder reads one frame. Node names are interned: a PID node or origin
// equal to one already seen in the frame (or to the sender) shares its
// string.
type decoder struct {
	b       []byte
	maxName int
	intern  map[string]string
	refs    []string // node names written out, for references
	err     error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string, limit int) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n == 0 || n > uint64(limit) {
		d.fail("%s length %d outside 1..%d", what, n, limit)
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%s length %d past the end", what, n)
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) node(what string) string {
	if d.err == nil && len(d.b) > 0 && d.b[0] == 0 {
		d.b = d.b[1:]
		i := d.uvarint(what + " reference")
		if d.err == nil && i >= uint64(len(d.refs)) {
			d.fail("%s reference %d to a table of %d", what, i, len(d.refs))
		}
		if d.err != nil {
			return ""
		}
		return d.refs[i]
	}
	b := d.bytes(what, maxNodeLen)
	if d.err != nil {
		return ""
	}
	s, ok := d.intern[string(b)]
	if !ok {
		s = string(b)
		if len(d.intern) < 64 {
			d.intern[s] = s
		}
	}
	if len(d.refs) < maxNodeRefs {
		d.refs = append(d.refs, s)
	}
	return s
}

func (d *decoder) entry() Entry {
	var e Entry
	e.Name = string(d.bytes("name", d.maxName))
	e.PID.Node = d.node("pid node")
	e.PID.Incarnation = d.uvarint("incarnation")
	e.PID.ID = d.uvarint("pid id")
	e.Version = d.uvarint("version")
	e.Origin = d.node("origin")
	if d.err == nil && e.Version > maxVersion {
		d.fail("version %d over %d", e.Version, uint64(maxVersion))
	}
	return e
}

// header checks the frame kind and returns the declared count, bounded by
// what the rest of the frame can hold.
func (d *decoder) header(kind byte, perItem int) int {
	if len(d.b) == 0 {
		d.fail("empty frame")
		return 0
	}
	if d.b[0] != kind {
		d.fail("frame kind %#x, want %#x", d.b[0], kind)
		return 0
	}
	d.b = d.b[1:]
	n := d.uvarint("count")
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/perItem) {
		d.fail("count %d too large for %d bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

func newDecoder(b []byte, from string, maxName int) *decoder {
	d := &decoder{b: b, maxName: maxName, intern: make(map[string]string, 4)}
	if from != "" {
		d.intern[from] = from
	}
	return d
}

// decodeOps decodes an ops frame. from is the sending node (used only to
// share strings).
func decodeOps(b []byte, from string, maxName int) ([]op, error) {
	d := newDecoder(b, from, maxName)
	n := d.header(frameOps, 1+minEntryLen)
	if d.err != nil {
		return nil, d.err
	}
	ops := make([]op, 0, n)
	for range n {
		if len(d.b) == 0 {
			d.fail("truncated")
			break
		}
		k := opKind(d.b[0])
		d.b = d.b[1:]
		if k < opAdd || k > opUnregisterReq {
			d.fail("unknown op kind %d", byte(k))
			break
		}
		e := d.entry()
		if d.err != nil {
			break
		}
		ops = append(ops, op{kind: k, e: e})
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return ops, nil
}

// decodeSnapshot decodes a snapshot frame sent by from. Every entry must be
// owned by from (its PID lives on from) and names must be distinct.
func decodeSnapshot(b []byte, from string, maxName int) (map[string]Entry, error) {
	d := newDecoder(b, from, maxName)
	n := d.header(frameSnapshot, minEntryLen)
	if d.err != nil {
		return nil, d.err
	}
	m := make(map[string]Entry, n)
	for range n {
		e := d.entry()
		if d.err != nil {
			break
		}
		if e.PID.Node != from {
			d.fail("snapshot from %q holds %q, owned by %q", from, e.Name, e.PID.Node)
			break
		}
		if _, dup := m[e.Name]; dup {
			d.fail("snapshot from %q names %q twice", from, e.Name)
			break
		}
		m[e.Name] = e
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

// frameWriter builds one ops frame.
type frameWriter struct {
	body []byte
	n    int
	refs nodeRefs
}

func (w *frameWriter) add(k opKind, e *Entry) {
	if w.n == 0 {
		w.refs.reset()
	}
	w.body = append(w.body, byte(k))
	w.body = w.refs.appendEntry(w.body, e)
	w.n++
}

// take returns the finished frame (a fresh slice the caller owns) and resets
// w, or nil if no op was added.
func (w *frameWriter) take() []byte {
	if w.n == 0 {
		return nil
	}
	f := make([]byte, 0, 1+binary.MaxVarintLen64+len(w.body))
	f = append(f, frameOps)
	f = binary.AppendUvarint(f, uint64(w.n))
	f = append(f, w.body...)
	w.body = w.body[:0]
	w.n = 0
	return f
}

func encodeSnapshot(own map[string]Entry) []byte {
	size := 1 + binary.MaxVarintLen64
	for _, e := range own {
		size += len(e.Name) + len(e.PID.Node) + len(e.Origin) + 5*binary.MaxVarintLen64
	}
	b := make([]byte, 0, size)
	b = append(b, frameSnapshot)
	b = binary.AppendUvarint(b, uint64(len(own)))
	var refs nodeRefs
	refs.reset()
	for _, e := range own {
		b = refs.appendEntry(b, &e)
	}
	return b
}
