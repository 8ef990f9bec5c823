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
			before := fromA.stats.bytesIn.Load()
			within(t, b, func(p *Process) error {
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
				return nil
			})
			// The loop counts a read's bytes once it has handled all of
			// them (OnData), after their deliveries: the last messages can
			// be received before their bytes are counted. Uncompressed, the
			// count reaches what was sent. Compressed, it stays far below:
			// a count read early is smaller still, and an uncompressed link
			// would have counted all but its last read's bytes already.
			sent := uint64(count * len(msg))
			if !tt.compressed {
				eventually(t, "the link counts every message byte", func() bool { return fromA.stats.bytesIn.Load()-before >= sent })
				return
			}
			if wire := fromA.stats.bytesIn.Load() - before; wire >= sent/4 {
				t.Fatalf("%d bytes crossed for %d bytes of messages: not compressed", wire, sent)
			}
		})
	}
}
