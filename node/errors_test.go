package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/meshrt/mesh/internal/handshake"
	"github.com/meshrt/mesh/loop"
)

// A peer error says the node's error once and the root cause, without the
// layers in between, and errors.Is still finds every layer.
func TestPeerErrorTextAndClass(t *testing.T) {
	tests := []struct {
		cause error
		kind  error
		text  string
	}{
		{
			fmt.Errorf("%w: hook: %w", loop.ErrHandshake, fmt.Errorf("%w: the peer refused our proof", handshake.ErrAuth)),
			ErrAuth, "connect b@h:1: node: authentication failed: the peer refused our proof",
		},
		{
			fmt.Errorf("%w: hook: %w", loop.ErrHandshake, fmt.Errorf("%w: peer offers 7-9", handshake.ErrVersion)),
			ErrVersion, "connect b@h:1: node: no common protocol version: peer offers 7-9",
		},
		{
			fmt.Errorf("%w: %w", loop.ErrClosed, errTickTimeout),
			ErrNotConnected, "connect b@h:1: node: not connected: connection closed: peer tick timeout",
		},
	}
	for _, tt := range tests {
		err := newPeerError("connect b@h:1", tt.cause)
		if !errors.Is(err, tt.kind) || !errors.Is(err, tt.cause) {
			t.Errorf("%v: not errors.Is %v and its cause", err, tt.kind)
		}
		if err.Error() != tt.text {
			t.Errorf("text %q, want %q", err.Error(), tt.text)
		}
	}
}
