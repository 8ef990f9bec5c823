package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/meshrt/mesh/codec"
)

// decodeOne parses b as exactly one frame and decodes it as a control frame.
func decodeOne(t *testing.T, b []byte) Control {
	t.Helper()
	r := NewFrameReader(1<<20, 0)
	f, n, err := r.Next(b)
	if err != nil || n != len(b) {
		t.Fatalf("Next = %d of %d bytes, %v", n, len(b), err)
	}
	v, err := DecodeControl(f, nil)
	if err != nil {
		t.Fatalf("DecodeControl(%v): %v", f.Kind, err)
	}
	return v
}

func TestMembershipFramesRoundTrip(t *testing.T) {
	g := decodeOne(t, (&Goodbye{Reason: "shutdown"}).Append(nil)).(*Goodbye)
	if g.Reason != "shutdown" {
		t.Fatalf("goodbye reason %q", g.Reason)
	}
	long := decodeOne(t, (&Goodbye{Reason: codec.Atom(strings.Repeat("x", 500))}).Append(nil)).(*Goodbye)
	if len(long.Reason) != MaxGoodbyeReason {
		t.Fatalf("a long goodbye reason came back %d bytes long", len(long.Reason))
	}
	gr := decodeOne(t, (&Groups{Payload: []byte{1, 2, 3}}).Append(nil)).(*Groups)
	if !bytes.Equal(gr.Payload, []byte{1, 2, 3}) {
		t.Fatalf("groups payload %v", gr.Payload)
	}
	term, err := codec.AppendTerm(nil, codec.Tuple{codec.Atom("news"), 42})
	if err != nil {
		t.Fatal(err)
	}
	p := decodeOne(t, (&Publish{Group: "room", Term: term}).Append(nil)).(*Publish)
	if p.Group != "room" || !bytes.Equal(p.Term, term) {
		t.Fatalf("publish = %q %v", p.Group, p.Term)
	}
	if v, err := (Message{Term: p.Term}).Decode(nil); err != nil || v.(codec.Tuple)[1] != 42 {
		t.Fatalf("the published term decodes to %v, %v", v, err)
	}
}

func TestPublishWithoutAMessageIsCorrupt(t *testing.T) {
	var x Publish
	b := (&Publish{Group: "room"}).Append(nil)[HeaderSize:]
	if err := x.Decode(b, nil); !errors.Is(err, codec.ErrCorrupt) {
		t.Fatalf("Decode = %v, want ErrCorrupt", err)
	}
	if err := x.Decode([]byte{0xff}, nil); err == nil {
		t.Fatal("a truncated group name decoded")
	}
}
