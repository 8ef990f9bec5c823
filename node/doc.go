// Package node is the Mesh runtime a program holds: a node with its
// processes, PIDs, spawn, send and receive, links and monitors, and (across
// the network) the cookie handshake, heartbeats, full-mesh membership, remote
// spawn and the routing of sends to other nodes.
//
// A node is started with [Start] and stopped with [Node.Stop]. Code runs
// inside processes: [Node.Run] runs a function as a process, [Node.SpawnFunc]
// and [Process.Spawn] start more. Processes talk only by messages.
package node
