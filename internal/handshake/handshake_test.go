package handshake

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

func TestSuccessAgreesOnVersionFeaturesAndPeers(t *testing.T) {
	tests := []struct {
		name           string
		dRange, aRange [2]uint16
		dFeat, aFeat   uint64
		wantVersion    uint16
		wantFeatures   uint64
	}{
		{"current version", defaultRange, defaultRange, 0b1011, 0b0110, Version, 0b0010},
		{"highest common version", [2]uint16{1, 3}, [2]uint16{2, 5}, 1<<63 | 1, 1<<63 | 2, 3, 1 << 63},
		{"single shared version", [2]uint16{4, 9}, [2]uint16{1, 4}, 0, ^uint64(0), 4, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, a := tlsPair(t)
			dcfg := config("alpha@127.0.0.1:1", "cookie", tc.dFeat)
			acfg := config("beta@127.0.0.1:2", "cookie", tc.aFeat)
			dOut, aOut := runPair(t, d, a, dcfg, acfg, acfg.Name, tc.dRange, tc.aRange)
			if dOut.err != nil || aOut.err != nil {
				t.Fatalf("dialler: %v; acceptor: %v", dOut.err, aOut.err)
			}
			for _, o := range []struct {
				side string
				out  outcome
				peer *Config
			}{{"dialler", dOut, acfg}, {"acceptor", aOut, dcfg}} {
				r := o.out.res
				if r.Version != tc.wantVersion || r.Features != tc.wantFeatures {
					t.Errorf("%s: version %d features %#x, want %d %#x", o.side, r.Version, r.Features, tc.wantVersion, tc.wantFeatures)
				}
				if r.Peer.Name != o.peer.Name || r.Peer.Incarnation != o.peer.Incarnation || r.Peer.Features != o.peer.Features {
					t.Errorf("%s: peer hello %+v, want name %q incarnation %d features %#x", o.side, r.Peer, o.peer.Name, o.peer.Incarnation, o.peer.Features)
				}
				if r.Peer.Nonce == ([32]byte{}) {
					t.Errorf("%s: peer nonce is zero", o.side)
				}
			}
			if dOut.res.Peer.Nonce == aOut.res.Peer.Nonce {
				t.Error("both sides sent the same nonce")
			}
			// The deadline is the caller's (loop's engine): Run sets none.
			for side, rec := range map[string]*deadlineConn{"dialler": d.rec, "acceptor": a.rec} {
				if _, n := rec.lastDeadline(); n != 0 {
					t.Errorf("%s: Run set %d deadlines; the caller owns them", side, n)
				}
			}
		})
	}
}

