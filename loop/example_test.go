package loop_test

import (
	"context"
	"fmt"

	"github.com/meshrt/mesh/loop"
)

// printer prints what arrives and when the connection ends.
type printer struct{ done chan struct{} }

func (p printer) OnData(c *loop.Conn, b []byte) (int, error) {
	fmt.Printf("got %q\n", b)
	close(p.done)
	return len(b), nil
}

func (p printer) OnClose(c *loop.Conn, reason error) {}

func Example() {
	srv, err := loop.New(loop.WithLoops(1))
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	cli, err := loop.New(loop.WithLoops(1))
	if err != nil {
		panic(err)
	}
	defer cli.Close()

	got := printer{done: make(chan struct{})}
	addr, err := srv.Listen("127.0.0.1:0", func(c *loop.Conn) {
		c.SetHandler(got)
		c.Start()
	})
	if err != nil {
		panic(err)
	}
	c, err := cli.Dial(context.Background(), addr.String(), nil)
	if err != nil {
		panic(err)
	}
	c.SetHandler(printer{done: make(chan struct{})})
	c.Start()
	if err := c.Enqueue(context.Background(), []byte("hello")); err != nil {
		panic(err)
	}
	<-got.done
	// Output: got "hello"
}
