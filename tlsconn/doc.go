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
//     crypto/tls and cannot be resumed after a "would block". The owner sets
//     that deadline with [Adapter.SetHandshakeDeadline], which holds it: a
//     hook calling the tls.Conn's deadline methods cannot move or clear it.
//   - loop-fed (after Detach): the event loop that owns the connection
//     offers ciphertext with [Adapter.Feed]; Read copies from it (the one
//     copy, into tls.Conn's raw input) and, once it is used up, returns
//     [ErrWouldBlock], a net.Error whose Temporary() is true, which
//     tls.Conn does not latch: partial records stay in its raw input and the
//     next Read continues them. The adapter follows the TLS record framing
//     of the stream (from the handshake's first byte) and gives tls.Conn a
//     feed's last record apart from the bytes before it, so that
//     [Adapter.Drained] can tell, after a Read that returned plaintext,
//     that tls.Conn holds nothing more: the owner skips the Read that
//     would only return ErrWouldBlock. Write never fails and never blocks: it
//     appends the ciphertext to an output buffer the owner takes with
//     [Adapter.SwapOutput] and writes to the socket in one call (tls.Conn
//     reuses its own buffer, so the copy is required). Close and deadlines
//     are no-ops: the socket belongs to the loop.
//
// # Rules for the owner (all enforced by package loop)
//
//   - After Detach, the read half (tls.Conn Read; Feed) runs on the owning
//     loop only. The write half (tls.Conn Write, Close) runs on one
//     goroutine at a time, chosen by the owner: the loop, or a sender that
//     holds the owner's write token. A Write may overlap a Read: tls.Conn
//     keeps the two halves under separate mutexes, and a Read that must
//     write (a KeyUpdate answer) takes the output mutex, so records are
//     appended to the adapter's output, itself under a small mutex, in
//     sequence order. Whoever writes the socket takes all of that output
//     at once, so records reach the socket in order.
//   - Never call the tls.Conn on a loop before its handshake is complete:
//     it would block on the handshake mutex. Detach after the handshake.
//   - Bytes tls.Conn buffered during the handshake (a record read ahead by
//     the hook) stay in the tls.Conn; the owner drains them with one Read
//     right after it takes over, before any new input arrives.
//   - A KeyUpdate makes Read write: after reading, check
//     [Adapter.PendingOutput] and have the current write-token holder
//     flush it.
package tlsconn