func TestAfterSuccessTheConnCarriesData(t *testing.T) {
	d, a := tlsPair(t)
	dOut, aOut := runPair(t, d, a, config("a", "c", 0), config("b", "c", 0), "b", defaultRange, defaultRange)
	if dOut.err != nil || aOut.err != nil {
		t.Fatalf("dialler: %v; acceptor: %v", dOut.err, aOut.err)
	}
	// No deadline is left behind, so the conn is usable with none of its own.
	if _, err := a.conn.Write([]byte("frame")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := d.conn.Read(got); err != nil || string(got) != "frame" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestWrongCookieIsRefusedOnBothSides(t *testing.T) {
	for _, tc := range []struct{ name, dCookie, aCookie string }{
		{"dialler has the wrong cookie", "wrong", "right"},
		{"acceptor has the wrong cookie", "right", "wrong"},
		{"cookies differ by one byte", "cookie-0", "cookie-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, a := tlsPair(t)
			dOut, aOut := runPair(t, d, a, config("a", tc.dCookie, 0), config("b", tc.aCookie, 0), "b", defaultRange, defaultRange)
			if !errors.Is(dOut.err, ErrAuth) || !errors.Is(aOut.err, ErrAuth) {
				t.Fatalf("dialler: %v; acceptor: %v; want ErrAuth on both", dOut.err, aOut.err)
			}
		})
	}
}

func TestDiallerReachingAnotherNodeGetsUnexpectedPeer(t *testing.T) {
	d, a := tlsPair(t)
	dOut, aOut := runPair(t, d, a, config("a", "c", 0), config("gamma", "c", 0), "beta", defaultRange, defaultRange)
	if !errors.Is(dOut.err, ErrUnexpectedPeer) {
		t.Errorf("dialler: %v, want ErrUnexpectedPeer", dOut.err)
	}
	if !errors.Is(aOut.err, ErrUnexpectedPeer) {
		t.Errorf("acceptor: %v, want ErrUnexpectedPeer (told by the dialler)", aOut.err)
	}
}

func TestDisjointVersionRangesFailOnBothSides(t *testing.T) {
	for _, tc := range []struct {
		name           string
		dRange, aRange [2]uint16
	}{
		{"dialler newer", [2]uint16{2, 3}, [2]uint16{1, 1}},
		{"acceptor newer", [2]uint16{1, 1}, [2]uint16{2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, a := tlsPair(t)
			dOut, aOut := runPair(t, d, a, config("a", "c", 0), config("b", "c", 0), "b", tc.dRange, tc.aRange)
			if !errors.Is(dOut.err, ErrVersion) || !errors.Is(aOut.err, ErrVersion) {
				t.Fatalf("dialler: %v; acceptor: %v; want ErrVersion on both", dOut.err, aOut.err)
			}
		})
	}
}

func TestCommonVersionPicksTheHighestShared(t *testing.T) {
	for _, tc := range []struct {
		lo1, hi1, lo2, hi2 uint16
		want               uint16
		ok                 bool
	}{
		{1, 1, 1, 1, 1, true},
		{1, 5, 3, 9, 5, true},
		{3, 9, 1, 5, 5, true},
		{1, 9, 4, 4, 4, true},
		{1, 2, 3, 4, 0, false},
		{3, 4, 1, 2, 0, false},
		{2, 2, 2, 2, 2, true},
		{1, 65535, 65535, 65535, 65535, true},
	} {
		got, ok := commonVersion(tc.lo1, tc.hi1, tc.lo2, tc.hi2)
		if got != tc.want || ok != tc.ok {
			t.Errorf("commonVersion(%d..%d, %d..%d) = %d, %v; want %d, %v", tc.lo1, tc.hi1, tc.lo2, tc.hi2, got, ok, tc.want, tc.ok)
		}
	}
}

var errNameShape = errors.New("test: bad name shape")

func TestRefusedPeerNameIsBadHelloOnBothSides(t *testing.T) {
	d, a := tlsPair(t)
	acfg := config("b", "c", 0)
	acfg.ValidateName = func(n string) error {
		if n == "bad name" {
			return errNameShape
		}
		return nil
	}
	dOut, aOut := runPair(t, d, a, config("bad name", "c", 0), acfg, "b", defaultRange, defaultRange)
	if !errors.Is(aOut.err, ErrBadHello) || !errors.Is(aOut.err, errNameShape) {
		t.Errorf("acceptor: %v, want ErrBadHello wrapping the validator's error", aOut.err)
	}
	if !errors.Is(dOut.err, ErrBadHello) {
		t.Errorf("dialler: %v, want ErrBadHello (told by the acceptor)", dOut.err)
	}
}

// A fake acceptor that sends the dialler's own proof back must not pass: the
// role labels differ.
func TestReflectedProofIsRejected(t *testing.T) {
	d, a := tlsPair(t)
	fake := &fakePeer{t: t, conn: a.conn}
	var gotProof bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		fake.sendHello("b", MinVersion, Version)
		fake.readHello()
		kind, proof, err := fake.read()
		if err != nil || kind != kindProof {
			t.Errorf("fake acceptor: want the dialler's proof, got kind %#x, %v", kind, err)
			return
		}
		gotProof = true
		fake.write(appendMessage(nil, kindProof, proof))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := runBounded(ctx, d, config("a", "c", 0), "b")
	<-done
	if !gotProof {
		t.Fatal("the dialler never sent its proof")
	}
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("dialler: %v, want ErrAuth", err)
	}
}

