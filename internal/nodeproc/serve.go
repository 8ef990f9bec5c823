package nodeproc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/meshrt/mesh/node"
)

// Config is what Serve runs.
type Config struct {
	Name   string        // node name, name@host:port (port 0: a free port)
	Cookie string        // the cluster's secret cookie
	Opts   []node.Option // passed to node.Start
	// StopAtEOF stops the node at the end of stdin: a parent that dies, even
	// by SIGKILL, takes its child node processes with it.
	StopAtEOF bool
	// Connect names nodes to connect to once started.
	Connect []string
	// Started, if set, is called with the node once it is started, before
	// its name is printed.
	Started func(*node.Node)
}

// StopBound bounds the graceful stop of a serving node.
const StopBound = 10 * time.Second

// Serve starts a node with this package's actors, connects it to
// cfg.Connect, prints its name (its bound port included) as the first line
// of stdout, and serves until ctx ends or, with StopAtEOF, stdin ends; then
// it stops the node gracefully. It is called from one goroutine (a main).
func Serve(ctx context.Context, cfg Config, stdin io.Reader, stdout io.Writer) error {
	n, err := node.Start(cfg.Name, cfg.Cookie, cfg.Opts...)
	if err != nil {
		return err
	}
	Define(n, &State{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := func() error {
		sctx, done := context.WithTimeout(context.Background(), StopBound)
		defer done()
		return n.Stop(sctx)
	}
	for _, peer := range cfg.Connect {
		cctx, done := context.WithTimeout(ctx, 30*time.Second)
		err := n.Connect(cctx, peer)
		done()
		if err != nil {
			_ = stop()
			return fmt.Errorf("connect %s: %w", peer, err)
		}
	}
	if cfg.Started != nil {
		cfg.Started(n)
	}
	if cfg.StopAtEOF {
		go func() {
			_, _ = io.Copy(io.Discard, bufio.NewReader(stdin))
			cancel()
		}()
	}
	if _, err := fmt.Fprintln(stdout, n.Self()); err != nil {
		cancel()
	}
	<-ctx.Done()
	return stop()
}
