package mailbox

import (
	"errors"
	"testing"
)

// Decoder.Release is given each PushEncodedOwned buffer once the owner has
// decoded it, or failed to: not before, and never a buffer of
// PushEncoded (copied into the inbox's chunks).
func TestOwnedBuffersAreReleasedAfterDecode(t *testing.T) {
	errBad := errors.New("bad")
	var released [][]byte
	dec := &Decoder{
		Decode: func(b []byte) (any, error) {
			if string(b) == "bad" {
				return nil, errBad
			}
			return string(b), nil
		},
		Dropped: func(error) {},
		Release: func(b []byte) { released = append(released, b) },
	}
	m := New()
	good, bad := []byte("owned"), []byte("bad")
	m.PushEncodedOwned(dec, good)
	m.PushEncodedOwned(dec, bad)
	m.PushEncoded(dec, []byte("copied"))
	if len(released) != 0 {
		t.Fatalf("%d buffers released before they were received", len(released))
	}
	ctx := watchdogCtx(t)
	for _, want := range []string{"owned", "copied"} {
		v, err := m.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v != want {
			t.Fatalf("got %v, want %q", v, want)
		}
	}
	if len(released) != 2 || &released[0][0] != &good[0] || &released[1][0] != &bad[0] {
		t.Fatalf("released %q; want the two owned buffers, in order", released)
	}
}
