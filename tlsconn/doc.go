// Package tlsconn layers standard crypto/tls (TLS 1.3 only) over event-loop
// connections, and makes the ephemeral certificate a node presents.
//
// # What the certificate is for
//
// Every node makes a fresh self-signed ECDSA P-256 certificate when it
// starts ([NewCertificate]). It gives TLS its key exchange and a server key;
// it does NOT authenticate a peer. Clients therefore skip certificate
// verification ([ClientConfig] sets InsecureSkipVerify): a peer is
// authenticated afterwards by the cookie proof, an HMAC bound to the TLS
// exporter value of this very connection (see internal/handshake). A man in
// the middle who terminates TLS on both legs sees two different exporter
// values and cannot relay a valid proof.
//
// # The adapter
//
// [Adapter] is the net.Conn under a *tls.Conn. It has two modes:
//
//   - blocking (from [NewAdapter] until [Adapter.Detach]): reads, writes and
//     deadlines go straight to the wrapped net.Conn. The TLS handshake and
//     the post-TLS hook run in this mode, on a short-lived goroutine with a
//     deadline, because a failed handshake step is latched forever by
//     crypto/tls and cannot be resumed after a "would block".
//   - loop-fed (after Detach): the event loop that owns the connection
//     offers ciphertext with [Adapter.Feed]; Read copies from it (the one
//     copy, into tls.Conn's raw input) and, once it is used up, returns
//     [ErrWouldBlock], a net.Error whose Temporary() is true, which
//     tls.Conn does not latch: partial records stay in its raw input and the
//     next Read continues them. Write never fails and never blocks: it
//     appends the ciphertext to an output buffer the loop takes with
//     [Adapter.TakeOutput] and writes to the socket in one call (tls.Conn
//     reuses its own buffer, so the copy is required). Close and deadlines
//     are no-ops: the socket belongs to the loop.
//
// # Rules for the owner (all enforced by package loop)
//
//   - After Detach, every call on the tls.Conn (Read, Write, Close) and on
//     the adapter happens on the owning loop only, one at a time. Nothing is
//     locked: tls.Conn's own mutexes are uncontended there.
//   - Never call the tls.Conn on a loop before its handshake is complete:
//     it would block on the handshake mutex. Detach after the handshake.
//   - Bytes tls.Conn buffered during the handshake (a record read ahead by
//     the hook) stay in the tls.Conn; the owner drains them with one Read
//     right after it takes over, before any new input arrives.
//   - A KeyUpdate makes Read write: flush the output after reading too.
package tlsconn
