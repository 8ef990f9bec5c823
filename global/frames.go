package global

// IsSnapshot reports whether frame is a snapshot frame (for Merge) rather
// than an ops frame (for Handle), so a node can route the registry frames it
// receives without knowing their layout. It does not validate the frame.
// Safe from any goroutine.
func IsSnapshot(frame []byte) bool {
	return len(frame) > 0 && frame[0] == frameSnapshot
}

// SnapshotTo takes the snapshot and passes it to send while holding the
// registry's lock, so that no ops frame broadcast after the snapshot was
// taken can reach the peer before it: the node sends the snapshot as the
// peer's first registry frame this way. send must not call back into the
// registry and must not block (the Host.Broadcast rules). Safe from any
// goroutine.
func (r *Replica) SnapshotTo(send func(frame []byte)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	send(encodeSnapshot(r.own))
}
