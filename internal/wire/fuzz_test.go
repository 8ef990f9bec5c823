package wire

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshrt/mesh/codec"
)

// fuzzLimits keep fuzzing fast while exercising every limit.
var fuzzLimits = &codec.Limits{MaxDepth: 32, MaxElems: 1 << 12, MaxString: 1 << 16, MaxMessage: 1 << 20}

const fuzzMaxFrame = 1 << 20

func frameSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, c := range goldenFrames(t) {
		seeds = append(seeds, c.b)
	}
	var items [][]byte
	for i := range 50 {
		m, _ := AppendMessage(nil, uint64(i), 1, codec.Tuple{codec.Atom("tick"), i, "some repeated text some repeated text"}, 0)
		items = append(items, m)
	}
	seeds = append(seeds, NewBatcher(BatcherOptions{Features: FeatureS2, CompressAbove: 64}).Drain(nil, items))
	return seeds
}

func FuzzFrame(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewFrameReader(fuzzMaxFrame, SupportedFeatures)
		for len(data) > 0 {
			fr, n, err := r.Next(data)
			if err != nil {
				if n != 0 {
					t.Fatalf("error with n=%d", n)
				}
				return
			}
			if n < HeaderSize || n > len(data) {
				t.Fatalf("n = %d of %d", n, len(data))
			}
			data = data[n:]
			switch fr.Kind {
			case KindBatch:
				it := fr.Messages()
				for it.Next() {
					m := it.Message()
					if len(m.Term) == 0 {
						t.Fatal("empty term yielded")
					}
					_, _ = m.Decode(fuzzLimits)
				}
			case KindFragment:
				_ = NewReassembler(ReassemblyLimits{Budget: 1 << 16, MaxMessage: fuzzLimits.MaxMessage}).Feed(fr, func(Message) error { return nil })
			default:
				x, err := DecodeControl(fr, fuzzLimits)
				if err != nil {
					continue
				}
				if x.Kind() != fr.Kind {
					t.Fatalf("%v frame decoded as %T", fr.Kind, x)
				}
				// A decoded control frame re-encodes to a frame that
				// decodes to the same value.
				again, err := DecodeControl(Frame{Kind: fr.Kind, Payload: x.Append(nil)[HeaderSize:]}, fuzzLimits)
				if err != nil {
					t.Fatalf("%v frame re-encoded does not decode: %v", fr.Kind, err)
				}
				if x.Kind() != again.Kind() {
					t.Fatalf("kind changed: %v then %v", x.Kind(), again.Kind())
				}
			}
		}
	})
}

