package node

import (
	"fmt"

	"github.com/meshrt/mesh/codec"
)

// PID names a process on some node. It is a comparable value, usable as a
// map key; see [codec.PID].
type PID = codec.PID

// Ref names a monitor (and anything else that needs a reference unique to a
// node incarnation). It is a comparable value; see [codec.Ref].
type Ref = codec.Ref

// Standard exit reasons. A process function that returns nil exits with
// [Normal]; one that returns an error exits with that error as its reason;
// one that panics exits with a [*PanicError].
const (
	// Normal is the reason of a process that finished its work. A normal
	// exit does not kill linked processes.
	Normal = codec.Atom("normal")
	// Kill, sent with [Process.Exit], kills the target even if it traps
	// exits; it then dies with reason [Killed].
	Kill = codec.Atom("kill")
	// Killed is the reason of a process killed by [Kill].
	Killed = codec.Atom("killed")
	// NoProc is the reason reported for a process that did not exist.
	NoProc = codec.Atom("noproc")
	// NoConnection is the reason reported when the connection to the
	// process's node was lost.
	NoConnection = codec.Atom("noconnection")
	// Shutdown is the reason of processes ended by [Node.Stop] or by the end
	// of [Node.Run]'s context.
	Shutdown = codec.Atom("shutdown")
)

// NodeDown is delivered to a process that called [Process.MonitorNode] when
// that node disconnects (at once if it was not connected).
type NodeDown struct {
	Node string
	// Reason says why: [Shutdown] (a graceful Stop), [ConnectionClosed],
	// [NetTickTimeout], [Disconnected], or [NoConnection] when MonitorNode
	// named a node that was not connected.
	Reason any
}

// Down is delivered to a process that monitors PID when PID exits, with the
// Ref that [Process.Monitor] returned.
type Down struct {
	Ref    Ref
	PID    PID
	Reason any
}

// Exit is delivered to a process that traps exits (see [Process.TrapExit])
// instead of the exit signal killing it: a linked process died, or someone
// called [Process.Exit] on it.
type Exit struct {
	From   PID
	Reason any
}

// PanicError is the exit reason of a process whose function panicked.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the goroutine's stack at the panic
}

// Error describes the panic; the stack is in the Stack field.
func (e *PanicError) Error() string { return fmt.Sprintf("node: process panicked: %v", e.Value) }

// isNormal reports whether reason is the normal exit reason.
func isNormal(reason any) bool {
	a, ok := reason.(codec.Atom)
	return ok && a == Normal
}
