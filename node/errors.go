package node

import (
	"errors"
	"net"
	"strings"

	"github.com/meshrt/mesh/internal/handshake"
)

// Errors returned by the runtime. Each is a distinct value for errors.Is;
// returned errors wrap them with detail.
var (
	// ErrBadName reports a node name that is not of the form name@host:port.
	ErrBadName = errors.New("node: bad node name")
	// ErrAuth reports that a peer failed or refused the cookie proof.
	ErrAuth = errors.New("node: authentication failed")
	// ErrUnknownActor reports a spawn of an actor the target node has not defined.
	ErrUnknownActor = errors.New("node: unknown actor")
	// ErrNotConnected reports that the node named is not reachable.
	ErrNotConnected = errors.New("node: not connected")
	// ErrExited is returned to a process whose life has ended (an exit
	// signal killed it, its node stopped, or Run's context ended) by the
	// calls that need it alive: Receive, ReceiveMatch and Link. A process
	// function that sees it should return. The other calls do not report it:
	// Send still sends, Spawn still spawns, and a SpawnLink child dies at
	// once, as a process linked to an exited one does.
	ErrExited = errors.New("node: process has exited")
	// ErrBadOption reports an invalid option value given to [Start]; the
	// error names the option.
	ErrBadOption = errors.New("node: invalid option")
	// ErrStopped reports a call on a node that has stopped.
	ErrStopped = errors.New("node: node stopped")
	// ErrVersion reports a peer that speaks no protocol version this node
	// speaks (the peer is reachable, so it is not ErrNotConnected).
	ErrVersion = errors.New("node: no common protocol version")
	// ErrBadPID reports a PID that names no node (the zero PID) or the wrong
	// incarnation of this node.
	ErrBadPID = errors.New("node: bad pid")
)

// peerError is a failure to reach or keep a peer. Its text is the node's
// error and the root cause, without the layers between them (loop,
// handshake) that a user of this package cannot act on; errors.Is and
// errors.As see the node's error and the whole chain of the cause.
type peerError struct {
	op    string // "connect name", or "" when the caller says what it did
	kind  error  // ErrNotConnected, ErrAuth or ErrVersion
	cause error
}

// newPeerError classifies cause: a failed or refused cookie proof is
// ErrAuth, no common protocol version is ErrVersion, anything else is
// ErrNotConnected.
func newPeerError(op string, cause error) *peerError {
	kind := ErrNotConnected
	switch {
	case errors.Is(cause, handshake.ErrAuth):
		kind = ErrAuth
	case errors.Is(cause, handshake.ErrVersion):
		kind = ErrVersion
	}
	return &peerError{op: op, kind: kind, cause: cause}
}

func (e *peerError) Error() string {
	var b strings.Builder
	if e.op != "" {
		b.WriteString(e.op)
		b.WriteString(": ")
	}
	b.WriteString(e.kind.Error())
	if d := rootCause(e.cause); d != "" {
		b.WriteString(": ")
		b.WriteString(d)
	}
	return b.String()
}

func (e *peerError) Unwrap() []error { return []error{e.kind, e.cause} }

// rootCause is the text of err that tells a user something: what follows
// the handshake's own error (the peer refused our proof, ...), the network
// error (dial tcp ...: connection refused), else err's text without the
// names of the layers it passed through.
func rootCause(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	for _, sentinel := range []error{handshake.ErrAuth, handshake.ErrVersion} {
		if errors.Is(err, sentinel) {
			if _, after, ok := strings.Cut(s, sentinel.Error()); ok {
				return strings.TrimPrefix(after, ": ")
			}
		}
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	parts := strings.Split(s, ": ")
	kept := parts[:0]
	for _, p := range parts {
		switch p {
		case "loop", "hook", "handshake", "tlsconn", "wire", "codec", "global", "node":
			continue // a layer's name, not a cause
		}
		if len(kept) > 0 && kept[len(kept)-1] == p {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, ": ")
}