// The acceptor must answer a bad proof with a refusal and never with its own
// proof, which would let any client collect HMACs to test cookie guesses.
func TestAcceptorGivesNoProofToAnUnauthenticatedDialler(t *testing.T) {
	d, a := tlsPair(t)
	fake := &fakePeer{t: t, conn: d.conn}
	var kind byte
	var body []byte
	var readErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		fake.sendHello("a", MinVersion, Version)
		fake.readHello()
		fake.write(appendMessage(nil, kindProof, make([]byte, proofLen)))
		kind, body, readErr = fake.read()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := runBounded(ctx, a, config("b", "c", 0), "")
	<-done
	if !errors.Is(err, ErrAuth) {
		t.Errorf("acceptor: %v, want ErrAuth", err)
	}
	if readErr != nil || kind != kindRefused || !bytes.Equal(body, []byte{byte(refusedAuth)}) {
		t.Errorf("after a bad proof the dialler got kind %#x body %x (%v); want a refused(auth) notice", kind, body, readErr)
	}
}

// A relay that terminates TLS on both legs with its own certificates and
// forwards every handshake byte faithfully cannot complete the handshake:
// each leg has its own exporter value, so the proof does not check.
func TestTLSTerminatingRelayCannotCompleteTheHandshake(t *testing.T) {
	ln := listen(t)
	nodeCert := newCert(t)
	accepted := acceptTLS(t, ln, nodeCert)
	relayCert := newCert(t)
	r := startRelay(t, ln.Addr().String(),
		func(c net.Conn) (net.Conn, error) {
			s := tls.Server(c, serverConfig(relayCert))
			return s, s.Handshake()
		},
		func(c net.Conn) (net.Conn, error) {
			s := tls.Client(c, clientConfig())
			return s, s.Handshake()
		})
	d := dialTLS(t, r.addr())
	a := receive(t, accepted)
	if bytes.Equal(d.conn.ConnectionState().PeerCertificates[0].Raw, nodeCert.Certificate[0]) {
		t.Fatal("the relay did not terminate TLS")
	}
	dOut, aOut := runPair(t, d, a, config("a", "c", 0), config("b", "c", 0), "b", defaultRange, defaultRange)
	if !errors.Is(dOut.err, ErrAuth) || !errors.Is(aOut.err, ErrAuth) {
		t.Fatalf("dialler: %v; acceptor: %v; want ErrAuth on both", dOut.err, aOut.err)
	}
	if len(r.bytesSeen()) == 0 {
		t.Fatal("the relay forwarded nothing")
	}
}

// A relay that only forwards TCP bytes lets the handshake through and sees
// neither the cookie, the key, nor any hello field in clear.
func TestPlainTCPRelayCompletesAndSeesNoSecret(t *testing.T) {
	const cookie = "the-cookie-7d1f0c3b"
	const dName, aName = "alpha-marker-5a9e@10.0.0.1:4369", "beta-marker-c04d@10.0.0.2:4369"
	ln := listen(t)
	accepted := acceptTLS(t, ln, newCert(t))
	r := startRelay(t, ln.Addr().String(), nil, nil)
	d := dialTLS(t, r.addr())
	a := receive(t, accepted)
	dcfg, acfg := config(dName, cookie, 5), config(aName, cookie, 3)
	dOut, aOut := runPair(t, d, a, dcfg, acfg, aName, defaultRange, defaultRange)
	if dOut.err != nil || aOut.err != nil {
		t.Fatalf("dialler: %v; acceptor: %v", dOut.err, aOut.err)
	}
	seen := r.bytesSeen()
	if len(seen) == 0 {
		t.Fatal("the relay forwarded nothing")
	}
	key := DeriveKey(cookie)
	for what, secret := range map[string][]byte{
		"cookie": []byte(cookie), "key": key[:], "dialler name": []byte(dName), "acceptor name": []byte(aName),
	} {
		if bytes.Contains(seen, secret) {
			t.Errorf("the relay saw the %s in clear", what)
		}
	}
}

