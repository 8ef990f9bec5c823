package tlsconn

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// handshakePair runs a real TLS 1.3 handshake over loopback TCP in blocking
// mode and returns both ends with their adapters.
func handshakePair(t testing.TB) (srv, cli *tls.Conn, sa, ca *Adapter) {
	t.Helper()
	return handshakePairWith(t, nil, nil)
}

// handshakePairWith is handshakePair with the server's socket wrapped by
// wrap and both configurations changed by conf (either may be nil).
func handshakePairWith(t testing.TB, wrap func(net.Conn) net.Conn, conf func(srv, cli *tls.Config)) (srv, cli *tls.Conn, sa, ca *Adapter) {
	t.Helper()
	cert, err := NewCertificate(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	scfg, ccfg := ServerConfig(cert), ClientConfig()
	if conf != nil {
		conf(scfg, ccfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		tc  *tls.Conn
		ad  *Adapter
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			ch <- res{err: err}
			return
		}
		if wrap != nil {
			nc = wrap(nc)
		}
		tc, ad := Server(nc, scfg)
		ch <- res{tc, ad, tc.Handshake()}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli, ca = Client(nc, ccfg)
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return r.tc, cli, r.ad, ca
}

func TestCertificateIsSelfSignedP256(t *testing.T) {
	cert, err := NewCertificate(0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("key algorithm %v", leaf.PublicKeyAlgorithm)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > DefaultValidity+2*time.Minute {
		t.Fatalf("validity %v longer than the default", d)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil || !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
		t.Fatal("not self-signed:", err)
	}
}

func TestConfigsAllowOnlyTLS13(t *testing.T) {
	cert, _ := NewCertificate(0)
	for name, cfg := range map[string]*tls.Config{"server": ServerConfig(cert), "client": ClientConfig()} {
		if cfg.MinVersion != tls.VersionTLS13 || cfg.MaxVersion != tls.VersionTLS13 {
			t.Errorf("%s: versions %x-%x", name, cfg.MinVersion, cfg.MaxVersion)
		}
		if !cfg.DynamicRecordSizingDisabled {
			t.Errorf("%s: dynamic record sizing on", name)
		}
	}
}

// pump moves every byte cli wrote to srv in chunks of step bytes, reading
// after each chunk, and returns the plaintext srv read.
func pump(t *testing.T, from *Adapter, to *tls.Conn, toAd *Adapter, step int) []byte {
	t.Helper()
	wire := from.SwapOutput(nil)
	var got []byte
	buf := make([]byte, 32<<10)
	for len(wire) > 0 {
		n := min(step, len(wire))
		toAd.Feed(wire[:n])
		wire = wire[n:]
		for {
			m, err := to.Read(buf)
			got = append(got, buf[:m]...)
			if err != nil {
				if !IsWouldBlock(err) {
					t.Fatalf("read: %v", err)
				}
				break
			}
		}
		if toAd.Unread() != 0 {
			t.Fatalf("%d fed bytes left unread", toAd.Unread())
		}
	}
	return got
}

func TestLoopFedModeSurvivesWouldBlockAtEveryByte(t *testing.T) {
	srv, cli, sa, ca := handshakePair(t)
	sa.Detach()
	ca.Detach()
	msg := bytes.Repeat([]byte("mesh!"), 10000) // several records
	for _, step := range []int{1, 7, 1000, 1 << 20} {
		if _, err := cli.Write(msg); err != nil {
			t.Fatal(err)
		}
		if got := pump(t, ca, srv, sa, step); !bytes.Equal(got, msg) {
			t.Fatalf("step %d: got %d bytes, want %d", step, len(got), len(msg))
		}
	}
}

func TestBytesBufferedDuringHandshakeAreReadAfterDetach(t *testing.T) {
	srv, cli, sa, ca := handshakePair(t)
	// The client writes right away, in blocking mode; the server reads one
	// byte in blocking mode, so tls.Conn holds the rest of the record.
	if _, err := cli.Write([]byte("hello, loop")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(srv, one); err != nil {
		t.Fatal(err)
	}
	sa.Detach()
	ca.Detach()
	buf := make([]byte, 64)
	n, err := srv.Read(buf) // no new input fed
	if err != nil || string(one)+string(buf[:n]) != "hello, loop" {
		t.Fatalf("after detach: %q, %v", buf[:n], err)
	}
	if _, err := srv.Read(buf); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("empty read = %v, want ErrWouldBlock", err)
	}
}

func TestCloseNotifyGoesToOutputNotSocket(t *testing.T) {
	srv, cli, sa, ca := handshakePair(t)
	sa.Detach()
	ca.Detach()
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	wire := ca.SwapOutput(nil)
	if len(wire) == 0 {
		t.Fatal("no close_notify written")
	}
	sa.Feed(wire)
	if _, err := srv.Read(make([]byte, 8)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after close_notify = %v, want io.EOF", err)
	}
}

// The owner's handshake deadline cannot be moved through the net.Conn
// deadline methods (what tls.Conn and a hook call), until the owner clears it.
func TestHandshakeDeadlineHasOneOwner(t *testing.T) {
	mine, theirs := net.Pipe()
	defer theirs.Close()
	a := NewAdapter(mine)
	defer a.Close()
	if err := a.SetHandshakeDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// A hook moving the deadline into the past changes nothing.
	if err := a.SetDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	_ = a.SetReadDeadline(time.Unix(1, 0))
	go func() { _, _ = theirs.Write([]byte("x")) }()
	buf := make([]byte, 1)
	if _, err := a.Read(buf); err != nil {
		t.Fatalf("read under the owner's deadline: %v", err)
	}
	// The owner aborts: a deadline in the past fails the read at once.
	if err := a.SetHandshakeDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the owner's abort = %v, want os.ErrDeadlineExceeded", err)
	}
	// Cleared: the net.Conn methods work again.
	if err := a.SetHandshakeDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = theirs.Write([]byte("y")) }()
	if _, err := a.Read(buf); err != nil || buf[0] != 'y' {
		t.Fatalf("read after clearing = %q, %v", buf, err)
	}
	_ = a.SetReadDeadline(time.Unix(1, 0))
	if _, err := a.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after SetReadDeadline in the past = %v, want os.ErrDeadlineExceeded", err)
	}
	// Loop-fed: deadlines are the loop's business, every call a no-op.
	a.Detach()
	if err := a.SetHandshakeDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
}
