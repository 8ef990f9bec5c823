// Package codec holds Mesh's term model and its binary encoding: the values
// processes send each other, and the bytes they travel as between nodes.
//
// Terms are plain Go values: nil, bool, every integer and float width,
// string, []byte, [Atom], [Tuple], []any, map[string]any, [PID], [Ref], the
// everyday []string, []int, map[string]string, map[string]int, time.Time and
// time.Duration, errors, and user types registered once with [Register]. A
// value decodes to the same Go type it was encoded from (an int stays int,
// an empty Tuple stays an empty non-nil Tuple, a nil []string stays nil), so
// a receiver's type switch never depends on where the sender ran. Three
// values arrive as something close instead:
//
//   - An error (any value implementing error that is not a registered type)
//     arrives as an [Error] with the same text: errors.Is and errors.As do
//     not see the sender's errors.
//   - A time.Time arrives with the same instant and zone offset, so Equal
//     holds; its monotonic clock reading and its Location's name do not
//     travel (the Location is Local when the offset matches, else a fixed
//     zone), so == may not.
//   - A value of a registered type the receiving side has not registered
//     arrives as an [Unknown] with the type's name and encoded payload,
//     rather than as an error; sent on, it encodes back to the same bytes.
//
// [Marshal] and [Unmarshal] use exactly the
// encoding that crosses the wire between nodes; [AppendTerm] and
// [DecodeTerm] are the allocation-conscious forms. The decoder checks its
// [Limits] before it allocates, never panics on any input, and is fuzzed;
// every error wraps one of the package's sentinel errors.
//
// How terms are framed, batched, fragmented and compressed between nodes is
// the runtime's own business (package node); this package is only the
// values and their encoding, usable on its own.
//
// # Term encoding (wire version 1)
//
// A term is a tag byte then its body. Integers in bodies are uvarints
// (LEB128); signed ones are zigzag-encoded first.
//
//	0x00 nil          0x01 false        0x02 true
//	0x03 int          0x04 int8 (1 byte)        0x05 int16   0x06 int32   0x07 int64   (zigzag uvarint)
//	0x08 uint         0x09 uint8 (1 byte)       0x0a uint16  0x0b uint32  0x0c uint64  0x0d uintptr (uvarint)
//	0x0e float32 (4 bytes LE IEEE 754)          0x0f float64 (8 bytes LE)
//	0x10 string, 0x11 []byte, 0x12 Atom:        uvarint length, bytes
//	0x13 Tuple, 0x14 []any:                     uvarint count, terms
//	0x15 map[string]any:                        uvarint count, (uvarint key length, key, term)* in key order
//	0x16 PID, 0x17 Ref:                         uvarint node length (<= 255), node, incarnation (8 bytes LE), uvarint id
//	0x18 registered type:                       uvarint name length (<= 255), name, uvarint payload length, payload
//	0x19 []byte(nil)  0x1a Tuple(nil)  0x1b []any(nil)  0x1c map[string]any(nil)
//	0x1d []string, 0x1e []int:                  uvarint(count+1) (0 = nil), then strings length-prefixed or ints zigzag uvarints
//	0x1f map[string]string, 0x20 map[string]int: uvarint(count+1) (0 = nil), (key, value)* in key order
//	0x21 time.Time:                             uvarint length, time.Time.AppendBinary bytes
//	0x22 time.Duration:                         zigzag uvarint nanoseconds
//	0x23 error:                                 uvarint length, its Error() text
//
// An [Unknown] encodes as the registered type it stands for (0x18).
//
// A registered type's payload is, for a type with binary marshalling, a
// uvarint length then its AppendBinary bytes; otherwise its reflection
// encoding: structs as uvarint exported-field count then the fields in
// order; bools one byte; integers (zigzag) uvarints; floats fixed LE;
// strings length-prefixed; []byte and other slices and maps as uvarint(n+1)
// (0 = nil) then elements (map entries key then value, ordered keys sorted);
// arrays their elements; pointers a 0 (nil) or 1 byte then the element;
// any-typed fields a term; PID and Ref fields their body without the tag.
package codec
