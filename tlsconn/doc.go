// Package tlsconn layers standard crypto/tls (TLS 1.3 only) over event-loop
// connections, and makes the ephemeral certificate a node presents. The
// certificate does not authenticate a peer: the cookie proof bound to the TLS
// exporter does (see internal/handshake).
package tlsconn
