//go:build !linux

package mailbox

// fdPoolTokens: there are no eventfds.
func fdPoolTokens(*fdPool) int { return 0 }
