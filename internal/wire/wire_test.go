package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"github.com/meshrt/mesh/codec"
)

func mustMessage(t testing.TB, to, from uint64, v any) []byte {
	t.Helper()
	b, err := AppendMessage(nil, to, from, v, 0)
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
	fr := NewFrameReader(0, feat)
	if r == nil {
		r = NewReassembler(ReassemblyLimits{})
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
	exit := (&Exit{From: codec.PID{Node: "a", ID: 1}, To: codec.PID{Node: "b", ID: 2}, Reason: codec.Atom("kill")}).Append(nil)
	items := [][]byte{
		mustMessage(t, 1, 2, "one"), mustMessage(t, 1, 2, 2), exit, mustMessage(t, 3, 4, codec.Tuple{}),
	}
	b := NewBatcher(BatcherOptions{})
	out := b.Drain(nil, items)
	if b.Frames != 3 || b.Messages != 3 {
		t.Fatalf("frames %d messages %d, want 3 frames (batch, exit, batch) and 3 messages", b.Frames, b.Messages)
	}
	msgs, ctrl := readAll(t, out, 0, nil)
	want := []got{{1, 2, "one"}, {1, 2, 2}, {3, 4, codec.Tuple{}}}
	if !reflect.DeepEqual(msgs, want) {
		t.Fatalf("messages %#v, want %#v", msgs, want)
	}
	if len(ctrl) != 1 || !reflect.DeepEqual(ctrl[0], &Exit{From: codec.PID{Node: "a", ID: 1}, To: codec.PID{Node: "b", ID: 2}, Reason: codec.Atom("kill")}) {
		t.Fatalf("control %#v", ctrl)
	}
}

// TestBatcherDrainsOneItemAsTheLoopDoes checks Drain's shortcut for a
// single item against its loop: the same items with an empty one after
// (which the loop passes through as a frame of nothing) must give the same
// bytes and counters, but for that one frame.
func TestBatcherDrainsOneItemAsTheLoopDoes(t *testing.T) {
	exit := (&Exit{From: codec.PID{Node: "a", ID: 1}, To: codec.PID{Node: "b", ID: 2}, Reason: codec.Atom("kill")}).Append(nil)
	small := mustMessage(t, 1, 2, codec.Tuple{codec.PID{Node: "n@h", ID: 3}, strings.Repeat("x", 64)})
	large := mustMessage(t, 1, 2, strings.Repeat("a fairly repetitive payload ", 200))
	flagged := bytes.Clone(small)
	flagged[2] = FlagS2
	reserved := bytes.Clone(small)
	reserved[3] = 1
	short := bytes.Clone(small)
	binary.BigEndian.PutUint32(short[4:], uint32(len(short)-HeaderSize-1))
	for _, c := range []struct {
		name string
		feat Features
		it   []byte
	}{
		{"small", 0, small}, {"small, S2", SupportedFeatures & FeatureS2, small},
		{"large", 0, large}, {"large, S2", SupportedFeatures & FeatureS2, large},
		{"control", 0, exit}, {"flagged", 0, flagged}, {"reserved", 0, reserved}, {"length off", 0, short}, {"empty", 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			one, ref := NewBatcher(BatcherOptions{Features: c.feat}), NewBatcher(BatcherOptions{Features: c.feat})
			got := one.Drain([]byte("head"), [][]byte{c.it})
			want := ref.Drain([]byte("head"), [][]byte{c.it, nil})
			if !bytes.Equal(got, want) {
				t.Fatalf("Drain of one item:\n%x\nthe loop's:\n%x", got, want)
			}
			ref.Frames--
			counters := func(b *Batcher) [6]uint64 {
				return [6]uint64{b.Frames, b.Messages, b.Compressed, b.BytesIn, b.BytesOut, b.MessageBytes}
			}
			if counters(one) != counters(ref) {
				t.Fatalf("counters %v, the loop's %v", counters(one), counters(ref))
			}
		})
	}
	b := NewBatcher(BatcherOptions{Features: SupportedFeatures & FeatureS2})
	if b.Drain(nil, [][]byte{large}); b.Compressed != 1 {
		t.Fatalf("a large message drained alone was not compressed")
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
		items = append(items, mustMessage(t, 7, 8, codec.Tuple{codec.Atom("event"), i, "a fairly repetitive payload string"}))
	}
	for _, c := range []struct {
		name     string
		feat     Features
		wantComp bool
	}{{"no S2", 0, false}, {"S2 negotiated", SupportedFeatures & FeatureS2, true}} {
		t.Run(c.name, func(t *testing.T) {
			b := NewBatcher(BatcherOptions{Features: c.feat})
			out := b.Drain(nil, items)
			if (b.Compressed > 0) != c.wantComp {
				t.Fatalf("compressed %d frames", b.Compressed)
			}
			msgs, _ := readAll(t, out, c.feat, nil)
			if len(msgs) != 200 || msgs[199].V.(codec.Tuple)[1] != 199 {
				t.Fatalf("got %d messages", len(msgs))
			}
		})
	}
}

