// Package codec holds Mesh's term model and its binary wire encoding.
//
// Terms are plain Go values: nil, bool, every integer and float width,
// string, []byte, [Atom], [Tuple], []any, map[string]any, [PID], [Ref], and
// user types registered once with [Register]. A value decodes to the same Go
// type it was encoded from (an int stays int, an empty Tuple stays an empty
// non-nil Tuple, nil stays nil), so a receiver's type switch never depends
// on where the sender ran. [Marshal] and [Unmarshal] use exactly the
// encoding that crosses the wire between nodes; [AppendTerm] and
// [DecodeTerm] are the allocation-conscious forms.
//
// The package also frames messages for the wire: batches of many messages in
// one frame ([AppendMessage], [Batcher]), fragments of large messages that
// interleave with small ones ([Fragmenter], [Reassembler]), optional S2
// compression negotiated per link ([Features]), and control frames
// ([SpawnRequest], [Exit], [Monitor], [Down], [Tick], [Nodes], ...). Every
// decoder checks its [Limits] before it allocates and is fuzzed.
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
//
// A registered type's payload is, for a type with binary marshalling, a
// uvarint length then its AppendBinary bytes; otherwise its reflection
// encoding: structs as uvarint exported-field count then the fields in
// order; bools one byte; integers (zigzag) uvarints; floats fixed LE;
// strings length-prefixed; []byte and other slices and maps as uvarint(n+1)
// (0 = nil) then elements (map entries key then value, ordered keys sorted);
// arrays their elements; pointers a 0 (nil) or 1 byte then the element;
// any-typed fields a term; PID and Ref fields their body without the tag.
//
// # Frames
//
// Every frame is an 8-byte header then the payload:
//
//	byte 0     version (1); anything else is ErrVersion
//	byte 1     kind (see Kind: batch, fragment, spawn request/reply, link,
//	           unlink, exit, monitor, demonitor, down, registry, tick, tock,
//	           nodes, hello, proof); unknown kinds are corrupt
//	byte 2     flags: bit 0 = payload is one S2 block (only on links that
//	           negotiated FeatureS2); other bits must be 0
//	byte 3     reserved, must be 0
//	bytes 4-7  payload length, uint32 big endian, <= Limits.MaxFrame
//
// A compressed payload's decompressed size (the S2 block's own length
// prefix) is checked against MaxFrame before anything is allocated.
//
// A batch payload is a run of message records:
//
//	uvarint to (target process ID) | uvarint from (sender process ID) |
//	uvarint term length | term
//
// The node and incarnation of both processes are implied by the link, which
// the node checked at the handshake. A message item from [AppendMessage] is a
// batch frame of one record, which is why the [Batcher] can merge a run of
// items by concatenating their records under one header.
//
// A fragment payload is
//
//	uvarint id | uvarint to | uvarint from | uvarint total term length |
//	uvarint offset | chunk
//
// Fragments of one message are written in order and their first fragment in
// send order; a [Reassembler] holds later records of the same (from, to)
// pair behind an incomplete large message and releases them in order.
//
// Control payloads (PID and Ref mean the PID body above, without the tag;
// term means a tagged term):
//
//	spawn request    uvarint req | PID from | 0x10, uvarint length, actor | link byte (0/1) | args term ([]any)
//	spawn reply      uvarint req | PID | code byte (SpawnCode) | uvarint length, error text
//	link, unlink     PID from | PID to
//	exit             PID from | PID to | link byte (0/1) | reason term
//	monitor, demon.  PID from | PID to | Ref
//	down             Ref | PID watcher | PID monitored | reason term
//	registry         opaque bytes (package global's own encoding)
//	tick, tock       uvarint seq | zigzag uvarint time
//	nodes            uvarint count | (uvarint length, name)*
//	hello            uvarint version | uvarint length, node | uvarint incarnation | uvarint features | 32-byte nonce
//	proof            32-byte HMAC-SHA256
package codec
