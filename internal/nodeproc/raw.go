package nodeproc

// The raw baseline: what crypto/tls alone carries between the same two
// processes, measured with the same clock discipline as the Mesh workers. A
// producer goroutine hands each message (a fresh copy) to a bounded channel;
// one writer goroutine frames it (4-byte length, big endian) into a 64 KiB
// bufio.Writer over a tls.Conn and flushes whenever the channel is empty.
// The receiver reads frames through a 64 KiB bufio.Reader. Arguments:
//
//	rawsink  run, replyTo PID, host string, mode string ("count" or "echo"):
//	         listens on host:0 (TLS 1.3, an ephemeral self-signed certificate),
//	         sends {"rawaddr", run, addr}, serves one connection until EOF and
//	         reports (count: frames and first-to-last span; echo: none)
//	rawsend  run, replyTo PID, addr string, payload int: streams until stopped
//	rawping  run, replyTo PID, addr string, payload int: one frame in flight,
//	         timing each round trip, until stopped

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

// rawBound bounds the raw baseline's dial, accept and final drain.
const rawBound = 30 * time.Second

// rawMaxFrame is the largest frame the raw receiver accepts.
const rawMaxFrame = 1 << 20

var (
	rawCertOnce sync.Once
	rawCert     tls.Certificate
	rawCertErr  error
)

// rawServerConfig returns a TLS 1.3 server config with an ephemeral
// self-signed P-256 certificate made once per process.
func rawServerConfig() (*tls.Config, error) {
	rawCertOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			rawCertErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meshbench raw baseline"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		rawCert, rawCertErr = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, err
	})
	if rawCertErr != nil {
		return nil, rawCertErr
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{rawCert}}, nil
}

// rawDial dials addr with TLS 1.3. The baseline measures transport cost, not
// authentication: the certificate is not verified.
func rawDial(addr string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: rawBound}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func defineRaw(n *node.Node, st *State) {
	n.Define("rawsink", func(p *node.Process, a []any) error {
		var run int64
		var replyTo node.PID
		var host, mode string
		if err := args("rawsink", a, &run, &replyTo, &host, &mode); err != nil {
			return err
		}
		cfg, err := rawServerConfig()
		if err != nil {
			return err
		}
		ln, err := tls.Listen("tcp", net.JoinHostPort(host, "0"), cfg)
		if err != nil {
			return err
		}
		defer ln.Close()
		if err := p.Send(replyTo, codec.Tuple{AtomRawAddr, run, ln.Addr().String()}); err != nil {
			return err
		}
		giveUp := time.AfterFunc(rawBound, func() { ln.Close() })
		c, err := ln.Accept()
		giveUp.Stop()
		if err != nil {
			return fmt.Errorf("rawsink: %w", err)
		}
		defer c.Close()
		if mode == "echo" {
			return rawEcho(c)
		}
		got, span, err := rawCount(c)
		var errs int64
		if err != nil {
			errs = 1
		}
		return report(p, replyTo, run, "rawsink", got, errs, span, nil, 0)
	})
	n.Define("rawsend", func(p *node.Process, a []any) error {
		var run int64
		var replyTo node.PID
		var addr string
		var size int
		if err := args("rawsend", a, &run, &replyTo, &addr, &size); err != nil {
			return err
		}
		c, err := rawDial(addr)
		if err != nil {
			return report(p, replyTo, run, "rawsend", 0, 1, 0, nil, 0)
		}
		defer c.Close()
		sent, span, err := rawStream(st.runs.ctx(run).Done(), c, size)
		var errs int64
		if err != nil {
			errs = 1
		}
		return report(p, replyTo, run, "rawsend", sent, errs, span, nil, 0)
	})
	n.Define("rawping", func(p *node.Process, a []any) error {
		var run int64
		var replyTo node.PID
		var addr string
		var size int
		if err := args("rawping", a, &run, &replyTo, &addr, &size); err != nil {
			return err
		}
		c, err := rawDial(addr)
		if err != nil {
			return report(p, replyTo, run, "rawping", 0, 1, 0, nil, 0)
		}
		defer c.Close()
		stop := st.runs.ctx(run).Done()
		frame := make([]byte, 4+size)
		binary.BigEndian.PutUint32(frame, uint32(size))
		in := make([]byte, 4+size)
		r := bufio.NewReader(c)
		h := NewHistogram()
		var ops, errs int64
		start := time.Now()
	loop:
		for {
			// At least one round trip, however late the dial finished: on a
			// loaded machine a TLS dial can outlast a short run.
			if ops > 0 {
				select {
				case <-stop:
					break loop
				default:
				}
			}
			t0 := time.Now()
			if _, err := c.Write(frame); err != nil {
				errs++
				break
			}
			if _, err := io.ReadFull(r, in); err != nil {
				errs++
				break
			}
			record(h, int64(time.Since(t0)))
			ops++
		}
		span := time.Since(start)
		_ = c.CloseWrite()
		return report(p, replyTo, run, "rawping", ops, errs, span, h, 0)
	})
}

