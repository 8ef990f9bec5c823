// Package memnode lets the module's packages outside node (nodetest) put
// a node on an in-memory network (internal/memlink). Package node keeps the
// option unexported, so that no user of node picks a transport; it hands
// it over here when it loads.
package memnode

import "github.com/meshrt/mesh/internal/memlink"

// Option, set by package node when it loads, returns the node.Option that
// puts a node on nw: its links come from nw instead of the loop engine (no
// TLS, no socket), and its name's port 0 picks a free address on nw. The
// result is typed any because node imports this package; assert it to
// node.Option. Safe from any goroutine once node is loaded.
var Option func(nw *memlink.Network) any
