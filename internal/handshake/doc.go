// Package handshake implements the Mesh peer handshake (DESIGN §4), run on a
// short-lived goroutine right after a TLS 1.3 handshake, over a blocking
// *tls.Conn, before any Mesh frame flows.
//
// # Messages
//
// Both sides send a hello at once, without waiting for the other's (the
// transport must buffer one hello, ≤ 311 bytes, without the peer reading, as
// any TCP socket does): the protocol versions spoken, node name, incarnation,
// feature flags and 32 bytes from crypto/rand. Each side then picks the
// highest version both ranges hold, or fails with ErrVersion, and the result
// carries the feature bits both set.
//
// Then the proofs, HMAC-SHA256 under Key = DeriveKey(cookie) of
//
//	role label ‖ exporter ‖ dialler nonce ‖ acceptor nonce ‖
//	len ‖ dialler name ‖ len ‖ acceptor name
//
// where exporter is the 32-byte TLS exporter value for ExporterLabel and
// each len is one byte. The dialler and acceptor labels differ, so a proof
// sent back to its maker (reflection) never checks. Proofs are compared
// with hmac.Equal.
//
// Channel binding: the exporter is a secret of one TLS connection. A relay
// that terminates TLS on both legs has two connections with two exporter
// values, so a proof relayed from one leg does not check on the other, and
// the relay cannot make one without the key. A relay that only forwards TCP
// bytes sees TLS records, never the cookie, the key or any hello field. The
// hellos themselves carry no MAC: once the proofs check, both ends share one
// TLS connection, whose record integrity already covers every hello byte.
//
// # Order, and what each side learns
//
// The dialler sends its proof first; the acceptor checks it before it sends
// its own. So a party that merely connects to a node's port never obtains a
// proof made with the key, which it could use to test cookie guesses
// offline: the acceptor answers a bad proof with a short "refused" notice,
// and the dialler learns only that it was refused (wrong cookie, or a relay
// in between; it cannot tell which, nor anything about the key). The
// converse exposure is unavoidable in one of the two orders: a dialler gives
// its proof to whatever answers at the address it dialled. Hence cookies
// should be long and random. The dialler checks the peer's advertised name
// against the node it dialled before sending its proof.
//
// A peer presenting this node's own name is refused at once (ErrBadHello
// at both ends): a node never takes another connection for itself.
//
// A refused notice is also sent when a name is refused (ErrBadHello at both
// ends) or the dialler reached another node (ErrUnexpectedPeer at both
// ends), so the other side reports a reason rather than EOF. None is sent for
// a version mismatch (both sides see it from the hellos) nor by a dialler
// whose peer's proof fails (an acceptor that checked our proof with the same
// key cannot send a bad one, so the peer is not a conforming node).
//
// # Admission
//
// Once the dialler's proof has checked, the acceptor decides whether it
// takes the connection (Config.Admit: the node keeps one connection per
// peer, and refuses peers while stopping) and tells the dialler in an
// admission message, sent with its own proof in one write: admitted,
// duplicate (it keeps another connection with that peer) or refused. The
// dialler checks the proof before it reads the decision. Only then does
// either side treat the connection as a link. A decision is made only for a
// dialler that proved the cookie, so strangers learn nothing from it.
//
// # Wire encoding
//
// Every message is kind(1) ‖ length(2, big endian) ‖ body. The kind's high
// nibble is the framing version (1), its low nibble the type: 0x11 hello,
// 0x12 proof, 0x13 refused, 0x14 admission. Bodies:
//
//	hello:     min version(2) max version(2) incarnation(8) features(8)
//	           nonce(32) name length(1) name(1..255)   — 54..308 bytes
//	proof:     HMAC-SHA256(32)
//	refused:   reason(1): 1 auth, 2 unexpected peer, 3 bad hello
//	admission: decision(1): 1 admitted, 2 duplicate, 3 refused
//
// Integers are big endian. The hello layout is frozen across protocol
// versions, so any two versions can negotiate; later versions put their
// own data after the handshake. Nothing but these messages is accepted;
// every length is checked against its kind's fixed maximum before any byte
// of the body is read, and a body lands in a fixed buffer, so the only
// allocation a peer can cause is its name.
//
// The conn's deadline belongs to the caller, which sets it before Run for
// TLS and the handshake together (loop's engine, from its handshake
// timeout): Run never touches it. loop bounds how many handshakes may be
// pending at once.
package handshake
