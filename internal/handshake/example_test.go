package handshake_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/meshrt/mesh/internal/handshake"
)

func ExampleDeriveKey() {
	// Every node of a cluster derives the same key from the same cookie;
	// the cookie itself never crosses the wire.
	a, b := handshake.DeriveKey("s3cret-cookie"), handshake.DeriveKey("s3cret-cookie")
	fmt.Println(a == b, a == handshake.DeriveKey("other-cookie"))
	// Output: true false
}

// ExampleRun shakes hands over TLS 1.3 on loopback: beta accepts, alpha
// dials it by name.
func ExampleRun() {
	key := handshake.DeriveKey("s3cret-cookie")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	accepted := make(chan string)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			panic(err)
		}
		conn := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{ephemeralCert()}, MinVersion: tls.VersionTLS13})
		defer conn.Close()
		if err := conn.HandshakeContext(ctx); err != nil {
			panic(err)
		}
		// The deadline is the caller's: Run sets none.
		dl, _ := ctx.Deadline()
		_ = conn.SetDeadline(dl)
		res, err := handshake.Run(ctx, conn, &handshake.Config{Name: "beta@127.0.0.1:2", Features: 0b110, Key: key}, "")
		accepted <- fmt.Sprintf("beta accepted %s: version %d, features %b, err %v", res.Peer.Name, res.Version, res.Features, err)
	}()

	// The certificate authenticates nothing (the cookie proof does), so the
	// dialler does not verify it.
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	res, err := handshake.Run(ctx, conn, &handshake.Config{Name: "alpha@127.0.0.1:1", Features: 0b011, Key: key}, "beta@127.0.0.1:2")
	fmt.Printf("alpha reached %s: version %d, features %b, err %v\n", res.Peer.Name, res.Version, res.Features, err)
	fmt.Println(<-accepted)
	// Output:
	// alpha reached beta@127.0.0.1:2: version 2, features 10, err <nil>
	// beta accepted alpha@127.0.0.1:1: version 2, features 10, err <nil>
}

// ephemeralCert makes a throwaway self-signed ECDSA certificate.
func ephemeralCert() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