func TestStalledPeerTimesOutAtTheCallersDeadline(t *testing.T) {
	for _, role := range []string{"dialler", "acceptor"} {
		t.Run(role, func(t *testing.T) {
			d, a := tlsPair(t)
			self, dialled := a, ""
			if role == "dialler" {
				self, dialled = d, "b"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := runBounded(ctx, self, config("x", "c", 0), dialled)
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("%v, want ErrTimeout", err)
			}
		})
	}
}

func TestCancelledContextEndsAStalledHandshake(t *testing.T) {
	d, a := tlsPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The stalled peer reads our hello, then cancels ctx and says nothing.
	fake := &fakePeer{t: t, conn: d.conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fake.readHello()
		cancel()
	}()
	_, err := runBounded(ctx, a, config("b", "c", 0), "")
	<-done
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, want ErrTimeout wrapping context.Canceled", err)
	}
}

func TestGarbageFromThePeerIsBadHello(t *testing.T) {
	valid := appendHello(nil, &Hello{MinVersion: 1, MaxVersion: 1, Name: "peer"})
	with := func(i int, v byte) []byte { b := bytes.Clone(valid); b[i] = v; return b }
	tests := []struct {
		name string
		send []byte
	}{
		{"unknown kind", []byte{0x7f, 0, 1, 0}},
		{"framing version 2", with(0, 0x21)},
		// No body follows: refusing at the header proves the length is
		// checked before anything is read or allocated for the body.
		{"oversized hello length", []byte{kindHello, 0xff, 0xff}},
		{"hello one byte over the maximum", []byte{kindHello, 0x01, 0x35}},
		{"hello shorter than its fixed part", []byte{kindHello, 0, 5, 1, 2, 3, 4, 5}},
		{"name length disagrees with body", with(headerLen+52, 9)},
		{"min version above max", with(headerLen+1, 2)},
		{"min version zero", with(headerLen+1, 0)},
		{"proof instead of hello", appendMessage(nil, kindProof, make([]byte, proofLen))},
		{"short proof", []byte{kindProof, 0, 31}},
		{"refused notice too long", []byte{kindRefused, 0, 2, 1, 1}},
		{"an HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"a TLS record", []byte{0x16, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5}},
	}
	for _, tc := range tests {
		for _, role := range []string{"dialler", "acceptor"} {
			t.Run(tc.name+"/"+role, func(t *testing.T) {
				d, a := tlsPair(t)
				self, peer, dialled := a, d, ""
				if role == "dialler" {
					self, peer, dialled = d, a, "peer"
				}
				if _, err := peer.conn.Write(tc.send); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				_, err := runBounded(ctx, self, config("self", "c", 0), dialled)
				if !errors.Is(err, ErrBadHello) {
					t.Fatalf("%v, want ErrBadHello", err)
				}
			})
		}
	}
}

func TestOnlyHelloThenProofIsAccepted(t *testing.T) {
	tests := []struct {
		name  string
		after func(p *fakePeer) // what the fake peer sends after the hellos
	}{
		{"a second hello", func(p *fakePeer) { p.sendHello("peer", 1, 1) }},
		{"an unknown kind", func(p *fakePeer) { p.write([]byte{0x15, 0, 0}) }},
		{"an admission instead of a proof", func(p *fakePeer) { p.write(appendMessage(nil, kindAdmission, []byte{byte(Admitted)})) }},
		{"a refused notice with an unknown reason", func(p *fakePeer) { p.write(appendMessage(nil, kindRefused, []byte{99})) }},
	}
	for _, tc := range tests {
		for _, role := range []string{"dialler", "acceptor"} {
			t.Run(tc.name+"/"+role, func(t *testing.T) {
				d, a := tlsPair(t)
				self, peer, dialled := a, d, ""
				if role == "dialler" {
					self, peer, dialled = d, a, "peer"
				}
				fake := &fakePeer{t: t, conn: peer.conn}
				done := make(chan struct{})
				go func() {
					defer close(done)
					fake.sendHello("peer", MinVersion, Version)
					fake.readHello()
					tc.after(fake)
				}()
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				_, err := runBounded(ctx, self, config("self", "c", 0), dialled)
				<-done
				if !errors.Is(err, ErrBadHello) {
					t.Fatalf("%v, want ErrBadHello", err)
				}
			})
		}
	}
}

func TestPeerClosingMidHandshakeIsNeitherAuthNorTimeout(t *testing.T) {
	d, a := tlsPair(t)
	fake := &fakePeer{t: t, conn: d.conn}
	fake.sendHello("a", MinVersion, Version)
	d.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := runBounded(ctx, a, config("b", "c", 0), "")
	if err == nil || Reason(err) != "io" {
		t.Fatalf("%v (reason %q), want an I/O error", err, Reason(err))
	}
}

func TestRunRefusesBadArgumentsWithoutIO(t *testing.T) {
	good := config("n", "c", 0)
	unfinished := func(t *testing.T) *tls.Conn {
		c1, c2 := net.Pipe()
		t.Cleanup(func() { c1.Close(); c2.Close() })
		return tls.Client(c1, clientConfig()) // no TLS handshake done
	}
	tests := []struct {
		name string
		cfg  func() *Config
		conn func(t *testing.T) *tls.Conn
		ctx  func() context.Context
		want error
	}{
		{"nil config", func() *Config { return nil }, unfinished, context.Background, ErrConfig},
		{"empty name", func() *Config { c := *good; c.Name = ""; return &c }, unfinished, context.Background, ErrConfig},
		{"name too long", func() *Config { c := *good; c.Name = string(make([]byte, MaxNameLen+1)); return &c }, unfinished, context.Background, ErrConfig},
		{"zero key", func() *Config { c := *good; c.Key = Key{}; return &c }, unfinished, context.Background, ErrConfig},
		{"nil conn", func() *Config { return good }, func(*testing.T) *tls.Conn { return nil }, context.Background, ErrConfig},
		{"TLS handshake not done", func() *Config { return good }, unfinished, context.Background, ErrConfig},
		{"ctx already done", func() *Config { return good }, func(t *testing.T) *tls.Conn { d, _ := tlsPair(t); return d.conn },
			func() context.Context { ctx, cancel := context.WithCancel(context.Background()); cancel(); return ctx }, ErrTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(tc.ctx(), tc.conn(t), tc.cfg(), "")
			if !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}
}

func TestReasonNamesEachOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{refusedError(refusedAuth), "auth"},
		{refusedError(refusedUnexpectedPeer), "unexpected_peer"},
		{refusedError(refusedBadHello), "bad_hello"},
		{refusedError(200), "bad_hello"},
		{ErrVersion, "version"},
		{ErrTimeout, "timeout"},
		{ErrConfig, "config"},
		{admissionError(Duplicate, "x"), "duplicate"},
		{admissionError(Refused, "x"), "refused"},
		{net.ErrClosed, "io"},
	} {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// The acceptor's admission decision reaches the dialler as a framed message,
// and both sides return the same error for a connection not admitted. Admit
// sees the peer's hello and runs only after both proofs checked.
func TestAdmissionDecisionReachesBothSides(t *testing.T) {
	for _, tc := range []struct {
		decision Admission
		want     error
	}{
		{Admitted, nil},
		{Duplicate, ErrDuplicate},
		{Refused, ErrRefused},
		{Admission(0), ErrRefused}, // anything else is a refusal
	} {
		t.Run(fmt.Sprint(tc.decision), func(t *testing.T) {
			d, a := tlsPair(t)
			acfg := config("b", "c", 0)
			var asked Hello
			acfg.Admit = func(_ context.Context, peer Hello) Admission { asked = peer; return tc.decision }
			dOut, aOut := runPair(t, d, a, config("a", "c", 0), acfg, "b", defaultRange, defaultRange)
			if !errors.Is(dOut.err, tc.want) || !errors.Is(aOut.err, tc.want) || (tc.want == nil) != (dOut.err == nil) {
				t.Fatalf("dialler: %v; acceptor: %v; want %v on both", dOut.err, aOut.err, tc.want)
			}
			if asked.Name != "a" {
				t.Fatalf("Admit saw peer %q, want a", asked.Name)
			}
		})
	}
}

func TestAdmitIsNotAskedForAnUnauthenticatedDialler(t *testing.T) {
	d, a := tlsPair(t)
	acfg := config("b", "right", 0)
	asked := false
	acfg.Admit = func(context.Context, Hello) Admission { asked = true; return Admitted }
	dOut, aOut := runPair(t, d, a, config("a", "wrong", 0), acfg, "b", defaultRange, defaultRange)
	if !errors.Is(dOut.err, ErrAuth) || !errors.Is(aOut.err, ErrAuth) || asked {
		t.Fatalf("dialler: %v; acceptor: %v; Admit asked: %v", dOut.err, aOut.err, asked)
	}
}

func TestMalformedAdmissionIsBadHello(t *testing.T) {
	for _, body := range [][]byte{{0}, {4}, {255}} {
		if _, err := decodeAdmission(body); !errors.Is(err, ErrBadHello) {
			t.Errorf("decodeAdmission(%v) = %v, want ErrBadHello", body, err)
		}
	}
	var buf [maxBody]byte
	if _, _, err := readMessage(bytes.NewReader([]byte{kindAdmission, 0, 2, 1, 1}), &buf); !errors.Is(err, ErrBadHello) {
		t.Errorf("an admission of two bytes: %v, want ErrBadHello", err)
	}
}

// The hardening review: a peer presenting the node's own name (and
// incarnation) was admitted, and when it hung up, links between two local
// processes fired noconnection. Refused on both sides, whichever dialled.
func TestPeerPresentingOurOwnNameIsRefused(t *testing.T) {
	d, a := tlsPair(t)
	dOut, aOut := runPair(t, d, a, config("same", "c", 0), config("same", "c", 0), "same", defaultRange, defaultRange)
	if !errors.Is(dOut.err, ErrBadHello) || !errors.Is(aOut.err, ErrBadHello) {
		t.Fatalf("dialler: %v; acceptor: %v; want ErrBadHello on both", dOut.err, aOut.err)
	}
}

// The same check holds against a peer that does not make it itself (a
// hostile one): whichever side the real node is, a hello carrying its own
// name ends the handshake before any proof, and the acceptor says why.
func TestHostilePeerPresentingOurOwnNameGetsNoProof(t *testing.T) {
	for _, role := range []string{"dialler", "acceptor"} {
		t.Run(role, func(t *testing.T) {
			d, a := tlsPair(t)
			self, peer, dialled := a, d, ""
			if role == "dialler" {
				self, peer, dialled = d, a, "self"
			}
			fake := &fakePeer{t: t, conn: peer.conn}
			var kind byte
			var body []byte
			done := make(chan struct{})
			go func() {
				defer close(done)
				fake.sendHello("self", MinVersion, Version)
				fake.readHello()
				kind, body, _ = fake.read()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			_, err := runBounded(ctx, self, config("self", "c", 0), dialled)
			if !errors.Is(err, ErrBadHello) {
				t.Fatalf("%v, want ErrBadHello", err)
			}
			_ = self.conn.Close()
			<-done
			if kind == kindProof {
				t.Fatal("the node sent a proof to a peer presenting its own name")
			}
			if role == "acceptor" && (kind != kindRefused || !bytes.Equal(body, []byte{byte(refusedBadHello)})) {
				t.Fatalf("the fake dialler got kind %#x body %x; want a refused(bad hello) notice", kind, body)
			}
		})
	}
}
