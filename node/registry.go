package node

import (
	"errors"
	"fmt"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
	"github.com/meshrt/mesh/internal/wire"
)

// Global returns the node's replica of the cluster-wide name registry, as
// its users see it: Register, Unregister, Whereis (local, lock-free, no
// network), Names and counters. What the node feeds it from its peers stays
// with the node. Safe from any goroutine.
func (n *Node) Global() *global.Registry { return &n.global.Registry }

// registryHost plugs the registry into the node (see global.Host). Its
// methods run under the registry's lock: none may call back into it, and
// Broadcast never waits (control frames).
type registryHost struct{ n *Node }

func (h registryHost) Self() string { return h.n.self }

func (h registryHost) Broadcast(frame []byte) {
	for _, pe := range h.n.upPeers() {
		pe.sendRegistry(frame)
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

// A registry frame larger than one part (a snapshot of a big table, say)
// travels as several KindRegistry frames, each carrying a part behind a
// marker byte that global's own frames never start with; the receiver joins
// them, within a bound, and handles the whole as one frame.
const (
	registryPart     = 1 << 20 // bytes of a registry frame per wire frame
	registryPartMore = 0xF0    // a part, more follow
	registryPartLast = 0xF1    // the last part
)

// sendRegistry sends one registry frame to the peer, in parts if large.
func (pe *peer) sendRegistry(frame []byte) {
	if len(frame) <= registryPart {
		pe.control(&wire.Registry{Payload: frame})
		return
	}
	part := make([]byte, 0, registryPart+1)
	for off := 0; off < len(frame); off += registryPart {
		end := min(off+registryPart, len(frame))
		marker := byte(registryPartMore)
		if end == len(frame) {
			marker = registryPartLast
		}
		part = append(append(part[:0], marker), frame[off:end]...)
		pe.control(&wire.Registry{Payload: part})
	}
}

// registryFrame passes a peer's registry frame to the replica. Runs on the
// peer's loop, so frames are handled in the order sent. Frames of a
// connection that is no longer the peer's (replaced by a newer one, whose
// snapshot may already be merged) are dropped: applied after that snapshot
// they would bring back state it superseded.
func (n *Node) registryFrame(pe *peer, payload []byte) error {
	if len(payload) > 0 && (payload[0] == registryPartMore || payload[0] == registryPartLast) {
		if max := n.opts.registryFrame; len(pe.regParts)+len(payload)-1 > max {
			return &wire.LimitError{Limit: "registry_frame", Asked: len(pe.regParts) + len(payload) - 1, Max: max}
		}
		pe.regParts = append(pe.regParts, payload[1:]...)
		if payload[0] == registryPartMore {
			return nil
		}
		payload, pe.regParts = pe.regParts, nil
	}
	if n.peerIfUp(pe.name) != pe {
		return nil
	}
	var err error
	if global.IsSnapshot(payload) {
		err = n.global.Merge(pe.name, payload)
	} else {
		err = n.global.Handle(pe.name, payload)
	}
	if errors.Is(err, global.ErrLimit) {
		// Counted and logged as a limit by OnData, which cuts the link.
		max := n.opts.registryNames
		return fmt.Errorf("%w: %w", &wire.LimitError{Limit: "registry_names", Asked: max + 1, Max: max}, err)
	}
	return err
}
