package codec

// Invariants of the term encoder:
//   - AppendTerm never allocates for builtin scalar terms, strings, []byte,
//     atoms, PIDs, Refs, tuples and lists when dst has room; maps with more
//     than one key sort their keys (deterministic output) and may allocate.
//   - Encoding is deterministic: the same value gives the same bytes.
//   - Recursion is bounded by DefaultMaxDepth, which is how cycles through
//     slices, maps and pointers become ErrUnencodable instead of a hang.

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
	"unsafe"
)

// Term tags: the first byte of every encoded term.
const (
	tagNil       = 0x00
	tagFalse     = 0x01
	tagTrue      = 0x02
	tagInt       = 0x03 // zigzag uvarint
	tagInt8      = 0x04 // 1 byte
	tagInt16     = 0x05 // zigzag uvarint
	tagInt32     = 0x06
	tagInt64     = 0x07
	tagUint      = 0x08 // uvarint
	tagUint8     = 0x09 // 1 byte
	tagUint16    = 0x0a // uvarint
	tagUint32    = 0x0b
	tagUint64    = 0x0c
	tagUintptr   = 0x0d
	tagFloat32   = 0x0e // 4 bytes little endian IEEE 754
	tagFloat64   = 0x0f // 8 bytes little endian IEEE 754
	tagString    = 0x10 // uvarint len, bytes
	tagBytes     = 0x11 // uvarint len, bytes
	tagAtom      = 0x12 // uvarint len, bytes
	tagTuple     = 0x13 // uvarint count, terms
	tagList      = 0x14 // uvarint count, terms
	tagMap       = 0x15 // uvarint count, (uvarint len, key bytes, term)* sorted by key
	tagPID       = 0x16 // uvarint len, node, 8 bytes incarnation LE, uvarint id
	tagRef       = 0x17 // same as PID
	tagUser      = 0x18 // uvarint len, name, uvarint len, payload
	tagNilBytes  = 0x19 // []byte(nil)
	tagNilTuple  = 0x1a // Tuple(nil)
	tagNilList   = 0x1b // []any(nil)
	tagNilMap    = 0x1c // map[string]any(nil)
	tagStrings   = 0x1d // []string: uvarint(n+1) (0 = nil), (uvarint len, bytes)*
	tagInts      = 0x1e // []int: uvarint(n+1), zigzag uvarints
	tagStringMap = 0x1f // map[string]string: uvarint(n+1), (key, value)* sorted by key
	tagIntMap    = 0x20 // map[string]int: uvarint(n+1), (key, zigzag uvarint)* sorted by key
	tagTime      = 0x21 // time.Time: uvarint len, time.Time.AppendBinary bytes
	tagDuration  = 0x22 // time.Duration: zigzag uvarint nanoseconds
	tagError     = 0x23 // error: uvarint len, its Error() text; decodes to Error
	tagMax       = tagError
	maxNameBytes = 255
)

// Marshal encodes v as one term, the same encoding the wire uses.
// It is safe to call from any goroutine.
func Marshal(v any) ([]byte, error) {
	return AppendTerm(nil, v)
}