// rawStream streams size-byte messages through a bounded channel to one
// writer until stop closes, then half-closes and waits for the receiver to
// close (it has read everything). It returns the messages sent and the
// time from the first send to the receiver's close.
func rawStream(stop <-chan struct{}, c *tls.Conn, size int) (int64, time.Duration, error) {
	q := make(chan []byte, 4096)
	payload := make([]byte, size)
	go func() {
		defer close(q)
		for {
			for range checkEvery {
				m := make([]byte, len(payload))
				copy(m, payload)
				q <- m
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	w := bufio.NewWriterSize(c, 64<<10)
	var hdr [4]byte
	var sent int64
	var werr error
	start := time.Now()
	for m := range q {
		if werr != nil {
			continue // drain the producer
		}
		binary.BigEndian.PutUint32(hdr[:], uint32(len(m)))
		_, _ = w.Write(hdr[:])
		_, werr = w.Write(m)
		sent++
		if len(q) == 0 && werr == nil {
			werr = w.Flush()
		}
	}
	if werr == nil {
		werr = w.Flush()
	}
	if werr != nil {
		return sent, time.Since(start), werr
	}
	if err := c.CloseWrite(); err != nil {
		return sent, time.Since(start), err
	}
	_ = c.SetReadDeadline(time.Now().Add(rawBound))
	_, err := io.Copy(io.Discard, c) // the receiver closes once it has read all
	return sent, time.Since(start), err
}

// rawCount reads frames until EOF and returns how many and the time from the
// first to the last. It reads the clock at the first frame and whenever it
// has used up what one read of the socket brought (the last frame is
// always such a one): a clock read per frame was a third of this
// receiver's CPU, a handicap Mesh's receiver (a clock read per 64
// messages) does not carry.
func rawCount(c net.Conn) (int64, time.Duration, error) {
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [4]byte
	buf := make([]byte, 64<<10)
	var got int64
	var first, last time.Time
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return got, last.Sub(first), nil
			}
			return got, last.Sub(first), err
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l > rawMaxFrame {
			return got, last.Sub(first), fmt.Errorf("rawsink: frame of %d bytes", l)
		}
		if int(l) > len(buf) {
			buf = make([]byte, l)
		}
		if _, err := io.ReadFull(r, buf[:l]); err != nil {
			return got, last.Sub(first), err
		}
		if got == 0 || r.Buffered() == 0 {
			last = time.Now()
			if got == 0 {
				first = last
			}
		}
		got++
	}
}

// rawEcho sends every frame back until EOF.
func rawEcho(c net.Conn) error {
	r := bufio.NewReader(c)
	var hdr [4]byte
	buf := make([]byte, 4+rawMaxFrame)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l > rawMaxFrame {
			return fmt.Errorf("rawsink: frame of %d bytes", l)
		}
		copy(buf, hdr[:])
		if _, err := io.ReadFull(r, buf[4:4+l]); err != nil {
			return err
		}
		if _, err := c.Write(buf[:4+l]); err != nil {
			return err
		}
	}
}
