package node

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshrt/mesh/internal/wire"
)

// WithCompression on both nodes: the link negotiates S2 and compressible
// batches cross it compressed (b receives fewer plaintext bytes than the
// messages hold). Offered by one node only: the link does not compress.
func TestCompressionRunsOnALiveLinkWhenBothOfferIt(t *testing.T) {
	for _, tt := range []struct {
		name       string
		aOn, bOn   bool
		compressed bool
	}{
		{"both offer", true, true, true},
		{"one offers", true, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := startNamed(t, "a", "c", WithCompression(tt.aOn))
			b := startNamed(t, "b", "c", WithCompression(tt.bOn))
			connect(t, a, b)
			var fromA *peer
			eventually(t, "b linked to a", func() bool { fromA = b.peerIfUp(a.Self()); return fromA != nil })
			if got := fromA.features&wire.FeatureS2 != 0; got != tt.compressed {
				t.Fatalf("S2 negotiated: %v, want %v", got, tt.compressed)
			}
			msg := strings.Repeat("compressible ", 2000) // 26 KB, one batch item
			const count = 50
			within(t, b, func(p *Process) error {
				before := fromA.stats.bytesIn.Load()
				for range count {
					if err := a.Send(p.Self(), msg); err != nil {
						return err
					}
				}
				for i := range count {
					m, err := recv(p)
					if err != nil {
						return err
					}
					if m != msg {
						return fmt.Errorf("message %d corrupted", i)
					}
				}
				wire, sent := fromA.stats.bytesIn.Load()-before, uint64(count*len(msg))
				if tt.compressed && wire >= sent/4 {
					return fmt.Errorf("%d bytes crossed for %d bytes of messages: not compressed", wire, sent)
				}
				if !tt.compressed && wire < sent {
					return fmt.Errorf("%d bytes crossed for %d bytes of messages: compressed without both offering", wire, sent)
				}
				return nil
			})
		})
	}
}
