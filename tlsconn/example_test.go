package tlsconn_test

import (
	"fmt"
	"net"
	"time"

	"github.com/meshrt/mesh/tlsconn"
)

// A handshake in blocking mode, then a record moved by hand in loop-fed
// mode: what an event loop does with the adapter's output and its input.
func Example() {
	cert, err := tlsconn.NewCertificate(0)
	if err != nil {
		panic(err)
	}
	a, b := net.Pipe()
	srv, sa := tlsconn.Server(a, tlsconn.ServerConfig(cert))
	cli, ca := tlsconn.Client(b, tlsconn.ClientConfig())
	deadline := time.Now().Add(5 * time.Second)
	_ = sa.SetHandshakeDeadline(deadline)
	_ = ca.SetHandshakeDeadline(deadline)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		panic(err)
	}
	if err := <-done; err != nil {
		panic(err)
	}

	// Loop-fed from here: the sockets now belong to the caller's loop.
	defer sa.Detach().Close()
	defer ca.Detach().Close()
	if _, err := cli.Write([]byte("hello")); err != nil { // never blocks
		panic(err)
	}
	wire := ca.SwapOutput(nil) // the ciphertext to write to the socket
	sa.Feed(wire)              // what the loop read from the socket
	buf := make([]byte, 64)
	n, _ := srv.Read(buf)
	_, err = srv.Read(buf) // input used up
	fmt.Printf("%s, then would block: %v\n", buf[:n], tlsconn.IsWouldBlock(err))
	// Output: hello, then would block: true
}
