// Package global holds the cluster-wide name registry: a full replica on every
// node, the operations that change it, the merge applied when nodes connect,
// the cleanup when processes or nodes go, and the deterministic rule that
// settles conflicting registrations. It has no sockets: package node drives a
// [Replica] through the [Host] interface and the Handle, Merge,
// ProcessExited and NodeDown calls, and hands its users only the [Registry]
// inside it (Register, Unregister, Whereis, Names), which cannot make the
// replica disagree with its peers.
//
// # Model
//
// Every registration is owned by the node its process runs on. That node
// keeps it in its own table and is the only one that changes the table; it
// broadcasts each change (add or remove) to every connected node, in order.
// Every other node holds an exact copy of each connected peer's table: made
// from the peer's snapshot when they connect (Merge), kept up to date by the
// peer's ops (Handle), dropped when the peer goes down (NodeDown). What a node
// sees — Whereis — is, for each name, the winner among its own table and its
// copies. When all nodes are connected and the traffic has settled, every node
// holds the same tables, so every replica is equal. Nothing is relayed: a node
// only ever vouches for its own processes, so no stale third-hand state can
// linger, and no tombstones are needed.
//
// Register of another node's process is a request to that owner. The
// registering node shows the name at once (it reads its own writes) until the
// owner answers with an add (accepted) or a remove (the process is dead, or it
// lost a conflict). Unregister of a name owned elsewhere hides it at once and
// asks the owner to remove it.
//
// # Conflict rule
//
// Two registrations of one name can both be accepted when two nodes register
// it at the same moment, or on both sides of a partition. Each carries a
// Lamport version; [Wins] orders them: lower version first, then PID, then the
// registering node. When an owner sees one of its registrations beaten by a
// registration in another node's table, it drops its own, broadcasts the
// removal and sends its process a [Conflict] message (the process keeps
// running). Only the owner does this, and it drops the entry as it tells the
// process, so each losing registration is told exactly once. The best
// registration is never beaten, so after traffic settles each name is held by
// exactly one registration on every node.
//
// # Edge cases
//
//   - Unregister racing a register: a removal names one registration (name,
//     PID, version, registering node), never just a name, so an unregister of
//     an old registration that crosses a new registration of the same name
//     leaves the new one alone. Re-registering after an unregister takes a new,
//     higher version.
//   - A merge bringing a name of a node this node thinks is down: cannot
//     happen. A snapshot only holds its sender's own processes (Merge refuses
//     anything else as malformed); names of the down node come back only when
//     that node itself reconnects and sends its snapshot.
//   - A stale op after NodeDown: ops from a node without a copy (down, or not
//     yet merged) are ignored; the node's next snapshot holds their effect.
//     Only removals still clear this node's own requests to it.
//   - A request for a dead process, or one of an earlier incarnation of its
//     node: the owner's Host.Alive says no, and the owner answers with a
//     remove, so the name disappears on the registering node too.
//   - A partial partition (A sees B, B sees C, A does not see C): A shows B's
//     names and its own, C's are hidden on A until A and C reconnect. The
//     registry converges once the full mesh is back.
//
// # Order of calls the node must keep
//
// On connect: add the peer to the broadcast set, then take Snapshot and send
// it as the first registry frame; on receipt, Merge it before handling any ops
// frame of that peer. Frames of one peer are handled in the order sent. Call
// NodeDown when a connection is gone, before any Merge of a new connection
// with that node, and never Handle a frame of the old connection after it.
// Host.Alive must say false for a process before ProcessExited is called for
// it.
package global
