package handshake

// Wire encoding of the four handshake messages.
//
// Invariants:
//   - Every message is kind(1) ‖ length(2, big endian) ‖ body(length). The
//     high nibble of kind is the framing version (1), the low nibble the
//     message type; any other kind is refused.
//   - A body length is checked against the fixed maximum of its kind before
//     a single body byte is read, and bodies are read into a fixed array on
//     the per-attempt struct: a peer can make this code allocate at most the
//     peer name (≤ 255 bytes), and only once a whole, well-formed hello is in.
//   - The hello layout is frozen for every protocol version, so any two
//     versions can read each other's hello and negotiate; version-specific
//     data belongs after the handshake.
//   - Decoders never panic and are strict: one encoding per value, no
//     trailing bytes.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Message kinds: framing version 1 in the high nibble, type in the low one.
const (
	kindHello     byte = 0x11
	kindProof     byte = 0x12
	kindRefused   byte = 0x13
	kindAdmission byte = 0x14
)

const (
	headerLen = 3 // kind + uint16 length

	// MaxNameLen is the longest node name a hello may carry, in bytes.
	MaxNameLen = 255

	// helloFixedLen is min(2) max(2) incarnation(8) features(8) nonce(32) nameLen(1).
	helloFixedLen = 2 + 2 + 8 + 8 + 32 + 1
	maxHelloBody  = helloFixedLen + MaxNameLen
	proofLen      = sha256.Size
	refusedLen    = 1
	admissionLen  = 1

	// maxBody is the largest body of any kind; the read buffer's size.
	maxBody = maxHelloBody
)

// refusal is the one-byte reason a refused notice carries. Each maps to the
// sentinel the receiving side returns.
type refusal byte

const (
	refusedAuth           refusal = 1 // the proof did not check
	refusedUnexpectedPeer refusal = 2 // the dialler reached a node it did not dial
	refusedBadHello       refusal = 3 // the hello was malformed or its name refused
)

// appendMessage appends a message of the given kind and body to b.
func appendMessage(b []byte, kind byte, body []byte) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

// appendHello appends h as a complete hello message to b. h.Name must be at
// most MaxNameLen bytes (the caller checks).
func appendHello(b []byte, h *Hello) []byte {
	b = append(b, kindHello)
	b = binary.BigEndian.AppendUint16(b, uint16(helloFixedLen+len(h.Name)))
	b = binary.BigEndian.AppendUint16(b, h.MinVersion)
	b = binary.BigEndian.AppendUint16(b, h.MaxVersion)
	b = binary.BigEndian.AppendUint64(b, h.Incarnation)
	b = binary.BigEndian.AppendUint64(b, h.Features)
	b = append(b, h.Nonce[:]...)
	b = append(b, byte(len(h.Name)))
	return append(b, h.Name...)
}

// readMessage reads one message from r into buf and returns its kind and a
// body slice aliasing buf. The length is checked against the kind's maximum
// before the body is read. Errors from r are returned as they are (wrapped,
// for the caller to classify); malformed framing gives ErrBadHello.
func readMessage(r io.Reader, buf *[maxBody]byte) (kind byte, body []byte, err error) {
	// The header goes through buf too: a local array handed to r would
	// escape and cost an allocation per message.
	hdr := buf[:headerLen]
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, nil, err
	}
	kind = hdr[0]
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	var lo, hi int
	switch kind {
	case kindHello:
		lo, hi = helloFixedLen+1, maxHelloBody // a name has at least one byte
	case kindProof:
		lo, hi = proofLen, proofLen
	case kindRefused:
		lo, hi = refusedLen, refusedLen
	case kindAdmission:
		lo, hi = admissionLen, admissionLen
	default:
		return 0, nil, fmt.Errorf("%w: unknown message kind %#02x", ErrBadHello, kind)
	}
	if n < lo || n > hi {
		return 0, nil, fmt.Errorf("%w: message kind %#02x with length %d, want %d..%d", ErrBadHello, kind, n, lo, hi)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the header promised a body
		}
		return 0, nil, err
	}
	return kind, buf[:n], nil
}

// decodeHello decodes a hello body as returned by readMessage. It allocates
// only the name.
func decodeHello(body []byte) (Hello, error) {
	var h Hello
	if len(body) < helloFixedLen+1 || len(body) > maxHelloBody {
		return h, fmt.Errorf("%w: hello body of %d bytes", ErrBadHello, len(body))
	}
	h.MinVersion = binary.BigEndian.Uint16(body[0:])
	h.MaxVersion = binary.BigEndian.Uint16(body[2:])
	h.Incarnation = binary.BigEndian.Uint64(body[4:])
	h.Features = binary.BigEndian.Uint64(body[12:])
	copy(h.Nonce[:], body[20:52])
	nameLen := int(body[52])
	if nameLen == 0 || helloFixedLen+nameLen != len(body) {
		return Hello{}, fmt.Errorf("%w: name length %d in a hello body of %d bytes", ErrBadHello, nameLen, len(body))
	}
	if h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
		return Hello{}, fmt.Errorf("%w: version range %d..%d", ErrBadHello, h.MinVersion, h.MaxVersion)
	}
	h.Name = string(body[helloFixedLen:])
	return h, nil
}

// decodeAdmission decodes an admission body as returned by readMessage.
func decodeAdmission(body []byte) (Admission, error) {
	if len(body) != admissionLen {
		return 0, fmt.Errorf("%w: admission body of %d bytes", ErrBadHello, len(body))
	}
	switch a := Admission(body[0]); a {
	case Admitted, Duplicate, Refused:
		return a, nil
	}
	return 0, fmt.Errorf("%w: admission %d", ErrBadHello, body[0])
}

// Role labels. They have the same length and differ, so neither is a prefix
// of the other and a proof made for one role never checks for the other.
const (
	labelDialler  = "mesh handshake v1 proof: dialler "
	labelAcceptor = "mesh handshake v1 proof: acceptor"
)

// proofInput is everything a proof covers besides the role label.
type proofInput struct {
	exporter      [32]byte
	diallerNonce  [32]byte
	acceptorNonce [32]byte
	diallerName   string
	acceptorName  string
}

// computeProof returns HMAC-SHA256(key, label ‖ exporter ‖ diallerNonce ‖
// acceptorNonce ‖ len ‖ diallerName ‖ len ‖ acceptorName), lengths one byte
// each (names are at most MaxNameLen bytes, so the encoding is injective).
func computeProof(key *Key, label string, in *proofInput) [proofLen]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(label))
	m.Write(in.exporter[:])
	m.Write(in.diallerNonce[:])
	m.Write(in.acceptorNonce[:])
	m.Write([]byte{byte(len(in.diallerName))})
	m.Write([]byte(in.diallerName))
	m.Write([]byte{byte(len(in.acceptorName))})
	m.Write([]byte(in.acceptorName))
	var out [proofLen]byte
	m.Sum(out[:0])
	return out
}
