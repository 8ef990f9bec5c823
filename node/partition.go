package node

import (
	"errors"
	"fmt"
	"time"
)

// Fault injection for tests of partitions: a node told to partition itself
// from a peer closes the connection and refuses new ones with it, both
// ways, until healed. Nothing outside the package's tests uses it; the
// production cost is one nil map read per handshake and dial.

var errPartitioned = errors.New("node: partitioned (test fault injection)")

// partition cuts this node off from peers until heal.
func (n *Node) partition(peers ...string) {
	n.peersMu.Lock()
	if n.cut == nil {
		n.cut = make(map[string]bool)
	}
	var toClose []*peer
	for _, p := range peers {
		n.cut[p] = true
		if pe := n.peers[p]; pe != nil && pe.conn != nil {
			toClose = append(toClose, pe)
		}
	}
	n.peersMu.Unlock()
	for _, pe := range toClose {
		_ = pe.conn.Close(errPartitioned)
	}
	// Return once the connections are gone, so that a heal and Connect
	// right after cannot find the dying one.
	for _, pe := range toClose {
		select {
		case <-pe.down:
		case <-n.life.Done():
		case <-time.After(10 * time.Second):
		}
	}
}

// heal undoes partition for peers.
func (n *Node) heal(peers ...string) {
	n.peersMu.Lock()
	for _, p := range peers {
		delete(n.cut, p)
	}
	n.peersMu.Unlock()
}

// isCut reports whether peer is partitioned away. n.peersMu must be held.
func (n *Node) isCutLocked(peer string) bool { return n.cut[peer] }

func partitionedErr(peer string) error {
	return fmt.Errorf("connect %s: %w: %w", peer, ErrNotConnected, errPartitioned)
}
