// Package loop runs Mesh's network event loops: one gnet v2 engine per node,
// its loops sharded over cores, serving inbound and outbound peer sockets
// alike. Senders enqueue into a per-connection bounded queue; the owning loop
// drains it into one batched write per wake-up, and parses input straight
// from the loop's buffer. The package knows nothing of actors.
package loop