// AppendTerm appends the encoding of v to dst and returns the extended
// slice. On error dst is returned unchanged in length (its spare capacity may
// have been written). It does not allocate for builtin terms when dst has
// enough capacity. It is safe to call from any goroutine.
func AppendTerm(dst []byte, v any) ([]byte, error) {
	n := len(dst)
	out, err := appendTerm(dst, v, 0)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

// AppendList is AppendTerm(dst, xs) for a list, without xs boxed into an
// interface value (a slice header on the heap, for a list that is not
// nil). It is safe to call from any goroutine.
func AppendList(dst []byte, xs []any) ([]byte, error) {
	n := len(dst)
	out, err := appendList(dst, xs, 0)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

// appendList is appendTerm's list case: AppendList's encoding is a []any
// term's by construction.
func appendList(dst []byte, xs []any, depth int) ([]byte, error) {
	if xs == nil {
		return append(dst, tagNilList), nil
	}
	return appendSeq(dst, tagList, xs, depth)
}

// SplitTerm is AppendTerm for a value whose encoding ends with its own
// bytes unchanged, a []byte (not nil) or a string: it appends the head of
// the encoding (tag and length) to dst and returns it with the body, the
// value's bytes themselves (not copied: a string's are a read-only view),
// so that head followed by body is what AppendTerm would append. A sender
// of a large value can then copy its bytes once, where they go. ok is
// false for any other value, with dst returned unchanged. It is safe to
// call from any goroutine.
func SplitTerm(dst []byte, v any) (head, body []byte, ok bool) {
	switch x := v.(type) {
	case []byte:
		if x == nil {
			return dst, nil, false
		}
		return appendUvarint(append(dst, tagBytes), uint64(len(x))), x, true
	case string:
		return appendUvarint(append(dst, tagString), uint64(len(x))), unsafe.Slice(unsafe.StringData(x), len(x)), true
	}
	return dst, nil, false
}

func appendUvarint(dst []byte, x uint64) []byte {
	for x >= 0x80 {
		dst = append(dst, byte(x)|0x80)
		x >>= 7
	}
	return append(dst, byte(x))
}

func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }

func appendStr(dst []byte, tag byte, s string) []byte {
	dst = append(dst, tag)
	dst = appendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendIdent(dst []byte, node string, inc, id uint64) []byte {
	dst = appendUvarint(dst, uint64(len(node)))
	dst = append(dst, node...)
	dst = binary.LittleEndian.AppendUint64(dst, inc)
	return appendUvarint(dst, id)
}

// AppendPID appends p without a tag (the form used inside control frames).
func appendPID(dst []byte, p PID) []byte { return appendIdent(dst, p.Node, p.Incarnation, p.ID) }

func appendRef(dst []byte, r Ref) []byte { return appendIdent(dst, r.Node, r.Incarnation, r.ID) }

func errTooDeep() error {
	return fmt.Errorf("%w: nesting deeper than %d (a cycle?)", ErrUnencodable, DefaultMaxDepth)
}

func appendTerm(dst []byte, v any, depth int) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, tagNil), nil
	case string:
		return appendStr(dst, tagString, x), nil
	case int:
		return appendUvarint(append(dst, tagInt), zigzag(int64(x))), nil
	case bool:
		if x {
			return append(dst, tagTrue), nil
		}
		return append(dst, tagFalse), nil
	case []byte:
		if x == nil {
			return append(dst, tagNilBytes), nil
		}
		dst = appendUvarint(append(dst, tagBytes), uint64(len(x)))
		return append(dst, x...), nil
	case Atom:
		return appendStr(dst, tagAtom, string(x)), nil
	case PID:
		if len(x.Node) > maxNameBytes {
			return dst, errLongNode()
		}
		return appendPID(append(dst, tagPID), x), nil
	case Ref:
		if len(x.Node) > maxNameBytes {
			return dst, errLongNode()
		}
		return appendRef(append(dst, tagRef), x), nil
	case Tuple:
		if x == nil {
			return append(dst, tagNilTuple), nil
		}
		return appendSeq(dst, tagTuple, x, depth)
	case []any:
		return appendList(dst, x, depth)
	case map[string]any:
		if x == nil {
			return append(dst, tagNilMap), nil
		}
		return appendMap(dst, x, depth)
	case int8:
		return append(dst, tagInt8, byte(x)), nil
	case int16:
		return appendUvarint(append(dst, tagInt16), zigzag(int64(x))), nil
	case int32:
		return appendUvarint(append(dst, tagInt32), zigzag(int64(x))), nil
	case int64:
		return appendUvarint(append(dst, tagInt64), zigzag(x)), nil
	case uint:
		return appendUvarint(append(dst, tagUint), uint64(x)), nil
	case uint8:
		return append(dst, tagUint8, x), nil
	case uint16:
		return appendUvarint(append(dst, tagUint16), uint64(x)), nil
	case uint32:
		return appendUvarint(append(dst, tagUint32), uint64(x)), nil
	case uint64:
		return appendUvarint(append(dst, tagUint64), x), nil
	case uintptr:
		return appendUvarint(append(dst, tagUintptr), uint64(x)), nil
	case float32:
		return binary.LittleEndian.AppendUint32(append(dst, tagFloat32), math.Float32bits(x)), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, tagFloat64), math.Float64bits(x)), nil
	case []string:
		return appendStrings(dst, x), nil
	case []int:
		return appendInts(dst, x), nil
	case map[string]string:
		return appendStringMap(dst, x), nil
	case map[string]int:
		return appendIntMap(dst, x), nil
	case time.Time:
		return appendTime(dst, x)
	case time.Duration:
		return appendUvarint(append(dst, tagDuration), zigzag(int64(x))), nil
	case Error:
		return appendStr(dst, tagError, string(x)), nil
	case Unknown:
		return appendUnknown(dst, x)
	}
	return appendUser(dst, v, depth)
}

func errLongNode() error {
	return fmt.Errorf("%w: node name longer than %d bytes", ErrUnencodable, maxNameBytes)
}

func appendSeq(dst []byte, tag byte, xs []any, depth int) ([]byte, error) {
	if depth >= DefaultMaxDepth {
		return dst, errTooDeep()
	}
	dst = appendUvarint(append(dst, tag), uint64(len(xs)))
	var err error
	for _, e := range xs {
		if dst, err = appendTerm(dst, e, depth+1); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func appendMap(dst []byte, m map[string]any, depth int) ([]byte, error) {
	if depth >= DefaultMaxDepth {
		return dst, errTooDeep()
	}
	dst = appendUvarint(append(dst, tagMap), uint64(len(m)))
	var err error
	if len(m) == 1 {
		for k, e := range m {
			dst = appendUvarint(dst, uint64(len(k)))
			dst = append(dst, k...)
			return appendTerm(dst, e, depth+1)
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = appendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		if dst, err = appendTerm(dst, m[k], depth+1); err != nil {
			return dst, err
		}
	}
	return dst, nil
}
