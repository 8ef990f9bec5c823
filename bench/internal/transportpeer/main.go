// Command transportpeer is the far end of bench/transport_test.go's
// two-process benchmarks. It listens on 127.0.0.1:0, prints "ADDR host:port"
// and serves until its stdin closes.
//
// Frames are a 4-byte big-endian length and a payload. A zero-length frame
// is a marker: the peer answers it with a zero-length frame once every
// frame before it on that connection was handled. In echo mode every
// non-empty frame of at most -echo-max bytes is sent back too (larger ones
// are only read: one peer can answer pings and sink a stream).
//
// Usage: transportpeer -mode loop|tls -echo [-echo-max bytes]
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"

	"crypto/tls"

	"github.com/meshrt/mesh/loop"
	"github.com/meshrt/mesh/tlsconn"
)

func main() {
	mode := flag.String("mode", "loop", "loop (gnet + TLS) or tls (net.Conn + crypto/tls)")
	echo := flag.Bool("echo", false, "echo every frame")
	loops := flag.Int("loops", 0, "event loops (0: one per CPU)")
	flag.IntVar(&echoMax, "echo-max", maxFrame, "echo only frames of at most this many bytes")
	flag.Parse()
	var addr net.Addr
	var stop func()
	switch *mode {
	case "loop":
		addr, stop = serveLoop(*echo, *loops)
	case "tls":
		addr, stop = serveTLS(*echo)
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
	fmt.Printf("ADDR %s\n", addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
	stop()
}

// maxFrame is the largest frame the peer reads.
const maxFrame = 1 << 20

// echoMax is the largest frame echoed in echo mode (set once by main).
var echoMax = maxFrame

type handler struct{ echo bool }

func (h handler) OnData(c *loop.Conn, b []byte) (int, error) {
	used := 0
	for len(b)-used >= 4 {
		n := int(binary.BigEndian.Uint32(b[used:]))
		if n > maxFrame {
			return used, errors.New("frame too large")
		}
		if len(b)-used-4 < n {
			break
		}
		if n == 0 || h.echo && n <= echoMax {
			if err := c.Enqueue(context.Background(), b[used:used+4+n]); err != nil {
				return used, err
			}
		}
		used += 4 + n
	}
	return used, nil
}

func (handler) OnClose(*loop.Conn, error) {}

func serveLoop(echo bool, loops int) (net.Addr, func()) {
	var opts []loop.Option
	if loops > 0 {
		opts = append(opts, loop.WithLoops(loops))
	}
	e, err := loop.New(opts...)
	if err != nil {
		log.Fatal(err)
	}
	addr, err := e.Listen("127.0.0.1:0", func(c *loop.Conn) {
		c.SetHandler(handler{echo: echo})
		c.Start()
	})
	if err != nil {
		log.Fatal(err)
	}
	return addr, func() { _ = e.Close() }
}

func serveTLS(echo bool) (net.Addr, func()) {
	cert, err := tlsconn.NewCertificate(0)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsconn.ServerConfig(cert))
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go serveTLSConn(nc, echo)
		}
	}()
	return ln.Addr(), func() { _ = ln.Close() }
}

func serveTLSConn(nc net.Conn, echo bool) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 64<<10)
	bw := bufio.NewWriterSize(nc, 64<<10)
	var hdr [4]byte
	buf := make([]byte, maxFrame)
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n > len(buf) {
			return
		}
		if _, err := io.ReadFull(br, buf[:n]); err != nil {
			return
		}
		if n == 0 || echo && n <= echoMax {
			_, _ = bw.Write(hdr[:])
			_, _ = bw.Write(buf[:n])
			if br.Buffered() == 0 {
				if err := bw.Flush(); err != nil {
					return
				}
			}
		}
	}
}
