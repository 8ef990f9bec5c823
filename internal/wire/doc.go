// Package wire is the distribution protocol between Mesh nodes, after the
// handshake: the frames that carry messages and control signals over an
// authenticated link. It is the runtime's own (package node uses it); the
// values inside are terms of package codec.
//
// A sender encodes each message as an item with [AppendMessage] (a message
// too large for one item is split by a [Fragmenter]), and each control
// signal with the Append method of its type ([Link], [Exit], [Down], ...).
// The link's event loop drains a run of items with a [Batcher], which merges
// messages into batch frames and compresses what pays. The receiver cuts
// its input into frames with a [FrameReader], feeds batch and fragment
// frames to a [Reassembler] (which delivers messages in per-pair order) and
// decodes control frames with [DecodeControl]. Every decoder checks its
// limits before it allocates, never panics on any input, and is fuzzed.
//
// # Frames
//
// Every frame is an 8-byte header then the payload:
//
//	byte 0     version (1); anything else is ErrVersion
//	byte 1     kind (see Kind: batch, fragment, spawn request/reply, link,
//	           unlink, exit, monitor, demonitor, down, registry, tick, tock,
//	           nodes, goodbye, groups, publish, sync, ack); unknown kinds
//	           are corrupt
//	byte 2     flags: bit 0 = payload is one S2 block (only on links that
//	           negotiated FeatureS2); other bits must be 0
//	byte 3     reserved, must be 0
//	bytes 4-7  payload length, uint32 big endian, <= the reader's max frame
//
// A compressed payload's decompressed size (the S2 block's own length
// prefix) is checked against the max frame before anything is allocated.
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
// Control payloads (PID and Ref mean the body of a codec PID term, without
// its tag: uvarint node length, node, incarnation 8 bytes LE, uvarint id;
// term means a tagged codec term):
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
//	sync, ack        uvarint seq
//
// Kinds 15 and 16 were the handshake's hello and proof in an early version;
// the handshake has its own framing now (internal/handshake), and a frame of
// either kind is corrupt.
package wire
