package global

// IsSnapshot reports whether frame is a snapshot frame (for Merge) rather
// than an ops frame (for Handle), so a node can route the registry frames it
// receives without knowing their layout. It does not validate the frame.
// Safe from any goroutine.
func IsSnapshot(frame []byte) bool {
	return len(frame) > 0 && frame[0] == frameSnapshot
}
