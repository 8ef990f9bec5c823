package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshrt/mesh/node"
)

// loadConfig is what one load run does.
type loadConfig struct {
	mode     string        // "cluster" (node processes) or "local" (one node)
	nodes    int           // node processes of a cluster run
	pairs    int           // ping-pong pairs
	duration time.Duration // how long the measured phase runs
	payload  int           // bytes of string payload per message
	window   int           // messages each pinger keeps in flight
}

func parseLoad(args []string, stderr io.Writer) (loadConfig, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := loadConfig{}
	fs.StringVar(&c.mode, "mode", "cluster", "cluster: node processes on 127.0.0.1 in a full mesh; local: one node in this process")
	fs.IntVar(&c.nodes, "nodes", 3, "node processes of a cluster run")
	fs.IntVar(&c.pairs, "pairs", 2*runtime.GOMAXPROCS(0), "ping-pong process pairs")
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "length of the measured run")
	fs.IntVar(&c.payload, "payload", 64, "payload bytes per message")
	fs.IntVar(&c.window, "window", 64, "messages each pinger keeps in flight")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.mode != "cluster" && c.mode != "local":
		return c, fmt.Errorf("-mode must be cluster or local")
	case c.nodes < 1 || c.nodes > 64:
		return c, fmt.Errorf("-nodes must be 1..64")
	case c.pairs < 1:
		return c, fmt.Errorf("-pairs must be at least 1")
	case c.duration <= 0:
		return c, fmt.Errorf("-duration must be positive")
	case c.payload < 0 || c.payload > 1<<20:
		return c, fmt.Errorf("-payload must be 0..1MiB")
	case c.window < 1 || c.window > 1<<16:
		return c, fmt.Errorf("-window must be 1..65536")
	}
	return c, nil
}

// runLoad runs a load run: a cluster run (see runCluster) or, with
// -mode=local, a run on one node in this process (see runLocal).
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseLoad(args, stderr)
	if err != nil {
		return err
	}
	if cfg.mode == "local" {
		return runLocal(ctx, cfg, args, stdout)
	}
	return runCluster(ctx, cfg, args, stdout, stderr)
}

// runLocal runs pairs of processes on one node: each pinger keeps window
// messages in flight to its ponger, which echoes every one back. It reports
// messages per second (each echo counts as two messages) over the measured
// phase.
func runLocal(ctx context.Context, cfg loadConfig, args []string, stdout io.Writer) error {
	n, err := node.Start("meshbench@127.0.0.1:0", "meshbench")
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Stop(stopCtx)
	}()

	var payload any = strings.Repeat("x", cfg.payload)
	var echoed atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()

	for range cfg.pairs {
		pong := n.SpawnFunc(func(p *node.Process) error {
			for {
				m, err := p.Receive(context.Background())
				if err != nil {
					return err
				}
				if err := p.Send(m.(node.PID), payload); err != nil {
					return err
				}
			}
		})
		n.SpawnFunc(func(p *node.Process) error {
			var self any = p.Self()
			for range cfg.window {
				if err := p.Send(pong, self); err != nil {
					return err
				}
			}
			for runCtx.Err() == nil {
				if _, err := p.Receive(context.Background()); err != nil {
					return err
				}
				echoed.Add(1)
				if err := p.Send(pong, self); err != nil {
					return err
				}
			}
			return nil
		})
	}
	fmt.Fprintf(stdout, "meshbench: local run on %s: %d pairs, window %d, %d-byte payload, %v (GOMAXPROCS=%d)\n",
		n.Self(), cfg.pairs, cfg.window, cfg.payload, cfg.duration, runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "command: %s\n", strings.Join(append([]string{"meshbench", "run"}, args...), " "))
	fmt.Fprintf(stdout, "machine: %s\n", machine())
	start := time.Now()
	<-runCtx.Done()
	elapsed := time.Since(start)
	msgs := 2 * echoed.Load()
	fmt.Fprintf(stdout, "messages: %d in %v = %.0f msgs/s\n", msgs, elapsed.Round(time.Millisecond), float64(msgs)/elapsed.Seconds())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}
