package codec

import (
	"strconv"
)

// Atom is a symbolic constant, such as the exit reasons normal, kill and
// noconnection. It travels as itself: an Atom sent arrives as an Atom, never
// as a plain string.
type Atom string

// Tuple is a fixed group of values of any kind. An empty Tuple stays an empty
// (non-nil) Tuple across the wire.
type Tuple []any

// PID names one process: the node it lives on, the incarnation of that node,
// and a serial number unique within the incarnation. It is a comparable value,
// usable as a map key. The zero PID names no process.
//
// Incarnation is chosen at random each time a node starts, so a PID from an
// earlier run of a node with the same name never names a process of a later
// run.
type PID struct {
	Node        string
	Incarnation uint64
	ID          uint64
}

// IsZero reports whether p is the zero PID.
func (p PID) IsZero() bool { return p == PID{} }

// String formats p as <node.incarnation.id>, for logs; it is not parsed back.
func (p PID) String() string {
	b := make([]byte, 0, len(p.Node)+32)
	b = append(b, '<')
	b = append(b, p.Node...)
	b = append(b, '.')
	b = strconv.AppendUint(b, p.Incarnation, 16)
	b = append(b, '.')
	b = strconv.AppendUint(b, p.ID, 10)
	b = append(b, '>')
	return string(b)
}

// Ref is a reference unique within a node incarnation, such as the one that
// names a monitor. It is a comparable value, usable as a map key.
type Ref struct {
	Node        string
	Incarnation uint64
	ID          uint64
}

// IsZero reports whether r is the zero Ref.
func (r Ref) IsZero() bool { return r == Ref{} }

// String formats r as #Ref<node.incarnation.id>, for logs.
func (r Ref) String() string {
	b := make([]byte, 0, len(r.Node)+36)
	b = append(b, "#Ref<"...)
	b = append(b, r.Node...)
	b = append(b, '.')
	b = strconv.AppendUint(b, r.Incarnation, 16)
	b = append(b, '.')
	b = strconv.AppendUint(b, r.ID, 10)
	b = append(b, '>')
	return string(b)
}
