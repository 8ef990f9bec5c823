// Package codec holds Mesh's term model and its binary wire encoding.
//
// Terms are plain Go values: nil, bool, every integer and float width,
// string, []byte, [Atom], [Tuple], []any, map[string]any, [PID], [Ref], and
// user types registered once. A value decodes to the same Go type it was
// encoded from, so a receiver's type switch never depends on where the sender
// ran. [Marshal] and [Unmarshal] use exactly the encoding that crosses the
// wire between nodes.
//
// The package also frames messages for the wire: batches of many messages in
// one frame, fragments of large messages that interleave with small ones, and
// optional compression negotiated per link. Every decoder checks its limits
// before it allocates and is fuzzed.
package codec
