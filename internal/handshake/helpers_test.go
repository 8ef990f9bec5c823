package handshake

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/leaktest"
)

func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}

// testTimeout bounds every test handshake so a broken test fails instead of hanging.
const testTimeout = 10 * time.Second

// newCert makes a throwaway self-signed ECDSA P-256 certificate. It
// authenticates nothing: the cookie proof does.
func newCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mesh-handshake-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func serverConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
}

func clientConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
}

// deadlineConn records the last deadline set through it, so tests can check
// Run leaves none behind.
type deadlineConn struct {
	net.Conn
	mu   sync.Mutex
	last time.Time
	sets int
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.last, c.sets = t, c.sets+1
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// lastDeadline returns the last deadline set and how many were set.
func (c *deadlineConn) lastDeadline() (time.Time, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.sets
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// endpoint is one side of a TLS connection under test.
type endpoint struct {
	conn *tls.Conn
	rec  *deadlineConn
}

// acceptTLS accepts one connection on ln and completes a TLS server
// handshake on it in the background; the result arrives on the channel.
func acceptTLS(t testing.TB, ln net.Listener, cert tls.Certificate) <-chan endpoint {
	t.Helper()
	ch := make(chan endpoint, 1)
	done := make(chan struct{})
	var got *tls.Conn // read only after done is closed
	go func() {
		defer close(done)
		defer close(ch)
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		rec := &deadlineConn{Conn: raw}
		c := tls.Server(rec, serverConfig(cert))
		got = c
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := c.HandshakeContext(ctx); err != nil {
			return
		}
		ch <- endpoint{c, rec}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		if got != nil {
			got.Close()
		}
	})
	return ch
}

// dialTLS dials addr and completes a TLS client handshake.
func dialTLS(t testing.TB, addr string) endpoint {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &deadlineConn{Conn: raw}
	c := tls.Client(rec, clientConfig())
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	return endpoint{c, rec}
}

// receive takes the accepted endpoint, failing the test if none came.
func receive(t testing.TB, ch <-chan endpoint) endpoint {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("accept or TLS handshake failed")
		}
		return e
	case <-time.After(testTimeout):
		t.Fatal("no connection accepted")
	}
	panic("unreachable")
}

// tlsPair returns both ends of a TLS 1.3 connection over 127.0.0.1 TCP:
// the dialler (client) and the acceptor (server).
func tlsPair(t testing.TB) (dialler, acceptor endpoint) {
	t.Helper()
	ln := listen(t)
	ch := acceptTLS(t, ln, newCert(t))
	dialler = dialTLS(t, ln.Addr().String())
	return dialler, receive(t, ch)
}

// outcome is one side's return from Run.
type outcome struct {
	res Result
	err error
}

// bound does for e what loop's engine does for a handshake: it sets the
// deadline from ctx and moves it into the past if ctx is cancelled. It sets
// them on the raw conn, under the recorder, so a test can tell that Run
// itself sets none. Call the returned function once Run has returned.
func bound(ctx context.Context, e endpoint) (release func()) {
	raw := e.rec.Conn
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	return func() { stop(); _ = raw.SetDeadline(time.Time{}) }
}

// runBounded is Run under bound.
func runBounded(ctx context.Context, e endpoint, cfg *Config, dialled string) (Result, error) {
	defer bound(ctx, e)()
	return Run(ctx, e.conn, cfg, dialled)
}

// runPair runs the acceptor in a goroutine and the dialler here, with the
// given version ranges, each under bound, and returns both outcomes.
func runPair(t testing.TB, d, a endpoint, dcfg, acfg *Config, dialled string, dRange, aRange [2]uint16) (dOut, aOut outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer bound(ctx, a)()
		aOut.res, aOut.err = run(ctx, a.conn, acfg, "", aRange[0], aRange[1])
	}()
	func() {
		defer bound(ctx, d)()
		dOut.res, dOut.err = run(ctx, d.conn, dcfg, dialled, dRange[0], dRange[1])
	}()
	<-done
	return dOut, aOut
}

var defaultRange = [2]uint16{MinVersion, Version}

func config(name, cookie string, features uint64) *Config {
	return &Config{Name: name, Incarnation: uint64(len(name)) * 1000003, Features: features, Key: DeriveKey(cookie)}
}

// fakePeer speaks the handshake by hand, to misbehave in chosen ways.
type fakePeer struct {
	t    testing.TB
	conn *tls.Conn
	buf  [maxBody]byte
}

func (p *fakePeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Errorf("fake peer write: %v", err)
	}
}

func (p *fakePeer) sendHello(name string, lo, hi uint16) {
	h := Hello{MinVersion: lo, MaxVersion: hi, Name: name, Incarnation: 7}
	p.write(appendHello(nil, &h))
}

// read reads one message and returns its kind and a copy of its body.
func (p *fakePeer) read() (byte, []byte, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(testTimeout))
	kind, body, err := readMessage(p.conn, &p.buf)
	return kind, bytes.Clone(body), err
}

func (p *fakePeer) readHello() Hello {
	p.t.Helper()
	kind, body, err := p.read()
	if err != nil || kind != kindHello {
		p.t.Errorf("fake peer: want hello, got kind %#x, err %v", kind, err)
		return Hello{}
	}
	h, err := decodeHello(body)
	if err != nil {
		p.t.Error(err)
	}
	return h
}

// relay forwards bytes between one accepted connection and target, both
// ways, and records every byte it forwarded. wrap, if set, turns each raw
// leg into the conn actually relayed (to terminate TLS on both legs).
type relay struct {
	ln   net.Listener
	mu   sync.Mutex
	seen bytes.Buffer
	open []io.Closer
	done bool // set by cleanup: anything tracked later is closed at once
	wg   sync.WaitGroup
}

func (r *relay) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen.Write(b)
}

func (r *relay) track(c io.Closer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		c.Close()
		return
	}
	r.open = append(r.open, c)
}

func (r *relay) bytesSeen() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.seen.Bytes())
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// startRelay relays one connection to target. With wrapIn and wrapOut nil
// it is a plain TCP relay; otherwise they terminate TLS on each leg.
func startRelay(t testing.TB, target string, wrapIn, wrapOut func(net.Conn) (net.Conn, error)) *relay {
	t.Helper()
	r := &relay{ln: listen(t)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.track(in)
		out, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		r.track(out)
		var a, b net.Conn = in, out
		if wrapIn != nil {
			if a, err = wrapIn(in); err != nil {
				return
			}
			r.track(a)
			if b, err = wrapOut(out); err != nil {
				return
			}
			r.track(b)
		}
		pipe := func(dst, src net.Conn) {
			defer r.wg.Done()
			_, _ = io.Copy(dst, io.TeeReader(src, r))
			// One direction ended: end the other too.
			in.Close()
			out.Close()
		}
		r.wg.Add(2)
		go pipe(a, b)
		go pipe(b, a)
	}()
	t.Cleanup(func() {
		r.ln.Close()
		r.mu.Lock()
		r.done = true
		for _, c := range r.open {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}
