package handshake

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecodeHello feeds arbitrary bytes to the message reader and the hello
// decoder: they must never panic, never read a body past its kind's maximum,
// and a hello they accept must re-encode to exactly the bytes consumed.
func FuzzDecodeHello(f *testing.F) {
	f.Add(appendHello(nil, &Hello{MinVersion: 1, MaxVersion: 1, Name: "a@h:1", Incarnation: 9, Features: 3, Nonce: [32]byte{7}}))
	f.Add(appendHello(nil, &Hello{MinVersion: 1, MaxVersion: 65535, Name: string(bytes.Repeat([]byte{'z'}, MaxNameLen))}))
	f.Add([]byte{kindHello, 0xff, 0xff})
	f.Add([]byte{kindHello, 0, 54})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf [maxBody]byte
		r := bytes.NewReader(data)
		kind, body, err := readMessage(r, &buf)
		if err != nil {
			if !errors.Is(err, ErrBadHello) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		consumed := data[:len(data)-r.Len()]
		if len(body) > maxBody || len(consumed) != headerLen+len(body) {
			t.Fatalf("kind %#x: body %d bytes, consumed %d", kind, len(body), len(consumed))
		}
		if kind != kindHello {
			return
		}
		h, err := decodeHello(body)
		if err != nil {
			if !errors.Is(err, ErrBadHello) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if h.Name == "" || len(h.Name) > MaxNameLen || h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
			t.Fatalf("accepted an invalid hello %+v", h)
		}
		if again := appendHello(nil, &h); !bytes.Equal(again, consumed) {
			t.Fatalf("re-encoded %x, read %x", again, consumed)
		}
	})
}

// FuzzDecodeProof feeds arbitrary bytes where a proof, a refused notice or
// an admission is expected: no panic, and only exact-size messages with
// known values get through, each mapping to the error the receiving side
// would return.
func FuzzDecodeProof(f *testing.F) {
	f.Add(appendMessage(nil, kindProof, bytes.Repeat([]byte{0xab}, proofLen)))
	f.Add(appendMessage(nil, kindRefused, []byte{byte(refusedAuth)}))
	f.Add(appendMessage(nil, kindRefused, []byte{byte(refusedUnexpectedPeer)}))
	f.Add(appendMessage(nil, kindRefused, []byte{200}))
	f.Add([]byte{kindProof, 0, 31})
	f.Add(appendMessage(nil, kindAdmission, []byte{byte(Duplicate)}))
	f.Add(appendMessage(nil, kindAdmission, []byte{9}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf [maxBody]byte
		kind, body, err := readMessage(bytes.NewReader(data), &buf)
		if err != nil {
			return
		}
		switch kind {
		case kindProof:
			if len(body) != proofLen {
				t.Fatalf("proof of %d bytes accepted", len(body))
			}
		case kindRefused:
			if len(body) != refusedLen {
				t.Fatalf("refused notice of %d bytes accepted", len(body))
			}
			err := refusedError(refusal(body[0]))
			if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrUnexpectedPeer) && !errors.Is(err, ErrBadHello) {
				t.Fatalf("refusal %d maps to %v", body[0], err)
			}
		case kindAdmission:
			d, err := decodeAdmission(body)
			if err != nil {
				if !errors.Is(err, ErrBadHello) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if d != Admitted && d != Duplicate && d != Refused {
				t.Fatalf("admission %d accepted", d)
			}
		case kindHello:
		default:
			t.Fatalf("unknown kind %#x accepted", kind)
		}
	})
}
