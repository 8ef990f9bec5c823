package handshake

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

func TestHelloRoundTrips(t *testing.T) {
	for _, h := range []Hello{
		{MinVersion: 1, MaxVersion: 1, Name: "a"},
		{MinVersion: 1, MaxVersion: 65535, Name: "node@host:4369", Incarnation: 1<<64 - 1, Features: 1<<63 | 5, Nonce: [32]byte{1, 2, 31: 3}},
		{MinVersion: 7, MaxVersion: 7, Name: strings.Repeat("n", MaxNameLen), Incarnation: 42},
	} {
		msg := appendHello(nil, &h)
		var buf [maxBody]byte
		kind, body, err := readMessage(bytes.NewReader(msg), &buf)
		if err != nil || kind != kindHello {
			t.Fatalf("readMessage(%x) = %#x, %v", msg, kind, err)
		}
		got, err := decodeHello(body)
		if err != nil || got != h {
			t.Errorf("decoded %+v, %v; want %+v", got, err, h)
		}
		if len(msg) > headerLen+maxHelloBody {
			t.Errorf("hello of %d bytes exceeds the maximum", len(msg))
		}
	}
}

func TestReadMessageRefusesOversizedLengthsBeforeReadingOrAllocating(t *testing.T) {
	for _, msg := range [][]byte{
		{kindHello, 0xff, 0xff},
		{kindHello, 0x01, 0x35}, // maxHelloBody + 1
		{kindProof, 0x00, 0x21},
		{kindRefused, 0xff, 0xff},
	} {
		var buf [maxBody]byte
		r := bytes.NewReader(msg) // the header only: reading a body would hit EOF
		_, _, err := readMessage(r, &buf)
		if !errors.Is(err, ErrBadHello) {
			t.Errorf("readMessage(%x) = %v, want ErrBadHello", msg, err)
		}
		// The error value is all that is allocated: a few dozen bytes, never
		// the 64 KiB the header asks for.
		if perCall := bytesAllocated(100, func() {
			r.Reset(msg)
			_, _, _ = readMessage(r, &buf)
		}); perCall > 512 {
			t.Errorf("readMessage(%x) allocated %d bytes per call", msg, perCall)
		}
	}
}

// bytesAllocated returns the bytes allocated per call of f, over n calls.
func bytesAllocated(n int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(n)
}

func TestDecodingAValidHelloAllocatesOnlyTheName(t *testing.T) {
	msg := appendHello(nil, &Hello{MinVersion: 1, MaxVersion: 1, Name: "some-node@host:1"})
	var buf [maxBody]byte
	r := bytes.NewReader(msg)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(msg)
		_, body, _ := readMessage(r, &buf)
		if _, err := decodeHello(body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Errorf("%.0f allocations, want 1 (the name)", allocs)
	}
}

func TestTruncatedMessagesAreUnexpectedEOF(t *testing.T) {
	msg := appendHello(nil, &Hello{MinVersion: 1, MaxVersion: 1, Name: "n"})
	for n := 1; n < len(msg); n++ {
		var buf [maxBody]byte
		_, _, err := readMessage(bytes.NewReader(msg[:n]), &buf)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("first %d bytes: %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
	var buf [maxBody]byte
	if _, _, err := readMessage(bytes.NewReader(nil), &buf); err != io.EOF {
		t.Fatalf("no bytes: %v, want io.EOF", err)
	}
}

func TestRoleLabelsHaveEqualLengthAndDiffer(t *testing.T) {
	if len(labelDialler) != len(labelAcceptor) || labelDialler == labelAcceptor {
		t.Fatalf("labels %q and %q", labelDialler, labelAcceptor)
	}
}

// Every input of the proof changes it, and the name encoding is injective.
func TestProofCoversEveryInput(t *testing.T) {
	key := DeriveKey("c")
	base := proofInput{exporter: [32]byte{1}, diallerNonce: [32]byte{2}, acceptorNonce: [32]byte{3}, diallerName: "ab", acceptorName: "c"}
	want := computeProof(&key, labelDialler, &base)
	other := DeriveKey("d")
	for _, tc := range []struct {
		name   string
		key    *Key
		label  string
		mutate func(*proofInput)
	}{
		{"label", &key, labelAcceptor, func(*proofInput) {}},
		{"key", &other, labelDialler, func(*proofInput) {}},
		{"exporter", &key, labelDialler, func(p *proofInput) { p.exporter[31] ^= 1 }},
		{"dialler nonce", &key, labelDialler, func(p *proofInput) { p.diallerNonce[0] ^= 1 }},
		{"acceptor nonce", &key, labelDialler, func(p *proofInput) { p.acceptorNonce[0] ^= 1 }},
		{"nonces swapped", &key, labelDialler, func(p *proofInput) { p.diallerNonce, p.acceptorNonce = p.acceptorNonce, p.diallerNonce }},
		{"dialler name", &key, labelDialler, func(p *proofInput) { p.diallerName = "aB" }},
		{"acceptor name", &key, labelDialler, func(p *proofInput) { p.acceptorName = "C" }},
		{"name boundary moved", &key, labelDialler, func(p *proofInput) { p.diallerName, p.acceptorName = "a", "bc" }},
		{"names swapped", &key, labelDialler, func(p *proofInput) { p.diallerName, p.acceptorName = p.acceptorName, p.diallerName }},
	} {
		in := base
		tc.mutate(&in)
		if computeProof(tc.key, tc.label, &in) == want {
			t.Errorf("changing the %s leaves the proof unchanged", tc.name)
		}
	}
	if computeProof(&key, labelDialler, &base) != want {
		t.Error("the proof is not deterministic")
	}
}

func TestDeriveKeyIsHKDFSHA256WithMeshParameters(t *testing.T) {
	// Known answers, computed with golang.org/x/crypto/hkdf before the switch
	// to crypto/hkdf: a node keeps deriving the key that older nodes derive.
	for _, tc := range []struct{ cookie, key string }{
		{"", "18315fb340700a450d5accf61173f92c2d18c6f91370863bfa4e3a6a62c724e3"},
		{"cookie", "ea39f56c604441361ed757bf0c6fd78ab6741da37e7d8b05d42294f4b2d4fea3"},
	} {
		if got := DeriveKey(tc.cookie); hex.EncodeToString(got[:]) != tc.key {
			t.Errorf("DeriveKey(%q) = %x, want %s", tc.cookie, got, tc.key)
		}
	}
	if DeriveKey("a") == DeriveKey("b") {
		t.Error("different cookies give the same key")
	}
}
