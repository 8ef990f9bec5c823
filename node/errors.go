package node

import (
	"errors"

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
	ErrVersion = handshake.ErrVersion
	// ErrBadPID reports a PID that names no node (the zero PID) or the wrong
	// incarnation of this node.
	ErrBadPID = errors.New("node: bad pid")
)
