// Package global holds the cluster-wide name registry: a full replica on every
// node, the operations that change it, the merge applied when nodes connect,
// the cleanup when processes or nodes go, and the deterministic rule that
// settles conflicting registrations. It has no sockets: package node drives it.
package global