func TestFrameReaderNeedsMoreOnEveryPrefix(t *testing.T) {
	item := mustMessage(t, 1, 2, "hello")
	r := NewFrameReader(0, 0)
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
		{"unknown kind", mod(func(b []byte) { b[1] = 200 }), 0, codec.ErrCorrupt},
		{"unknown flag", mod(func(b []byte) { b[2] = 0x80 }), 0, codec.ErrCorrupt},
		{"reserved byte set", mod(func(b []byte) { b[3] = 1 }), 0, codec.ErrCorrupt},
		{"length over MaxFrame", mod(func(b []byte) { binary.BigEndian.PutUint32(b[4:], 1<<31) }), 0, codec.ErrLimit},
		{"compressed without S2 negotiated", mod(func(b []byte) { b[2] = FlagS2 }), 0, codec.ErrCorrupt},
		{"corrupt S2 block", mod(func(b []byte) { b[2] = FlagS2 }), FeatureS2, codec.ErrCorrupt},
		{"decompression bomb", bomb, FeatureS2, codec.ErrLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := NewFrameReader(0, c.feat).Next(c.b); !errors.Is(err, c.want) {
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
		{"term length past the end", []byte{1, 2, 9, 0x00}},
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

func mustTerm(t testing.TB, v any) []byte {
	t.Helper()
	b, err := codec.AppendTerm(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestControlFramesRoundTrip(t *testing.T) {
	a := codec.PID{Node: "a@h:1", Incarnation: 5, ID: 9}
	b := codec.PID{Node: "b@h:2", Incarnation: 6, ID: 10}
	ref := codec.Ref{Node: "a@h:1", Incarnation: 5, ID: 77}
	args := mustTerm(t, []any{1, "x"})
	cases := []struct {
		name string
		x    Control
	}{
		{"spawn request", &SpawnRequest{Req: 1, From: a, Actor: "worker", Args: args, Link: true}},
		{"spawn request, nil args", &SpawnRequest{Req: 1, From: a, Actor: "worker", Args: mustTerm(t, []any(nil))}},
		{"spawn reply", &SpawnReply{Req: 1, PID: b}},
		{"spawn reply error", &SpawnReply{Req: 2, Code: SpawnUnknownActor, Err: "no worker"}},
		{"link", &Link{a, b}},
		{"unlink", &Unlink{a, b}},
		{"exit", &Exit{a, b, codec.Atom("normal"), false}},
		{"link exit", &Exit{a, b, codec.Atom("noconnection"), true}},
		{"monitor", &Monitor{a, b, ref}},
		{"demonitor", &Demonitor{a, b, ref}},
		{"down", &Down{ref, a, b, codec.Atom("noconnection")}},
		{"registry", &Registry{[]byte{1, 2, 3}}},
		{"tick", &Tick{3, -42}},
		{"tock", &Tock{3, 1 << 62}},
		{"nodes", &Nodes{[]string{"a@h:1", "b@h:2"}}},
		{"sync", &Sync{1 << 40}},
		{"ack", &Ack{300}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frame := c.x.Append([]byte("prefix"))[len("prefix"):]
			f, n, err := NewFrameReader(0, 0).Next(frame)
			if err != nil || n != len(frame) {
				t.Fatalf("Next: n=%d err=%v", n, err)
			}
			if f.Kind != c.x.Kind() {
				t.Fatalf("frame kind %v, type says %v", f.Kind, c.x.Kind())
			}
			v, err := DecodeControl(f, nil)
			if err != nil {
				t.Fatal(err)
			}
			if sr, ok := v.(*SpawnRequest); ok {
				want, _ := codec.Unmarshal(sr.Args)
				if !reflect.DeepEqual(sr.Arguments(), want) {
					t.Fatalf("arguments %#v, want %#v", sr.Arguments(), want)
				}
				sr.argv = nil // compared through Args below
			}
			if !reflect.DeepEqual(v, c.x) {
				t.Fatalf("got %#v, want %#v", v, c.x)
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

func TestSpawnRequestRefusesBadArguments(t *testing.T) {
	for _, bad := range [][]byte{mustTerm(t, "not a list"), append(mustTerm(t, []any{}), 0), {0x14, 5}, nil} {
		f, _, err := NewFrameReader(0, 0).Next((&SpawnRequest{Actor: "w", Args: bad}).Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeControl(f, nil); !errors.Is(err, codec.ErrCorrupt) && !errors.Is(err, codec.ErrTruncated) {
			t.Fatalf("args %x: err = %v, want corrupt or truncated", bad, err)
		}
	}
}

// DecodeName makes neither the name nor a copy of the arguments: a request
// with no arguments from a node already seen (its name interned) decodes
// with no allocation.
func TestSpawnRequestDecodeNameAllocatesNothing(t *testing.T) {
	from := codec.PID{Node: "a@h:1", Incarnation: 5, ID: 9}
	payload := (&SpawnRequest{Req: 1, From: from, Actor: "worker", Args: mustTerm(t, []any(nil)), Link: true}).Append(nil)[HeaderSize:]
	var x SpawnRequest
	var name []byte
	var err error
	if n := testing.AllocsPerRun(100, func() { name, err = x.DecodeName(payload, nil) }); n != 0 {
		t.Fatalf("DecodeName: %v allocations, want 0", n)
	}
	if err != nil || string(name) != "worker" || x.Req != 1 || x.From != from || !x.Link || x.Arguments() != nil {
		t.Fatalf("DecodeName: %q, %v; %+v", name, err, x)
	}
}

// Decoded values outlive the payload: the loop reuses its buffer for the
// next input. Only the name DecodeName returns aliases it, as documented.
func TestSpawnRequestDecodedValuesDoNotAliasThePayload(t *testing.T) {
	args := []any{"text", []byte{1, 2, 3}}
	payload := (&SpawnRequest{Req: 7, Actor: "worker", Args: mustTerm(t, args)}).Append(nil)[HeaderSize:]

	var whole SpawnRequest
	if err := whole.Decode(payload, nil); err != nil {
		t.Fatal(err)
	}
	named := SpawnRequest{Actor: "stale", Args: []byte{9}} // a reused value
	name, err := named.DecodeName(payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	if named.Actor != "" || named.Args != nil {
		t.Fatalf("DecodeName left Actor %q, Args %v", named.Actor, named.Args)
	}
	wantArgs := append([]byte(nil), whole.Args...)

	for i := range payload {
		payload[i] = 0xff // the buffer's next input
	}
	if whole.Actor != "worker" || !bytes.Equal(whole.Args, wantArgs) {
		t.Fatalf("Decode's values changed with the payload: %q, %x", whole.Actor, whole.Args)
	}
	for _, got := range [][]any{whole.Arguments(), named.Arguments()} {
		if !reflect.DeepEqual(got, args) {
			t.Fatalf("decoded arguments changed with the payload: %#v", got)
		}
	}
	if string(name) == "worker" {
		t.Fatal("DecodeName's name did not alias the payload: then it allocated, and its doc is wrong")
	}
	if cap(name) != len(name) {
		t.Fatalf("DecodeName's name has capacity %d past its length %d: an append would write the payload", cap(name), len(name))
	}
}

func TestControlAppendSendsAnUnencodableReasonAsText(t *testing.T) {
	huge := strings.Repeat("r", 2*MaxReason)
	cases := []struct {
		name   string
		reason any
		want   any
	}{
		{"channel", make(chan int), "0x"},
		{"error", errors.New("disk full"), codec.Error("disk full")},
		{"too large", []any{huge}, "[" + huge[:MaxReason-1]},
		{"text at the bound", huge[:MaxReason], huge[:MaxReason]},
		{"encodable", codec.Tuple{codec.Atom("shutdown"), 1}, codec.Tuple{codec.Atom("shutdown"), 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, x := range []Control{&Exit{Reason: c.reason}, &Down{Reason: c.reason}} {
				f, _, err := NewFrameReader(0, 0).Next(x.Append(nil))
				if err != nil {
					t.Fatal(err)
				}
				v, err := DecodeControl(f, nil)
				if err != nil {
					t.Fatal(err)
				}
				var got any
				switch v := v.(type) {
				case *Exit:
					got = v.Reason
				case *Down:
					got = v.Reason
				}
				if s, ok := got.(string); ok && len(s) > MaxReason {
					t.Fatalf("reason of %d bytes, over MaxReason", len(s))
				}
				if ws, ok := c.want.(string); ok {
					if s, _ := got.(string); !strings.HasPrefix(s, ws) {
						t.Fatalf("reason %.40q, want text starting %.40q", got, ws)
					}
					continue
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Fatalf("reason %#v, want %#v", got, c.want)
				}
			}
		})
	}
}

func TestControlFramesOfTheRetiredHandshakeKindsAreCorrupt(t *testing.T) {
	for _, k := range []Kind{15, 16} {
		b := AppendHeader(nil, k, 0, 0)
		if _, _, err := NewFrameReader(0, 0).Next(b); !errors.Is(err, codec.ErrCorrupt) {
			t.Fatalf("kind %d: err = %v, want ErrCorrupt", k, err)
		}
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
	r := NewReassembler(ReassemblyLimits{Budget: 4 << 20})
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
	r := NewReassembler(ReassemblyLimits{})
	fr := NewFrameReader(0, 0)
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

// firstFragment is the first fragment of a message of total term bytes,
// carrying chunk bytes of it: what a hostile peer sends to open a message
// it never finishes.
func firstFragment(id, to, from uint64, total, chunk int) []byte {
	dst, at := beginFrame(nil, KindFragment)
	for _, x := range []uint64{id, to, from, uint64(total), 0} {
		dst = appendUvarint(dst, x)
	}
	dst = append(dst, make([]byte, chunk)...)
	return endFrame(dst, at)
}

// feedAll feeds items until the first error.
func feedAll(t testing.TB, r *Reassembler, items ...[]byte) error {
	t.Helper()
	fr := NewFrameReader(0, 0)
	for _, it := range items {
		f, _, err := fr.Next(it)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Feed(f, func(Message) error { return nil }); err != nil {
			return err
		}
	}
	return nil
}

func TestReassemblerEnforcesItsLimits(t *testing.T) {
	big := mustMessage(t, 1, 2, make([]byte, 100<<10))
	frags := fragmentItems(t, 1, big, 16<<10)
	small := mustMessage(t, 1, 2, make([]byte, 1000))
	opens := func(n int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, firstFragment(uint64(i+1), 1, uint64(i), 1<<20, 1))
		}
		return out
	}
	cases := []struct {
		name  string
		lim   ReassemblyLimits
		items [][]byte
		limit string
	}{
		{"received bytes over budget", ReassemblyLimits{Budget: 50 << 10}, frags, "reassembly_budget"},
		{"held followers over budget", ReassemblyLimits{Budget: 2*entryCost + 16<<10 + 1500},
			[][]byte{frags[0], small, small}, "reassembly_budget"},
		{"announced size over MaxMessage", ReassemblyLimits{MaxMessage: 64 << 10}, frags[:1], "message_size"},
		{"too many unfinished messages", ReassemblyLimits{MaxPending: 10}, opens(11), "fragments_pending"},
		{"bookkeeping of unfinished messages charged", ReassemblyLimits{Budget: 100 * entryCost}, opens(100), "reassembly_budget"},
		{"too many held records", ReassemblyLimits{MaxHeld: 3}, [][]byte{frags[0], small, small, small, small}, "records_held"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReassembler(c.lim)
			err := feedAll(t, r, c.items...)
			var le *LimitError
			if !errors.Is(err, codec.ErrLimit) || !errors.As(err, &le) || le.Limit != c.limit {
				t.Fatalf("err = %v, want a %s LimitError", err, c.limit)
			}
			if r.Used() > r.lim.Budget {
				t.Fatalf("used %d over the budget %d", r.Used(), r.lim.Budget)
			}
		})
	}
}

// The regression of "34 wire bytes make a node allocate 128 MiB": a first
// fragment announcing a huge message costs what arrived, not what was
// announced.
func TestReassemblerGrowsWithTheBytesThatArrive(t *testing.T) {
	r := NewReassembler(ReassemblyLimits{})
	open := firstFragment(1, 1, 2, codec.DefaultMaxMessage, 1)
	if len(open) > 34 {
		t.Fatalf("the attack frame is %d bytes", len(open))
	}
	if err := feedAll(t, r, open); err != nil {
		t.Fatal(err)
	}
	if r.Used() > 2*entryCost {
		t.Fatalf("one byte of a 128 MiB message charged %d bytes", r.Used())
	}
	// A legitimate large message still arrives whole, and its buffer never
	// grows past its size rounded up to the pools' 64 KiB (buffers.go).
	item := mustMessage(t, 3, 4, bytes.Repeat([]byte("0123456789"), 100_000))
	var got []byte
	fr := NewFrameReader(0, 0)
	for _, it := range fragmentItems(t, 2, item, 7000) {
		f, _, _ := fr.Next(it)
		if err := r.Feed(f, func(m Message) error { got = bytes.Clone(m.Term); return nil }); err != nil {
			t.Fatal(err)
		}
		if r.Used() > 2*entryCost+1_000_010+bufUnit {
			t.Fatalf("charged %d bytes for a 1 MB message", r.Used())
		}
	}
	f, _, _ := fr.Next(item)
	if want := f.Payload[len(f.Payload)-len(got):]; !bytes.Equal(got, want) {
		t.Fatal("large message corrupted")
	}
}

// A message of a few fragments (1 MiB in the node's 64 KiB fragments) is
// reassembled in one buffer of its size, taken at its first fragment: no
// growth, no copy between buffers. A first fragment that is less than a
// wholeRatio-th of what it announces still takes no more than itself.
func TestReassemblerTakesAMessageOfAFewFragmentsInOneBuffer(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	item := mustMessage(t, 3, 4, payload)
	items := fragmentItems(t, 1, item, DefaultFragmentSize-MaxFragmentOverhead)
	if len(items) != 17 {
		t.Fatalf("%d fragments, the test wants 17", len(items))
	}
	r := NewReassembler(ReassemblyLimits{})
	fr := NewFrameReader(0, 0)
	var got Message
	var charged int
	for i, it := range items {
		f, _, err := fr.Next(it)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Feed(f, func(m Message) error { got = m; return nil }); err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 0:
			charged = r.Used()
		case i < len(items)-1 && r.Used() != charged:
			t.Fatalf("fragment %d: charged %d bytes, %d after the first", i, r.Used(), charged)
		}
	}
	if want := entryCost + bufferCap(len(got.Term)); charged != want {
		t.Fatalf("the first fragment charged %d bytes, want %d (the whole message's buffer)", charged, want)
	}
	if cap(got.Term) != bufferCap(len(got.Term)) {
		t.Fatalf("delivered in a buffer of %d bytes for a term of %d", cap(got.Term), len(got.Term))
	}
	v, err := got.Decode(nil)
	if err != nil || !bytes.Equal(v.([]byte), payload) {
		t.Fatalf("delivered %d bytes, err %v", len(got.Term), err)
	}
	if r.Used() != 0 {
		t.Fatalf("%d bytes still charged", r.Used())
	}

	const chunk = 10_000
	if err := feedAll(t, r, firstFragment(2, 1, 2, wholeRatio*chunk, chunk)); err != nil {
		t.Fatal(err)
	}
	if r.Used() != entryCost+chunk {
		t.Fatalf("a 32nd of a message charged %d bytes, want %d", r.Used(), entryCost+chunk)
	}
}

// A message whose whole buffer the budget cannot take at its first
// fragment grows with its fragments instead, and takes the room that an
// earlier message frees when it ends.
func TestReassemblerGrowsWhenTheBudgetCannotTakeTheWholeMessageYet(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	size := DefaultFragmentSize - MaxFragmentOverhead
	a := fragmentItems(t, 1, mustMessage(t, 3, 4, payload), size)
	b := fragmentItems(t, 2, mustMessage(t, 5, 6, payload), size)
	r := NewReassembler(ReassemblyLimits{Budget: 3 << 19}) // 1.5 MiB: one whole message, not two
	fr := NewFrameReader(0, 0)
	delivered := 0
	feed := func(it []byte) {
		t.Helper()
		f, _, err := fr.Next(it)
		if err != nil {
			t.Fatal(err)
		}
		err = r.Feed(f, func(m Message) error {
			v, err := m.Decode(nil)
			if err != nil || !bytes.Equal(v.([]byte), payload) {
				t.Fatalf("delivered %d bytes, err %v", len(m.Term), err)
			}
			delivered++
			return nil
		})
		if err != nil {
			t.Fatalf("message %d: %v", delivered+1, err)
		}
	}
	feed(a[0])
	feed(b[0])
	for _, it := range a[1:] {
		feed(it)
	}
	for _, it := range b[1:] {
		feed(it)
	}
	if delivered != 2 || r.Used() != 0 {
		t.Fatalf("%d messages delivered, %d bytes still charged", delivered, r.Used())
	}
}

// TestReassemblerChargesItsBookkeeping is the regression of "10 M
// unfinished 1-byte fragmented messages took 1 GiB": with the count limit
// out of the way, the heap a hostile peer can grow is bounded by the budget,
// because each entry is charged at least what it costs (entryCost).
func TestReassemblerChargesItsBookkeeping(t *testing.T) {
	const budget = 8 << 20
	r := NewReassembler(ReassemblyLimits{Budget: budget, MaxPending: 1 << 30, MaxHeld: 1 << 30})
	fr := NewFrameReader(0, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 0
	for ; ; n++ {
		// Distinct ids and pairs: each opens an entry in both maps.
		buf := firstFragment(uint64(n+1), uint64(n), uint64(n), 2, 1)
		f, _, err := fr.Next(buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Feed(f, func(Message) error { return nil }); err != nil {
			if !errors.Is(err, codec.ErrLimit) {
				t.Fatal(err)
			}
			break
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d unfinished messages, heap +%d bytes (%.0f a message), budget %d", n, grew, float64(grew)/float64(n), budget)
	if grew > budget {
		t.Fatalf("heap grew %d bytes for a budget of %d: entries cost more than entryCost", grew, budget)
	}
	runtime.KeepAlive(r)
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
			r := NewReassembler(ReassemblyLimits{})
			var err error
			for _, it := range c.items {
				f, _, _ := NewFrameReader(0, 0).Next(it)
				if err = r.Feed(f, func(Message) error { return nil }); err != nil {
					break
				}
			}
			if !errors.Is(err, codec.ErrCorrupt) {
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
	exit := (&Exit{Reason: codec.Atom("normal")}).Append(nil)
	items = append(items, exit)
	for _, feat := range []Features{0, FeatureS2} {
		b := NewBatcher(BatcherOptions{Features: feat, CompressAbove: 1024})
		dst := b.Drain(nil, items)
		if n := testing.AllocsPerRun(50, func() { dst = b.Drain(dst[:0], items) }); n != 0 {
			t.Errorf("features %v: Drain %v allocs/op, want 0", feat, n)
		}
	}
}

func TestAppendMessageRefusesATermOverTheMax(t *testing.T) {
	cases := []struct {
		name string
		msg  any
	}{
		{"bytes", make([]byte, 1001)},
		{"string", strings.Repeat("s", 1001)},
		{"tuple", codec.Tuple{make([]byte, 600), make([]byte, 600)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := AppendMessage(dst, 1, 2, c.msg, 1000)
			if !errors.Is(err, codec.ErrLimit) || string(out) != "keep" {
				t.Fatalf("out %q, err %v; want the dst untouched and ErrLimit", out, err)
			}
			if _, err := AppendMessage(nil, 1, 2, c.msg, 2000); err != nil {
				t.Fatalf("under the max: %v", err)
			}
		})
	}
}

// A reassembled message and a held record are delivered as the callee's to
// keep (Owned), a record read in place is not, and a kept buffer is never
// written again by the Reassembler.
func TestReassemblerHandsOverOnlyItsOwnBuffers(t *testing.T) {
	big := bytes.Repeat([]byte("ab"), 500)
	frags := fragmentItems(t, 1, mustMessage(t, 10, 20, big), 100)
	r := NewReassembler(ReassemblyLimits{})
	fr := NewFrameReader(0, 0)
	type got struct {
		v     any
		owned bool
		term  []byte
	}
	var out []got
	feed := func(item []byte) {
		f, _, err := fr.Next(item)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Feed(f, func(m Message) error {
			v, err := m.Decode(nil)
			out = append(out, got{v, r.Owned(), m.Term})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	feed(frags[0])
	feed(mustMessage(t, 11, 20, "in place"))
	feed(mustMessage(t, 10, 20, "held"))
	for _, f := range frags[1:] {
		feed(f)
	}
	if r.Owned() {
		t.Fatal("Owned outside a deliver call")
	}
	if len(out) != 3 || out[0].v != "in place" || out[0].owned || !out[1].owned || !out[2].owned || out[2].v != "held" {
		t.Fatalf("deliveries %+v", out)
	}
	kept := bytes.Clone(out[1].term)
	// More traffic, another large message: the kept buffer stays as it was.
	for _, f := range fragmentItems(t, 2, mustMessage(t, 10, 20, bytes.Repeat([]byte("cd"), 500)), 100) {
		feed(f)
	}
	if !bytes.Equal(kept, out[1].term) {
		t.Fatal("a handed-over buffer was written again")
	}
}

// ResetValue's fragments of a []byte or a string are byte for byte those
// Reset makes of the message AppendMessage encodes, wherever the term's
// head falls (fragments smaller than it included); it declines a value
// that is not over above, or of another type, and refuses one over the max
// message as AppendMessage does.
func TestFragmenterResetValueMatchesReset(t *testing.T) {
	var ids atomic.Uint64
	for _, v := range []any{bytes.Repeat([]byte("abcdefg"), 3000), strings.Repeat("xyz", 7000), make([]byte, 300)} {
		var n int
		switch x := v.(type) {
		case []byte:
			n = len(x)
		case string:
			n = len(x)
		}
		for _, size := range []int{1, 2, 3, 5, 64, 1000, n - 1, n, n + 3, n + 100} {
			want := fragmentItems(t, ids.Load()+1, mustMessage(t, 7, 9, v), size)
			var f Fragmenter
			ok, err := f.ResetValue(&ids, 7, 9, v, 100, 0, size)
			if !ok || err != nil {
				t.Fatalf("%T of %d bytes, size %d: ResetValue = %v, %v", v, n, size, ok, err)
			}
			if f.ItemSize() != len(mustMessage(t, 7, 9, v)) {
				t.Fatalf("ItemSize %d, want %d", f.ItemSize(), len(mustMessage(t, 7, 9, v)))
			}
			var got [][]byte
			for f.More() {
				got = append(got, f.Next(nil))
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%T of %d bytes, size %d: %d fragments differ from Reset's %d", v, n, size, len(got), len(want))
			}
		}
	}
	var f Fragmenter
	before := ids.Load()
	for _, v := range []any{make([]byte, 98), strings.Repeat("x", 50), codec.Tuple{make([]byte, 1000)}, []byte(nil), 12} {
		if ok, err := f.ResetValue(&ids, 1, 2, v, 100, 0, 64); ok || err != nil {
			t.Fatalf("%T: ResetValue = %v, %v; want false, nil", v, ok, err)
		}
	}
	if ids.Load() != before {
		t.Fatalf("declined values took %d ids", ids.Load()-before)
	}
	if ok, err := f.ResetValue(&ids, 1, 2, make([]byte, 5000), 100, 4096, 64); ok || !errors.Is(err, codec.ErrLimit) {
		t.Fatalf("over the max message: ResetValue = %v, %v; want false, ErrLimit", ok, err)
	}
	if _, err := AppendMessage(nil, 1, 2, make([]byte, 5000), 4096); !errors.Is(err, codec.ErrLimit) {
		t.Fatalf("AppendMessage over the max: %v", err)
	}
}

// Completed counts the fragmented messages a Reassembler has completed:
// it rises with the last fragment of each, a message of one fragment
// included, and not with the fragments before it.
func TestReassemblerCountsCompletedMessages(t *testing.T) {
	r := NewReassembler(ReassemblyLimits{})
	fr := NewFrameReader(0, 0)
	feed := func(it []byte) {
		t.Helper()
		f, _, err := fr.Next(it)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Feed(f, func(Message) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	one := fragmentItems(t, 1, mustMessage(t, 3, 4, "small"), DefaultFragmentSize)
	if len(one) != 1 {
		t.Fatalf("%d fragments; want one", len(one))
	}
	feed(one[0])
	if r.Completed() != 1 {
		t.Fatalf("Completed %d after a message of one fragment; want 1", r.Completed())
	}
	three := fragmentItems(t, 2, mustMessage(t, 3, 4, bytes.Repeat([]byte("x"), 150_000)), DefaultFragmentSize-MaxFragmentOverhead)
	if len(three) != 3 {
		t.Fatalf("%d fragments; want three", len(three))
	}
	for i, it := range three {
		feed(it)
		if want := uint64(1 + i/2); r.Completed() != want {
			t.Fatalf("Completed %d after fragment %d of 3; want %d", r.Completed(), i+1, want)
		}
	}
}

// Reassemblers of one quota share its limits: what one holds counts
// against the other (a peer sending on two connections of a link cannot
// make the receiver hold twice the link's limits), and what one gives back
// the other may take.
func TestReassemblersOfOneQuotaShareItsLimits(t *testing.T) {
	item := mustMessage(t, 3, 4, bytes.Repeat([]byte("x"), 150_000))
	frags := fragmentItems(t, 1, item, DefaultFragmentSize-MaxFragmentOverhead)
	feed := func(r *Reassembler, it []byte) error {
		t.Helper()
		f, _, err := NewFrameReader(0, 0).Next(it)
		if err != nil {
			t.Fatal(err)
		}
		return r.Feed(f, func(Message) error { return nil })
	}
	t.Run("unfinished messages", func(t *testing.T) {
		q := NewReassemblyQuota(ReassemblyLimits{MaxPending: 1})
		r1, r2 := q.NewReassembler(), q.NewReassembler()
		if err := feed(r1, frags[0]); err != nil {
			t.Fatal(err)
		}
		var le *LimitError
		if err := feed(r2, frags[0]); !errors.As(err, &le) || le.Limit != "fragments_pending" {
			t.Fatalf("a second unfinished message on the other reassembler: %v; want a fragments_pending limit", err)
		}
		for _, it := range frags[1:] { // r1's message completes: its count is given back
			if err := feed(r1, it); err != nil {
				t.Fatal(err)
			}
		}
		if err := feed(r2, frags[0]); err != nil {
			t.Fatalf("after the first message completed: %v", err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		budget := len(item) + ReassemblyOverhead // one message, not two
		q := NewReassemblyQuota(ReassemblyLimits{Budget: budget})
		r1, r2 := q.NewReassembler(), q.NewReassembler()
		for _, it := range frags[:2] {
			if err := feed(r1, it); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		for _, it := range frags[:2] {
			if err = feed(r2, it); err != nil {
				break
			}
		}
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != "reassembly_budget" {
			t.Fatalf("a second message's bytes on the other reassembler: %v; want a reassembly_budget limit", err)
		}
		if r1.Used()+r2.Used() > budget {
			t.Fatalf("held %d + %d bytes, over the budget of %d", r1.Used(), r2.Used(), budget)
		}
	})
}

// quotaHolds fails unless q's counts are the sums of what rs hold.
func quotaHolds(t *testing.T, q *ReassemblyQuota, rs ...*Reassembler) {
	t.Helper()
	var used, pending, held int
	for _, r := range rs {
		used, pending, held = used+r.Used(), pending+r.Pending(), held+r.Held()
	}
	if int(q.bytes.Load()) != used || int(q.pending.Load()) != pending || int(q.held.Load()) != held {
		t.Fatalf("the quota counts %d bytes, %d unfinished, %d held; its reassemblers hold %d, %d, %d",
			q.bytes.Load(), q.pending.Load(), q.held.Load(), used, pending, held)
	}
}

// Whatever a reassembler takes from its quota it gives back: after an
// exchange with records held and released, nothing is left counted, and
// after a limit error the quota counts what is held, not what was asked.
func TestAQuotaCountsWhatItsReassemblersHold(t *testing.T) {
	big := mustMessage(t, 1, 2, make([]byte, 100<<10))
	frags := fragmentItems(t, 1, big, 16<<10)
	small := mustMessage(t, 1, 2, make([]byte, 1000))
	t.Run("records held and released", func(t *testing.T) {
		q := NewReassemblyQuota(ReassemblyLimits{})
		r := q.NewReassembler()
		items := append([][]byte{frags[0], small, small}, frags[1:]...)
		if err := feedAll(t, r, items...); err != nil {
			t.Fatal(err)
		}
		quotaHolds(t, q, r)
		if q.bytes.Load() != 0 || q.pending.Load() != 0 || q.held.Load() != 0 {
			t.Fatalf("left %d bytes, %d unfinished, %d held", q.bytes.Load(), q.pending.Load(), q.held.Load())
		}
	})
	opens := func(n int) (out [][]byte) {
		for i := range n {
			out = append(out, firstFragment(uint64(i+1), 1, uint64(i), 1<<20, 1))
		}
		return out
	}
	for _, c := range []struct {
		name  string
		lim   ReassemblyLimits
		items [][]byte
	}{
		{"a held record over the budget", ReassemblyLimits{Budget: 2*entryCost + 16<<10 + 1500}, [][]byte{frags[0], small, small}},
		{"a first fragment over the budget", ReassemblyLimits{Budget: 100 * entryCost}, opens(100)},
		{"too many held", ReassemblyLimits{MaxHeld: 3}, [][]byte{frags[0], small, small, small, small}},
		{"too many unfinished", ReassemblyLimits{MaxPending: 10}, opens(11)},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := NewReassemblyQuota(c.lim)
			r := q.NewReassembler()
			if err := feedAll(t, r, c.items...); err == nil {
				t.Fatal("no limit error")
			}
			quotaHolds(t, q, r)
		})
	}
}

// A spawn reply's and a spawn request's node name that the receiver
// presets (its peer's) is kept when the payload carries the same name, so
// decoding skips the intern table; another name is decoded as usual.
func TestSpawnFramesKeepAPresetNodeName(t *testing.T) {
	name := "far@127.0.0.1:4000"
	pid := codec.PID{Node: name, Incarnation: 3, ID: 9}
	frame := func(c Control) []byte { return c.Append(nil)[HeaderSize:] }
	reply := frame(&SpawnReply{Req: 1, PID: pid})
	request := frame(&SpawnRequest{Req: 2, From: pid, Actor: "w", Args: mustTerm(t, []any(nil))})
	for _, tt := range []struct {
		preset string
		same   bool
	}{
		{strings.Clone(name), true},
		{"other@127.0.0.1:4001", false},
		{"", false},
	} {
		rep := SpawnReply{PID: codec.PID{Node: tt.preset}}
		if err := rep.Decode(reply, nil); err != nil {
			t.Fatal(err)
		}
		req := SpawnRequest{From: codec.PID{Node: tt.preset}}
		if _, err := req.DecodeName(request, nil); err != nil {
			t.Fatal(err)
		}
		for what, got := range map[string]codec.PID{"reply": rep.PID, "request": req.From} {
			if got != pid {
				t.Fatalf("%s with %q preset: decoded %v, want %v", what, tt.preset, got, pid)
			}
			if kept := unsafe.StringData(got.Node) == unsafe.StringData(tt.preset); kept != tt.same {
				t.Fatalf("%s with %q preset: preset string kept %v, want %v", what, tt.preset, kept, tt.same)
			}
		}
	}
}

// AppendWithArgs builds the frame Append builds from the arguments'
// encoding, and leaves dst as it was when an argument cannot be encoded.
func TestSpawnRequestAppendWithArgsIsAppend(t *testing.T) {
	from := codec.PID{Node: "near@127.0.0.1:4000", Incarnation: 5, ID: 7}
	for _, args := range [][]any{nil, {}, {1, "two", codec.Atom("three")}} {
		x := SpawnRequest{Req: 9, From: from, Actor: "worker", Link: true}
		got, err := x.AppendWithArgs([]byte("q"), args)
		if err != nil {
			t.Fatal(err)
		}
		x.Args = mustTerm(t, args)
		if want := x.Append([]byte("q")); !bytes.Equal(got, want) {
			t.Fatalf("args %#v: AppendWithArgs = %x, Append = %x", args, got, want)
		}
	}
	x := SpawnRequest{Req: 9, From: from, Actor: "worker"}
	if got, err := x.AppendWithArgs([]byte("q"), []any{make(chan int)}); err == nil || string(got) != "q" {
		t.Fatalf("an unencodable argument: %q, %v; want q and an error", got, err)
	}
}

// reader.uvarint's unrolled one-, two- and three-byte reads decode what
// binary.Uvarint does, and advance as far, for every input of up to two
// bytes and every three-byte input with a first byte of a spread of
// values; longer, truncated and over-long (over 64 bits) inputs go to
// binary.Uvarint and fail as they did (errTrunc, errVarint). Each input is
// read at an offset, after a byte of its own, as a field inside a payload.
func TestUvarintIsBinaryUvarint(t *testing.T) {
	check := func(in []byte) {
		t.Helper()
		r := reader{b: append([]byte{0xaa}, in...), off: 1}
		got, err := r.uvarint()
		want, n := binary.Uvarint(in)
		var wantErr error
		switch {
		case n == 0:
			wantErr, want, n = errTrunc, 0, 0
		case n < 0:
			wantErr, want, n = errVarint, 0, 0
		}
		if got != want || err != wantErr || r.off != 1+n {
			t.Fatalf("uvarint(% x) = %d, %v, off %d; binary.Uvarint: %d, %v, off %d", in, got, err, r.off, want, wantErr, 1+n)
		}
	}
	check(nil)
	for b0 := range 256 {
		check([]byte{byte(b0)})
		for b1 := range 256 {
			check([]byte{byte(b0), byte(b1)})
		}
	}
	for _, b0 := range []byte{0x00, 0x01, 0x7f, 0x80, 0x81, 0xaa, 0xfe, 0xff} {
		for b1 := range 256 {
			for b2 := range 256 {
				check([]byte{b0, byte(b1), byte(b2)})
			}
		}
	}
	for _, x := range []uint64{1 << 21, 1<<21 - 1, 1 << 28, 1<<35 + 12345, 1<<63 + 1, ^uint64(0)} {
		b := binary.AppendUvarint(nil, x)
		check(b)
		check(b[:len(b)-1])                                          // truncated
		check(append(b[:len(b)-1:len(b)-1], b[len(b)-1]|0x80, 0x00)) // one byte longer, over-long past 9
	}
	check(bytes.Repeat([]byte{0xff}, 10))               // truncated at ten bytes
	check(append(bytes.Repeat([]byte{0xff}, 10), 0x01)) // over 64 bits
	check(append(bytes.Repeat([]byte{0x80}, 9), 0x02))  // the tenth byte over 1
}
