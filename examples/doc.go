// Package examples holds the snippets of Mesh's seed document as Go programs,
// one per directory, each runnable with `go run ./examples/<name>`:
//
//   - start: Node.start — start a node and print its name
//   - connect: Node.connect — connect to another node
//   - list: Node.list — query the cluster, which becomes a full mesh
//   - spawn: Node.spawn — start a process on another node by actor name
//   - spawnlink: Node.spawn_link — spawn and link, and hear of the crash
//   - global: Global.register/whereis/unregister — cluster-wide names
//   - monitornode: Node.monitor — hear when another node goes down
//   - kv: a supervised key-value service on one node, called by name from
//     another (Call, local names, supervisor; see docs/services.md)
//   - cluster: seeds, a node killed and restarted that rejoins by itself,
//     process groups (see docs/cluster.md)
//
// Every example but start runs two nodes in two OS processes. Given no -peer,
// it starts its partner itself, as a child process; to run the two by hand,
// start the partner first with -serve:
//
//	go run ./examples/spawn -serve -name b@127.0.0.1:7001 -cookie secret
//	go run ./examples/spawn -peer b@127.0.0.1:7001 -cookie secret
//
// The shared flag and child-process plumbing is in examples/internal/pair.
package examples