func FuzzReassembler(f *testing.F) {
	f.Add([]byte{0, 4, 1, 2, 3, 8, 8, 8, 5, 13, 9, 0x1c, 8})
	f.Add([]byte{0, 0x45, 0x46, 0x47, 0x0c, 1, 2, 0x1d, 0x2d, 0x3d, 8, 8, 8, 8, 8, 8, 8, 8})
	for _, s := range frameSeeds(f) {
		f.Add(append([]byte{1}, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		if data[0]&1 == 1 {
			rawReassembly(t, data[1:])
			return
		}
		modelReassembly(t, data[1:])
	})
}

// rawReassembly feeds arbitrary frames: the budget holds and nothing panics.
func rawReassembly(t *testing.T, data []byte) {
	const budget = 1 << 16
	r := NewReassembler(ReassemblyLimits{Budget: budget, MaxPending: 64, MaxHeld: 64, MaxMessage: fuzzLimits.MaxMessage})
	fr := NewFrameReader(fuzzMaxFrame, SupportedFeatures)
	for len(data) > 0 {
		f, n, err := fr.Next(data)
		if err != nil {
			return
		}
		data = data[n:]
		if f.Kind != KindBatch && f.Kind != KindFragment {
			continue
		}
		err = r.Feed(f, func(m Message) error {
			if len(m.Term) == 0 {
				t.Fatal("empty term delivered")
			}
			return nil
		})
		if r.Used() > budget || r.Used() < 0 || r.Pending() > 64 || r.Held() > 64 || r.Held() < 0 {
			t.Fatalf("used %d of budget %d, %d pending, %d held (limits 64)", r.Used(), budget, r.Pending(), r.Held())
		}
		if err != nil {
			return
		}
	}
}

// modelReassembly plays a sender that interleaves fragments of large
// messages with small ones (first fragments in send order, as the contract
// asks) and checks that every message of every pair arrives, in order.
func modelReassembly(t *testing.T, ops []byte) {
	if len(ops) > 4096 {
		ops = ops[:4096] // keep each run fast; longer programs add nothing
	}
	type stream struct{ frags [][]byte }
	var (
		items   [][]byte
		streams []*stream
		seq     [4]int
		nextID  uint64
	)
	emit := func(i int) {
		s := streams[i]
		items = append(items, s.frags[0])
		s.frags = s.frags[1:]
		if len(s.frags) == 0 {
			streams = append(streams[:i], streams[i+1:]...)
		}
	}
	for _, b := range ops {
		pair := int(b & 3)
		from, to := uint64(pair), uint64(pair+10)
		switch {
		case b&8 != 0 && len(streams) > 0:
			emit(int(b>>4) % len(streams))
		case b&4 != 0:
			size := 1 + int(b>>4)*23
			item, err := AppendMessage(nil, to, from, codec.Tuple{seq[pair], bytes.Repeat([]byte{b}, size)}, 0)
			if err != nil {
				t.Fatal(err)
			}
			seq[pair]++
			nextID++
			var fr Fragmenter
			if err := fr.Reset(nextID, item, 16); err != nil {
				t.Fatal(err)
			}
			s := &stream{}
			for fr.More() {
				s.frags = append(s.frags, fr.Next(nil))
			}
			streams = append(streams, s)
			emit(len(streams) - 1) // the first fragment goes out in send order
		default:
			item, err := AppendMessage(nil, to, from, codec.Tuple{seq[pair]}, 0)
			if err != nil {
				t.Fatal(err)
			}
			seq[pair]++
			items = append(items, item)
		}
	}
	for len(streams) > 0 {
		emit(0)
	}
	wire := NewBatcher(BatcherOptions{Features: FeatureS2, MaxBatch: 64, CompressAbove: 32}).Drain(nil, items)
	r := NewReassembler(ReassemblyLimits{Budget: 8 << 20}) // room for every op to be a pending large message
	fr := NewFrameReader(0, FeatureS2)
	var next [4]int
	type kept struct{ term, was []byte }
	var owned []kept // terms handed over (Owned): they must stay as delivered
	for len(wire) > 0 {
		f, n, err := fr.Next(wire)
		if err != nil {
			t.Fatal(err)
		}
		wire = wire[n:]
		err = r.Feed(f, func(m Message) error {
			v, err := m.Decode(nil)
			if err != nil {
				return err
			}
			pair := int(m.From)
			if r.Owned() {
				owned = append(owned, kept{m.Term, bytes.Clone(m.Term)})
			}
			if got := v.(codec.Tuple)[0].(int); got != next[pair] {
				return fmt.Errorf("pair %d: got message %d, want %d", pair, got, next[pair])
			}
			next[pair]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if next != seq || r.Used() != 0 || r.Pending() != 0 {
		t.Fatalf("delivered %v of %v; %d bytes, %d pending left", next, seq, r.Used(), r.Pending())
	}
	for _, k := range owned {
		if !bytes.Equal(k.term, k.was) {
			t.Fatal("a buffer handed over (Owned) was written again")
		}
	}
}

// spawnRequestSeeds are spawn request payloads (a frame's, without its
// header).
func spawnRequestSeeds(t testing.TB) [][]byte {
	from := codec.PID{Node: "a@h:1", Incarnation: 5, ID: 9}
	var seeds [][]byte
	for _, args := range [][]any{nil, {1, "x", codec.Tuple{codec.Atom("k"), 2.5}}, {[]any{[]byte("b")}, codec.Atom("a")}} {
		term, err := codec.AppendTerm(nil, args)
		if err != nil {
			t.Fatal(err)
		}
		x := SpawnRequest{Req: 300, From: from, Actor: "worker", Args: term, Link: len(args) > 0}
		seeds = append(seeds, x.Append(nil)[HeaderSize:])
	}
	return seeds
}

// FuzzSpawnRequest decodes any payload both ways, Decode and DecodeName:
// they agree, and a request they accept re-encodes to one that decodes to
// the same fields.
func FuzzSpawnRequest(f *testing.F) {
	for _, s := range spawnRequestSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var full, named SpawnRequest
		errFull := full.Decode(payload, fuzzLimits)
		name, errNamed := named.DecodeName(payload, fuzzLimits)
		if (errFull == nil) != (errNamed == nil) {
			t.Fatalf("Decode: %v; DecodeName: %v", errFull, errNamed)
		}
		if errFull != nil {
			return
		}
		if string(name) != full.Actor || named.Actor != "" || named.Args != nil ||
			named.Req != full.Req || named.From != full.From || named.Link != full.Link {
			t.Fatalf("DecodeName: %q %+v; Decode: %+v", name, named, full)
		}
		// The arguments, compared encoded (a NaN is not equal to itself).
		a, errA := codec.AppendTerm(nil, full.Arguments())
		b, errB := codec.AppendTerm(nil, named.Arguments())
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("arguments: %x (%v) and %x (%v)", a, errA, b, errB)
		}
		var again SpawnRequest
		if err := again.Decode(full.Append(nil)[HeaderSize:], fuzzLimits); err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		if again.Req != full.Req || again.From != full.From || again.Actor != full.Actor ||
			again.Link != full.Link || !bytes.Equal(again.Args, full.Args) {
			t.Fatalf("re-encoded: %+v, was %+v", again, full)
		}
	})
}

// TestWriteFuzzSeedCorpus writes the seeds above into testdata/fuzz so the
// corpus is on disk (and runs as regression cases) even without -fuzz.
func TestWriteFuzzSeedCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%03d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzFrame", frameSeeds(t))
	var rs [][]byte
	rs = append(rs, []byte{0, 4, 1, 2, 3, 8, 8, 8, 5, 13, 9, 0x1c, 8}, []byte{0, 0x45, 0x46, 0x47, 0x0c, 1, 2, 0x1d, 0x2d, 0x3d, 8, 8, 8})
	for _, s := range frameSeeds(t) {
		rs = append(rs, append([]byte{1}, s...))
	}
	write("FuzzReassembler", rs)
	write("FuzzSpawnRequest", spawnRequestSeeds(t))
}

