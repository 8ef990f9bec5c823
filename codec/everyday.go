package codec

// Everyday values: the slices, maps, times and errors programs send most,
// encoded without registration; and Unknown, what a registered type this
// node does not know decodes to.

import (
	"fmt"
	"slices"
	"time"
)

// Error is what an error value arrives as: its text. A sender's error (any
// value implementing error that is not a registered type) travels as the
// text of its Error method; the receiver gets an Error with that text. Its
// identity does not travel: errors.Is against the sender's sentinel errors is
// false on the receiving side, and errors.As finds no wrapped error.
type Error string

// Error returns the text.
func (e Error) Error() string { return string(e) }

// Unknown is what a value of a registered type arrives as on a node that has
// not registered that type name: the name and the type's encoded payload,
// instead of an error. Sent on, an Unknown encodes back to the same bytes, so
// a node can forward a value it does not understand.
type Unknown struct {
	Type string // the registered name
	Data []byte // the payload, as the sender's type encoded it
}

// appendStrings encodes a []string: uvarint(n+1) (0 = nil), then each
// string length-prefixed.
func appendStrings(dst []byte, xs []string) []byte {
	dst = append(dst, tagStrings)
	if xs == nil {
		return append(dst, 0)
	}
	dst = appendUvarint(dst, uint64(len(xs))+1)
	for _, s := range xs {
		dst = appendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

func appendInts(dst []byte, xs []int) []byte {
	dst = append(dst, tagInts)
	if xs == nil {
		return append(dst, 0)
	}
	dst = appendUvarint(dst, uint64(len(xs))+1)
	for _, x := range xs {
		dst = appendUvarint(dst, zigzag(int64(x)))
	}
	return dst
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func appendStringMap(dst []byte, m map[string]string) []byte {
	dst = append(dst, tagStringMap)
	if m == nil {
		return append(dst, 0)
	}
	dst = appendUvarint(dst, uint64(len(m))+1)
	for _, k := range sortedKeys(m) {
		dst = appendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		v := m[k]
		dst = appendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

func appendIntMap(dst []byte, m map[string]int) []byte {
	dst = append(dst, tagIntMap)
	if m == nil {
		return append(dst, 0)
	}
	dst = appendUvarint(dst, uint64(len(m))+1)
	for _, k := range sortedKeys(m) {
		dst = appendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = appendUvarint(dst, zigzag(int64(m[k])))
	}
	return dst
}

func appendTime(dst []byte, t time.Time) ([]byte, error) {
	dst = append(dst, tagTime)
	out, err := withLength(dst, t.AppendBinary)
	if err != nil {
		// Only a zone offset that is not a whole minute, or a year out of
		// range, fails.
		return dst[:len(dst)-1], fmt.Errorf("%w: time.Time: %w", ErrUnencodable, err)
	}
	return out, nil
}

func appendUnknown(dst []byte, u Unknown) ([]byte, error) {
	if len(u.Type) == 0 || len(u.Type) > maxNameBytes {
		return dst, fmt.Errorf("%w: Unknown type name of %d bytes", ErrUnencodable, len(u.Type))
	}
	dst = append(dst, tagUser)
	dst = appendUvarint(dst, uint64(len(u.Type)))
	dst = append(dst, u.Type...)
	dst = appendUvarint(dst, uint64(len(u.Data)))
	return append(dst, u.Data...), nil
}

// costTypedEntry is the estimated cost of one entry of a map[string]string
// or map[string]int: key and value headers and the table's share.
const costTypedEntry = 40

// everydayCount reads uvarint(n+1) (0 = nil, returned as -1) for the everyday
// containers, bounded like count and charged size bytes an element.
func (d *decoder) everydayCount(size int) (int, error) {
	n, err := d.uvarint()
	if err != nil || n == 0 {
		return -1, err
	}
	n--
	if n > uint64(d.elems) {
		return -1, errElems
	}
	if n > uint64(len(d.b)-d.off) {
		return -1, errTrunc
	}
	if err := d.charge(int(n)*size + costBox); err != nil {
		return -1, err
	}
	d.elems -= int(n)
	return int(n), nil
}

// str reads a length-prefixed string and copies it, charging its bytes
// (its header is charged with its container).
func (d *decoder) str() (string, error) {
	n, err := d.uvarint()
	if err != nil {
		return "", err
	}
	if n > uint64(d.maxString) {
		return "", errStringSize
	}
	p, err := d.fixed(int(n))
	if err != nil {
		return "", err
	}
	if err := d.charge(len(p)); err != nil {
		return "", err
	}
	return string(p), nil
}

func (d *decoder) everyday(tag byte) (any, error) {
	switch tag {
	case tagStrings:
		n, err := d.everydayCount(costSlot)
		if n < 0 {
			return []string(nil), err
		}
		xs := make([]string, n)
		for i := range xs {
			if xs[i], err = d.str(); err != nil {
				return nil, err
			}
		}
		return xs, nil
	case tagInts:
		n, err := d.everydayCount(8)
		if n < 0 {
			return []int(nil), err
		}
		xs := make([]int, n)
		for i := range xs {
			x, err := d.varint()
			if err != nil {
				return nil, err
			}
			if int64(int(x)) != x {
				return nil, fmt.Errorf("%w: int overflows this platform", ErrCorrupt)
			}
			xs[i] = int(x)
		}
		return xs, nil
	case tagStringMap, tagIntMap:
		n, err := d.everydayCount(costTypedEntry)
		if n < 0 {
			if tag == tagStringMap {
				return map[string]string(nil), err
			}
			return map[string]int(nil), err
		}
		if tag == tagStringMap {
			m := make(map[string]string, n)
			for range n {
				k, err := d.str()
				if err != nil {
					return nil, err
				}
				v, err := d.str()
				if err != nil {
					return nil, err
				}
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("%w: duplicate map key", ErrCorrupt)
				}
				m[k] = v
			}
			return m, nil
		}
		m := make(map[string]int, n)
		for range n {
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			x, err := d.varint()
			if err != nil {
				return nil, err
			}
			if int64(int(x)) != x {
				return nil, fmt.Errorf("%w: int overflows this platform", ErrCorrupt)
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("%w: duplicate map key", ErrCorrupt)
			}
			m[k] = int(x)
		}
		return m, nil
	case tagTime:
		p, err := d.lenBytes(64)
		if err != nil {
			return nil, err
		}
		var t time.Time
		if err := t.UnmarshalBinary(p); err != nil {
			return nil, fmt.Errorf("%w: time.Time: %w", ErrCorrupt, err)
		}
		return t, nil
	case tagDuration:
		x, err := d.varint()
		return time.Duration(x), err
	case tagError:
		p, err := d.lenBytes(d.maxString)
		if err != nil {
			return nil, err
		}
		return Error(p), nil
	}
	return nil, fmt.Errorf("%w: unknown term tag 0x%02x", ErrCorrupt, tag)
}
