// Package nodeproc is the node a meshbench process serves: the actors that
// load runs and the multi-process tests drive by remote spawns, the serving
// loop of `meshbench node`, the start and stop of child node processes, and
// the raw crypto/tls baseline the load runs measure Mesh against.
//
// It is internal: cmd/meshbench and the tests of this package are its only
// users. The tests here exercise the node runtime across real OS processes
// (killed, frozen, partitioned in network namespaces); their node processes
// are the test binary itself, re-executed as `<binary> node ...` (see
// TestMain), serving exactly what `meshbench node` serves.
//
// # Actors
//
// Message shapes, all codec terms (atoms written as strings):
//
//	echo      any codec.Tuple{from PID, ...} is sent back to from, unchanged
//	server    answers every node.Request (a Call) with its body, unchanged
//	sink      counts messages; {"count", from} → {"count", n int64}
//	crash     exits with an error at its first message, or at once given "now"
//	noop      returns at once (remote spawn rate)
//	stats     args (replyTo): sends {"stats", node, msgs int64, connected []any} and ends
//	whereis   args (replyTo, names ...string): sends {"whereis", node, []any{a PID or
//	          "undefined" per name, from this node's global registry replica}} and ends
//	stop      args (run int64): every load worker of that run stops (see below)
//
// The load workers each belong to a run (an int64 the driver picks); they
// work until a stop actor names their run, then send the driver a report
// and end. See load.go for their arguments and reports.
package nodeproc
