package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
)

func mustMessage(t testing.TB, to, from uint64, v any) []byte {
	t.Helper()
	b, err := AppendMessage(nil, to, from, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type got struct {
	To, From uint64
	V        any
}

// readAll parses a stream and feeds message frames to a reassembler,
// returning messages and control frames in arrival order.
func readAll(t testing.TB, stream []byte, feat Features, r *Reassembler) (msgs []got, ctrl []any) {
	t.Helper()
	fr := NewFrameReader(nil, feat)
	if r == nil {
		r = NewReassembler(0, nil)
	}
	for len(stream) > 0 {
		f, n, err := fr.Next(stream)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		stream = stream[n:]
		switch f.Kind {
		case KindBatch, KindFragment:
			err = r.Feed(f, func(m Message) error {
				v, err := m.Decode(nil)
				msgs = append(msgs, got{m.To, m.From, v})
				return err
			})
		default:
			var c any
			c, err = DecodeControl(f, nil)
			ctrl = append(ctrl, c)
		}
		if err != nil {
			t.Fatalf("%v frame: %v", f.Kind, err)
		}
	}
	return msgs, ctrl
}

func TestBatcherMergesMessagesAndPassesControlFrames(t *testing.T) {
	exit, _ := (&Exit{From: PID{Node: "a", ID: 1}, To: PID{Node: "b", ID: 2}, Reason: Atom("kill")}).Append(nil)
	items := [][]byte{
		mustMessage(t, 1, 2, "one"), mustMessage(t, 1, 2, 2), exit, mustMessage(t, 3, 4, Tuple{}),
	}
	b := NewBatcher(BatcherOptions{})
	out := b.Drain(nil, items)
	if b.Frames != 3 || b.Messages != 3 {
		t.Fatalf("frames %d messages %d, want 3 frames (batch, exit, batch) and 3 messages", b.Frames, b.Messages)
	}
	msgs, ctrl := readAll(t, out, 0, nil)
	want := []got{{1, 2, "one"}, {1, 2, 2}, {3, 4, Tuple{}}}
	if !reflect.DeepEqual(msgs, want) {
		t.Fatalf("messages %#v, want %#v", msgs, want)
	}
	if len(ctrl) != 1 || !reflect.DeepEqual(ctrl[0], &Exit{From: PID{Node: "a", ID: 1}, To: PID{Node: "b", ID: 2}, Reason: Atom("kill")}) {
		t.Fatalf("control %#v", ctrl)
	}
}

func TestBatcherSplitsAtMaxBatch(t *testing.T) {
	var items [][]byte
	for i := range 100 {
		items = append(items, mustMessage(t, uint64(i), 0, strings.Repeat("x", 100)))
	}
	b := NewBatcher(BatcherOptions{MaxBatch: 1000})
	out := b.Drain(nil, items)
	if b.Frames < 10 {
		t.Fatalf("%d frames for 10 KB with MaxBatch 1000", b.Frames)
	}
	msgs, _ := readAll(t, out, 0, nil)
	for i, m := range msgs {
		if m.To != uint64(i) {
			t.Fatalf("message %d has To %d: order lost", i, m.To)
		}
	}
}

func TestBatcherCompressesOnlyWhenNegotiated(t *testing.T) {
	var items [][]byte
	for i := range 200 {
		items = append(items, mustMessage(t, 7, 8, Tuple{Atom("event"), i, "a fairly repetitive payload string"}))
	}
	for _, c := range []struct {
		name     string
		feat     Features
		wantComp bool
	}{{"no S2", 0, false}, {"S2 negotiated", Negotiate(SupportedFeatures, FeatureS2), true}} {
		t.Run(c.name, func(t *testing.T) {
			b := NewBatcher(BatcherOptions{Features: c.feat})
			out := b.Drain(nil, items)
			if (b.Compressed > 0) != c.wantComp {
				t.Fatalf("compressed %d frames", b.Compressed)
			}
			msgs, _ := readAll(t, out, c.feat, nil)
			if len(msgs) != 200 || msgs[199].V.(Tuple)[1] != 199 {
				t.Fatalf("got %d messages", len(msgs))
			}
		})
	}
}

func TestFrameReaderNeedsMoreOnEveryPrefix(t *testing.T) {
	item := mustMessage(t, 1, 2, "hello")
	r := NewFrameReader(nil, 0)
	for i := range len(item) {
		if _, n, err := r.Next(item[:i]); err != ErrNeedMore || n != 0 {
			t.Fatalf("prefix %d: n=%d err=%v, want ErrNeedMore", i, n, err)
		}
	}
	if _, n, err := r.Next(item); err != nil || n != len(item) {
		t.Fatalf("whole: n=%d err=%v", n, err)
	}
}

func TestFrameReaderRefusesBadHeaders(t *testing.T) {
	good := mustMessage(t, 1, 2, "hello")
	mod := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	bomb := func() []byte {
		big := make([]byte, 8<<20)
		c := s2.Encode(nil, big)
		return append(AppendHeader(nil, KindBatch, FlagS2, len(c)), c...)
	}()
	cases := []struct {
		name string
		b    []byte
		feat Features
		want error
	}{
		{"wrong version", mod(func(b []byte) { b[0] = 9 }), 0, ErrVersion},
		{"wrong version seen in a short prefix", []byte{9}, 0, ErrVersion},
		{"unknown kind", mod(func(b []byte) { b[1] = 200 }), 0, ErrCorrupt},
		{"unknown flag", mod(func(b []byte) { b[2] = 0x80 }), 0, ErrCorrupt},
		{"reserved byte set", mod(func(b []byte) { b[3] = 1 }), 0, ErrCorrupt},
		{"length over MaxFrame", mod(func(b []byte) { binary.BigEndian.PutUint32(b[4:], 1<<31) }), 0, ErrLimit},
		{"compressed without S2 negotiated", mod(func(b []byte) { b[2] = FlagS2 }), 0, ErrCorrupt},
		{"corrupt S2 block", mod(func(b []byte) { b[2] = FlagS2 }), FeatureS2, ErrCorrupt},
		{"decompression bomb", bomb, FeatureS2, ErrLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := NewFrameReader(nil, c.feat).Next(c.b); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestMessageIterRefusesCorruptRecords(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
	}{
		{"term length past the end", []byte{1, 2, 9, tagNil}},
		{"empty term", []byte{1, 2, 0}},
		{"cut inside the header", []byte{0x81}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			it := Frame{Kind: KindBatch, Payload: c.payload}.Messages()
			for it.Next() {
			}
			if it.Err() == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestControlFramesRoundTrip(t *testing.T) {
	a := PID{Node: "a@h:1", Incarnation: 5, ID: 9}
	b := PID{Node: "b@h:2", Incarnation: 6, ID: 10}
	ref := Ref{Node: "a@h:1", Incarnation: 5, ID: 77}
	app := func(f func([]byte) ([]byte, error)) []byte {
		out, err := f(nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cases := []struct {
		name  string
		frame []byte
		want  any
	}{
		{"spawn request", app((&SpawnRequest{Req: 1, From: a, Actor: "worker", Args: []any{1, "x"}, Link: true}).Append),
			&SpawnRequest{Req: 1, From: a, Actor: "worker", Args: []any{1, "x"}, Link: true}},
		{"spawn reply", app((&SpawnReply{Req: 1, PID: b}).Append), &SpawnReply{Req: 1, PID: b}},
		{"spawn reply error", app((&SpawnReply{Req: 2, Code: SpawnUnknownActor, Err: "no worker"}).Append),
			&SpawnReply{Req: 2, Code: SpawnUnknownActor, Err: "no worker"}},
		{"link", app(func(d []byte) ([]byte, error) { return (&Link{a, b}).Append(d, KindLink) }), &Link{a, b}},
		{"unlink", app(func(d []byte) ([]byte, error) { return (&Link{a, b}).Append(d, KindUnlink) }), &Link{a, b}},
		{"exit", app((&Exit{a, b, Atom("normal"), false}).Append), &Exit{a, b, Atom("normal"), false}},
		{"link exit", app((&Exit{a, b, Atom("noconnection"), true}).Append), &Exit{a, b, Atom("noconnection"), true}},
		{"monitor", app(func(d []byte) ([]byte, error) { return (&Monitor{a, b, ref}).Append(d, KindMonitor) }), &Monitor{a, b, ref}},
		{"demonitor", app(func(d []byte) ([]byte, error) { return (&Monitor{a, b, ref}).Append(d, KindDemonitor) }), &Monitor{a, b, ref}},
		{"down", app((&Down{ref, a, b, Atom("noconnection")}).Append), &Down{ref, a, b, Atom("noconnection")}},
		{"registry", app((&Registry{[]byte{1, 2, 3}}).Append), &Registry{[]byte{1, 2, 3}}},
		{"tick", app(func(d []byte) ([]byte, error) { return (&Tick{3, -42}).Append(d, KindTick) }), &Tick{3, -42}},
		{"tock", app(func(d []byte) ([]byte, error) { return (&Tick{3, 1 << 62}).Append(d, KindTock) }), &Tick{3, 1 << 62}},
		{"nodes", app((&Nodes{[]string{"a@h:1", "b@h:2"}}).Append), &Nodes{[]string{"a@h:1", "b@h:2"}}},
		{"hello", app((&Hello{Version: 1, Node: "a@h:1", Incarnation: 5, Features: SupportedFeatures, Nonce: [32]byte{1}}).Append),
			&Hello{Version: 1, Node: "a@h:1", Incarnation: 5, Features: SupportedFeatures, Nonce: [32]byte{1}}},
		{"proof", app((&Proof{[32]byte{9, 9}}).Append), &Proof{[32]byte{9, 9}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, n, err := NewFrameReader(nil, 0).Next(c.frame)
			if err != nil || n != len(c.frame) {
				t.Fatalf("Next: n=%d err=%v", n, err)
			}
			v, err := DecodeControl(f, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v, c.want) {
				t.Fatalf("got %#v, want %#v", v, c.want)
			}
			// Every strict prefix of the payload is refused, never a panic.
			for i := range len(f.Payload) {
				if _, err := DecodeControl(Frame{Kind: f.Kind, Payload: f.Payload[:i]}, nil); err == nil && c.name != "registry" {
					t.Fatalf("payload prefix %d accepted", i)
				}
			}
		})
	}
}

func TestControlAppendRefusesUnencodableReason(t *testing.T) {
	dst := []byte("x")
	out, err := (&Exit{Reason: make(chan int)}).Append(dst)
	if !errors.Is(err, ErrUnencodable) || string(out) != "x" {
		t.Fatalf("out %q err %v", out, err)
	}
}

// fragmentItems splits a message into fragment items of size bytes.
func fragmentItems(t testing.TB, id uint64, item []byte, size int) [][]byte {
	t.Helper()
	var f Fragmenter
	if err := f.Reset(id, item, size); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for f.More() {
		out = append(out, f.Next(nil))
	}
	return out
}

func TestLargeMessageInterleavesAndKeepsPairOrder(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	frags := fragmentItems(t, 1, mustMessage(t, 10, 20, big), 64<<10)
	if len(frags) < 16 {
		t.Fatalf("%d fragments", len(frags))
	}
	// Wire order: first fragment of big (10<-20), then small messages of the
	// same pair and of another pair, then the remaining fragments.
	var items [][]byte
	items = append(items, frags[0])
	items = append(items, mustMessage(t, 10, 20, "after-big-1"), mustMessage(t, 11, 21, "other-pair"))
	for i, fr := range frags[1:] {
		items = append(items, fr)
		if i == 3 {
			items = append(items, mustMessage(t, 10, 20, "after-big-2"), mustMessage(t, 11, 21, "other-pair-2"))
		}
	}
	items = append(items, mustMessage(t, 10, 20, "after-all"))
	out := NewBatcher(BatcherOptions{Features: FeatureS2}).Drain(nil, items)
	r := NewReassembler(4<<20, nil)
	msgs, _ := readAll(t, out, FeatureS2, r)
	var order []any
	for _, m := range msgs {
		if b, ok := m.V.([]byte); ok {
			if !bytes.Equal(b, big) {
				t.Fatal("big message corrupted")
			}
			order = append(order, "BIG")
			continue
		}
		order = append(order, m.V)
	}
	want := []any{"other-pair", "other-pair-2", "BIG", "after-big-1", "after-big-2", "after-all"}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("delivery order %v, want %v", order, want)
	}
	if r.Used() != 0 || r.Pending() != 0 {
		t.Fatalf("reassembler keeps %d bytes, %d pending", r.Used(), r.Pending())
	}
}

func TestReassemblerHoldsOnlyThePairBehindALargeMessage(t *testing.T) {
	frags := fragmentItems(t, 1, mustMessage(t, 10, 20, make([]byte, 1000)), 100)
	r := NewReassembler(0, nil)
	fr := NewFrameReader(nil, 0)
	feed := func(item []byte) []any {
		f, _, err := fr.Next(item)
		if err != nil {
			t.Fatal(err)
		}
		var out []any
		if err := r.Feed(f, func(m Message) error { v, err := m.Decode(nil); out = append(out, v); return err }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	feed(frags[0])
	if !r.Holding(20, 10) || r.Holding(20, 11) || r.Holding(10, 20) {
		t.Fatal("Holding wrong after the first fragment")
	}
	if got := feed(mustMessage(t, 11, 20, "other target")); len(got) != 1 {
		t.Fatalf("message of another pair was held: %v", got)
	}
	if got := feed(mustMessage(t, 10, 20, "follower")); len(got) != 0 {
		t.Fatalf("follower delivered before the large message: %v", got)
	}
	var last []any
	for _, f := range frags[1:] {
		last = feed(f)
	}
	if len(last) != 2 || last[1] != "follower" || r.Holding(20, 10) || r.Used() != 0 {
		t.Fatalf("release: %v, holding %v, used %d", last, r.Holding(20, 10), r.Used())
	}
}

func TestReassemblerEnforcesItsBudget(t *testing.T) {
	big := mustMessage(t, 1, 2, make([]byte, 100<<10))
	frags := fragmentItems(t, 1, big, 16<<10)
	cases := []struct {
		name   string
		budget int
		items  [][]byte
	}{
		{"announced size over budget", 50 << 10, frags[:1]},
		{"held followers over budget", (100 << 10) + 2000,
			[][]byte{frags[0], mustMessage(t, 1, 2, make([]byte, 1000)), mustMessage(t, 1, 2, make([]byte, 1000))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReassembler(c.budget, nil)
			var err error
			fr := NewFrameReader(nil, 0)
			for _, it := range c.items {
				f, _, _ := fr.Next(it)
				if err = r.Feed(f, func(Message) error { return nil }); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v, want ErrLimit", err)
			}
		})
	}
}

func TestReassemblerRefusesInconsistentFragments(t *testing.T) {
	frags := fragmentItems(t, 5, mustMessage(t, 1, 2, make([]byte, 300)), 100)
	other := fragmentItems(t, 5, mustMessage(t, 1, 3, make([]byte, 300)), 100)
	cases := []struct {
		name  string
		items [][]byte
	}{
		{"continuation without a first fragment", frags[1:2]},
		{"fragment skipped", [][]byte{frags[0], frags[2]}},
		{"first fragment twice", [][]byte{frags[0], frags[0]}},
		{"id reused by another pair", [][]byte{frags[0], other[1]}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReassembler(0, nil)
			var err error
			for _, it := range c.items {
				f, _, _ := NewFrameReader(nil, 0).Next(it)
				if err = r.Feed(f, func(Message) error { return nil }); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestDrainAllocatesNothingInSteadyState(t *testing.T) {
	var items [][]byte
	for i := range 300 {
		items = append(items, mustMessage(t, uint64(i%7), 1, fmt.Sprintf("message number %d with some text", i)))
	}
	exit, _ := (&Exit{Reason: Atom("normal")}).Append(nil)
	items = append(items, exit)
	for _, feat := range []Features{0, FeatureS2} {
		b := NewBatcher(BatcherOptions{Features: feat, CompressAbove: 1024})
		dst := b.Drain(nil, items)
		if n := testing.AllocsPerRun(50, func() { dst = b.Drain(dst[:0], items) }); n != 0 {
			t.Errorf("features %v: Drain %v allocs/op, want 0", feat, n)
		}
	}
}
