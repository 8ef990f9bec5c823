package wire

// Addressed records: messages sent to something other than a process ID —
// a registered name, a waiting call, a name to call, a process to call
// (the request and the call's monitor in one record) — carried in the
// message stream, so they keep their order with the sender's other
// messages, are batched, fragmented when large and slowed by backpressure
// like any message.
//
// An addressed record is a batch record whose target ID is 0 (no process
// has ID 0) and whose term bytes start with an address instead of a term:
//
//	kind byte, then by kind:
//	AddrName      uvarint len, name, body term
//	AddrReply     uvarint ref ID, flags byte, body term
//	AddrCall      uvarint len, name, uvarint ref ID, body term
//	AddrUnmonitor uvarint len, name, uvarint ref ID
//	AddrCallPID   uvarint process ID, uvarint ref ID, body term
//
// The node and incarnation of a reference are implied by the link, like
// those of the record's process IDs. A node that does not know addressed
// records drops them as messages to a process that does not exist.

import (
	"encoding/binary"
	"fmt"

	"github.com/meshrt/mesh/codec"
)

// AddrKind says what an addressed record is sent to.
type AddrKind uint8

// Address kinds.
const (
	AddrName      AddrKind = 1 // a registered name: a send
	AddrReply     AddrKind = 2 // a waiting call (its reference): a reply
	AddrCall      AddrKind = 3 // a registered name, with the call's reference: a request
	AddrUnmonitor AddrKind = 4 // a registered name and a reference: the call's monitor ends; no body
	AddrCallPID   AddrKind = 5 // a process ID, with the call's reference: a request that also sets the call's monitor
)

// ReplyReleased is an AddrReply flag: the replier dropped its end of the
// call's monitor.
const ReplyReleased uint8 = 1

// MaxAddrName bounds the name in an addressed record.
const MaxAddrName = 255

// Address is a parsed addressed record. Name and Body alias the record.
type Address struct {
	Kind  AddrKind
	Name  []byte // AddrName, AddrCall, AddrUnmonitor
	To    uint64 // AddrCallPID: the target process's ID
	Ref   uint64 // AddrReply, AddrCall, AddrUnmonitor, AddrCallPID
	Flags uint8  // AddrReply
	Body  []byte // the body term; empty for AddrUnmonitor
}

var errAddress = fmt.Errorf("%w: malformed addressed record", codec.ErrCorrupt)

// AppendAddressed appends an addressed record item (a batch frame of one
// record, target ID 0) from the process from, of the given kind: name is
// used by the kinds that carry one, ref and flags by those that carry a
// reference, and body is encoded after the address unless kind is
// AddrUnmonitor. On error dst is returned with its original length. Safe
// from any goroutine.
func AppendAddressed(dst []byte, from uint64, kind AddrKind, name string, ref uint64, flags uint8, body any) ([]byte, error) {
	start := len(dst)
	if (kind != AddrReply && (name == "" || len(name) > MaxAddrName)) || kind < AddrName || kind > AddrUnmonitor {
		return dst, fmt.Errorf("%w: addressed record kind %d, name of %d bytes", codec.ErrUnencodable, kind, len(name))
	}
	dst, at := beginFrame(dst, KindBatch)
	dst = appendUvarint(dst, 0)
	dst = appendUvarint(dst, from)
	lenAt := len(dst)
	dst = append(dst, 0, byte(kind))
	switch kind {
	case AddrName:
		dst = appendAddrName(dst, name)
	case AddrReply:
		dst = appendUvarint(dst, ref)
		dst = append(dst, flags)
	default:
		dst = appendAddrName(dst, name)
		dst = appendUvarint(dst, ref)
	}
	if kind != AddrUnmonitor {
		var err error
		if dst, err = codec.AppendTerm(dst, body); err != nil {
			return dst[:start], err
		}
	}
	dst = patchLength(dst, lenAt)
	return endFrame(dst, at), nil
}

// AppendCallPID appends an AddrCallPID record item from the process from
// to the process to (an ID of the receiving node) under the call's
// reference ref, with body encoded after the address. On error dst is
// returned with its original length. Safe from any goroutine.
func AppendCallPID(dst []byte, from, to, ref uint64, body any) ([]byte, error) {
	start := len(dst)
	dst, at := beginFrame(dst, KindBatch)
	dst = appendUvarint(dst, 0)
	dst = appendUvarint(dst, from)
	lenAt := len(dst)
	dst = append(dst, 0, byte(AddrCallPID))
	dst = appendUvarint(dst, to)
	dst = appendUvarint(dst, ref)
	var err error
	if dst, err = codec.AppendTerm(dst, body); err != nil {
		return dst[:start], err
	}
	dst = patchLength(dst, lenAt)
	return endFrame(dst, at), nil
}

func appendAddrName(dst []byte, name string) []byte {
	dst = appendUvarint(dst, uint64(len(name)))
	return append(dst, name...)
}

// ParseAddress parses the term bytes of a record whose target ID is 0. It
// checks the address only; the body is the caller's to decode. It never
// panics and allocates nothing.
func ParseAddress(b []byte) (Address, error) {
	var a Address
	if len(b) == 0 {
		return a, errAddress
	}
	a.Kind, b = AddrKind(b[0]), b[1:]
	var ok bool
	switch a.Kind {
	case AddrName:
		if a.Name, b, ok = readAddrName(b); !ok {
			return a, errAddress
		}
	case AddrReply:
		if a.Ref, b, ok = readAddrUvarint(b); !ok || len(b) == 0 {
			return a, errAddress
		}
		a.Flags, b = b[0], b[1:]
	case AddrCall, AddrUnmonitor:
		if a.Name, b, ok = readAddrName(b); !ok {
			return a, errAddress
		}
		if a.Ref, b, ok = readAddrUvarint(b); !ok {
			return a, errAddress
		}
	case AddrCallPID:
		if a.To, b, ok = readAddrUvarint(b); !ok || a.To == 0 {
			return a, errAddress
		}
		if a.Ref, b, ok = readAddrUvarint(b); !ok {
			return a, errAddress
		}
	default:
		return a, errAddress
	}
	if a.Kind == AddrUnmonitor {
		if len(b) != 0 {
			return a, errAddress
		}
		return a, nil
	}
	if len(b) == 0 {
		return a, errAddress
	}
	a.Body = b
	return a, nil
}

func readAddrUvarint(b []byte) (uint64, []byte, bool) {
	v, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, b, false
	}
	return v, b[k:], true
}

func readAddrName(b []byte) ([]byte, []byte, bool) {
	l, b, ok := readAddrUvarint(b)
	if !ok || l == 0 || l > MaxAddrName || l > uint64(len(b)) {
		return nil, b, false
	}
	return b[:l], b[l:], true
}
