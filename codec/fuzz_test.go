package codec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// fuzzLimits keep fuzzing fast while exercising every limit.
var fuzzLimits = &Limits{MaxDepth: 32, MaxElems: 1 << 12, MaxString: 1 << 16, MaxMessage: 1 << 20}

func termSeeds() [][]byte {
	var seeds [][]byte
	for _, c := range goldenTerms() {
		b, _ := Marshal(c.v)
		seeds = append(seeds, b)
	}
	b, _ := Marshal(shape{Name: "s", Points: []point{{1, 2, "a"}}, Origin: &point{}, Attrs: map[string]int{"a": 1}, Any: Tuple{1}})
	return append(seeds, b)
}

func FuzzDecodeTerm(f *testing.F) {
	for _, s := range termSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, n, err := DecodeTerm(data, fuzzLimits)
		if err != nil {
			if n != 0 || v != nil {
				t.Fatalf("error with n=%d v=%v", n, v)
			}
			return
		}
		if n <= 0 || n > len(data) {
			t.Fatalf("n = %d of %d", n, len(data))
		}
		// A decoded value re-encodes, and the re-encoding is a fixed point.
		b, err := Marshal(v)
		if err != nil {
			t.Fatalf("decoded %#v does not re-encode: %v", v, err)
		}
		// Carved from a slab, the value is the same, of the same types:
		// it encodes the same. Slabs: a foreign one (not a slab's size:
		// replaced), one of a slab's size filled with the input's bytes
		// (its header must not be trusted), and the slab the first decode
		// left, decoded into twice (boxes land mid-slab, and the second
		// decode's strings equal the last box).
		garbage := make([]byte, 1024)
		for i := range garbage {
			garbage[i] = data[i%len(data)]
		}
		garbage = garbage[:8*(len(data)%128)]
		foreign := make([]byte, 40)
		for i, slab := range []*[]byte{&foreign, &garbage, &garbage, &garbage} {
			vs, ns, err := DecodeTermSlab(data, fuzzLimits, slab)
			if err != nil || ns != n {
				t.Fatalf("DecodeTermSlab %d: n=%d err=%v; DecodeTerm: n=%d", i, ns, err, n)
			}
			if bs, err := Marshal(vs); err != nil || !bytes.Equal(b, bs) {
				t.Fatalf("DecodeTermSlab %d's value encodes to %x (%v), DecodeTerm's to %x", i, bs, err, b)
			}
		}
		v2, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("re-encoding %x does not decode: %v", b, err)
		}
		b2, _ := Marshal(v2)
		if !bytes.Equal(b, b2) {
			t.Fatalf("not a fixed point: %x then %x", b, b2)
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
	write("FuzzDecodeTerm", termSeeds())
}
