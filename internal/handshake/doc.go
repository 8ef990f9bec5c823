// Package handshake implements the Mesh peer handshake that runs right after
// TLS 1.3: hello (version, name, incarnation, features, nonce), then a proof
// HMAC-SHA256(HKDF(cookie), role label ‖ TLS exporter ‖ nonces ‖ names)
// checked in constant time. Binding the proof to the TLS exporter defeats a
// relay that terminates TLS on both legs; the cookie never crosses the wire.
package handshake
