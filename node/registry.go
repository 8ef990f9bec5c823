package node

import (
	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
)

// Global returns the node's replica of the cluster-wide name registry:
// Register, Whereis (local, lock-free, no network) and Unregister.
func (n *Node) Global() *global.Registry { return n.global }

// registryHost plugs the registry into the node (see global.Host). Its
// methods run under the registry's lock: none may call back into it, and
// Broadcast never waits (control frames).
type registryHost struct{ n *Node }

func (h registryHost) Self() string { return h.n.self }

func (h registryHost) Broadcast(frame []byte) {
	for _, pe := range h.n.upPeers() {
		pe.control(func(b []byte) ([]byte, error) {
			x := codec.Registry{Payload: frame}
			return x.Append(b)
		})
	}
}

func (h registryHost) Connected(node string) bool { return h.n.peerIfUp(node) != nil }

func (h registryHost) Alive(pid codec.PID) bool {
	p := h.n.local(pid)
	return p != nil && p.markNamed()
}

func (h registryHost) Notify(loser codec.PID, msg any) {
	if p := h.n.local(loser); p != nil {
		p.mb.Push(msg)
	}
}

// registryFrame passes a peer's registry frame to the replica. Runs on the
// peer's loop, so frames are handled in the order sent. Frames of a
// connection that is no longer the peer's (replaced by a newer one, whose
// snapshot may already be merged) are dropped: applied after that snapshot
// they would bring back state it superseded.
func (n *Node) registryFrame(pe *peer, payload []byte) error {
	if n.peerIfUp(pe.name) != pe {
		return nil
	}
	if global.IsSnapshot(payload) {
		return n.global.Merge(pe.name, payload)
	}
	return n.global.Handle(pe.name, payload)
}