// FuzzSpawnPreset decodes any payload as a spawn reply and as a spawn
// request (Decode and DecodeName), each into a zero value and into one
// whose node name is preset as a receiver presets its peer's: the preset
// name is only a shortcut, so both decode to the same fields, or fail
// with the same error, whatever the preset and the payload's name.
func FuzzSpawnPreset(f *testing.F) {
	const far = "far@127.0.0.1:4000"
	pid := codec.PID{Node: far, Incarnation: 3, ID: 9}
	for _, s := range spawnRequestSeeds(f) {
		f.Add(s, far)
		f.Add(s, "")
	}
	for _, r := range []SpawnReply{
		{Req: 1, PID: pid},
		{Req: 2, PID: pid, Code: 2, Err: "no such actor"},
		{Req: 3, PID: codec.PID{Node: "nonode@nohost"}},
	} {
		p := r.Append(nil)[HeaderSize:]
		f.Add(p, far)
		f.Add(p, far[:len(far)-1]) // a prefix of the payload's name
		f.Add(p, far+"0")          // the payload's name a prefix of it
	}
	f.Fuzz(func(t *testing.T, payload []byte, preset string) {
		var plain SpawnReply
		errPlain := plain.Decode(payload, fuzzLimits)
		pre := SpawnReply{PID: codec.PID{Node: preset}}
		errPre := pre.Decode(payload, fuzzLimits)
		if !sameError(errPlain, errPre) {
			t.Fatalf("SpawnReply.Decode: %v; with %q preset: %v", errPlain, preset, errPre)
		}
		if errPlain == nil && plain != pre {
			t.Fatalf("SpawnReply.Decode: %+v; with %q preset: %+v", plain, preset, pre)
		}

		var named SpawnRequest
		name, errNamed := named.DecodeName(payload, fuzzLimits)
		namedPre := SpawnRequest{From: codec.PID{Node: preset}}
		namePre, errNamedPre := namedPre.DecodeName(payload, fuzzLimits)
		if !sameError(errNamed, errNamedPre) {
			t.Fatalf("SpawnRequest.DecodeName: %v; with %q preset: %v", errNamed, preset, errNamedPre)
		}
		if errNamed == nil && (!bytes.Equal(name, namePre) || !sameRequest(&named, &namedPre)) {
			t.Fatalf("SpawnRequest.DecodeName: %q %+v; with %q preset: %q %+v", name, named, preset, namePre, namedPre)
		}

		var full SpawnRequest
		errFull := full.Decode(payload, fuzzLimits)
		fullPre := SpawnRequest{From: codec.PID{Node: preset}}
		errFullPre := fullPre.Decode(payload, fuzzLimits)
		if !sameError(errFull, errFullPre) {
			t.Fatalf("SpawnRequest.Decode: %v; with %q preset: %v", errFull, preset, errFullPre)
		}
		if errFull == nil && (full.Actor != fullPre.Actor || !bytes.Equal(full.Args, fullPre.Args) || !sameRequest(&full, &fullPre)) {
			t.Fatalf("SpawnRequest.Decode: %+v; with %q preset: %+v", full, preset, fullPre)
		}
	})
}

// sameError reports whether a and b are both nil or both errors saying the
// same.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

// sameRequest reports whether a and b decoded the same requester, request
// and arguments (compared encoded: a NaN is not equal to itself).
func sameRequest(a, b *SpawnRequest) bool {
	if a.Req != b.Req || a.From != b.From || a.Link != b.Link {
		return false
	}
	x, errX := codec.AppendTerm(nil, a.Arguments())
	y, errY := codec.AppendTerm(nil, b.Arguments())
	return errX == nil && errY == nil && bytes.Equal(x, y)
}
