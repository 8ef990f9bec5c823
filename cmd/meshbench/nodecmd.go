package main

// `meshbench node`: a long-running node process that other meshbench
// processes (a cluster run, the multi-process tests) drive by remote spawns of
// the actors defined here. Message shapes, all codec terms:
//
//	echo     any codec.Tuple{from PID, ...} is sent back to from, unchanged
//	sink     counts messages; codec.Tuple{"count", from} → codec.Tuple{"count", n int64}
//	crash    exits with an error at its first message, or at once given "now"
//	noop     returns at once (remote spawn rate)
//	pinger   args (target PID, window int, payload string): keeps window
//	         codec.Tuple{self, payload} in flight to an echo until it gets "stop"
//	latency  args (target PID, payload string): one ping in flight, timing
//	         each round trip; codec.Tuple{"report", from} →
//	         codec.Tuple{"latency", samples, p50 ns, p99 ns int64} and it ends
//	stats    args (replyTo PID): sends codec.Tuple{"stats", node, msgs int64,
//	         connected nodes []any} and ends
//	whereis  args (replyTo PID, names ...string): sends codec.Tuple{"whereis",
//	         node, []any{one per name: its PID in this node's replica of
//	         the global registry, or "undefined"}} and ends (the fault tests
//	         read every node's replica this way)
//
// Atoms are written as strings above; they are codec.Atom values.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

// Atoms of the meshbench actors' protocol.
const (
	atomCount   = codec.Atom("count")
	atomStop    = codec.Atom("stop")
	atomReport  = codec.Atom("report")
	atomLatency = codec.Atom("latency")
	atomStats   = codec.Atom("stats")
	atomWhereis = codec.Atom("whereis")
	atomUndef   = codec.Atom("undefined")
)

// errCrash is the exit reason of the crash actor.
var errCrash = errors.New("meshbench: crash actor crashed as asked")

type nodeConfig struct {
	name, cookie, listen string
	tick                 time.Duration
	stdin                bool
}

func parseNode(args []string, stderr io.Writer) (nodeConfig, error) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := nodeConfig{}
	fs.StringVar(&c.name, "name", "meshbench@127.0.0.1:0", "node name, name@host:port (port 0: a free port)")
	fs.StringVar(&c.cookie, "cookie", "meshbench", "the cluster's secret cookie")
	fs.StringVar(&c.listen, "listen", "", "address to bind if not the one the name advertises")
	fs.DurationVar(&c.tick, "tick", 15*time.Second, "tick timeout: how long a silent peer may stay quiet")
	fs.BoolVar(&c.stdin, "stdin", true, "stop at the end of stdin (the parent's death ends its children)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("node: unexpected arguments %q", fs.Args())
	}
	return c, nil
}

// runNode starts a node with the meshbench actors, prints its name as the
// first line of stdout and serves until ctx ends (SIGINT, SIGTERM) or, with
// -stdin, stdin ends; then it stops the node gracefully.
func runNode(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseNode(args, stderr)
	if err != nil {
		return err
	}
	opts := []node.Option{
		node.WithTickTimeout(cfg.tick),
		node.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}
	if cfg.listen != "" {
		opts = append(opts, node.WithListen(cfg.listen))
	}
	n, err := node.Start(cfg.name, cfg.cookie, opts...)
	if err != nil {
		return err
	}
	defineActors(n, &nodeStats{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.stdin {
		go func() {
			_, _ = io.Copy(io.Discard, bufio.NewReader(stdin))
			cancel()
		}()
	}
	if _, err := fmt.Fprintln(stdout, n.Self()); err != nil {
		cancel()
	}
	<-ctx.Done()
	stopCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	return n.Stop(stopCtx)
}

// nodeStats counts what the actors of one node process received.
type nodeStats struct {
	msgs atomic.Int64
}

// defineActors defines the meshbench actors on n. See the file comment for
// their protocol.
func defineActors(n *node.Node, st *nodeStats) {
	bg := context.Background()
	n.Define("echo", func(p *node.Process, _ []any) error {
		for {
			m, err := p.Receive(bg)
			if err != nil {
				return err
			}
			st.msgs.Add(1)
			if t, ok := m.(codec.Tuple); ok && len(t) > 0 {
				if from, ok := t[0].(node.PID); ok {
					if err := p.Send(from, m); err != nil {
						return err
					}
				}
			}
		}
	})
	n.Define("sink", func(p *node.Process, _ []any) error {
		var count int64
		for {
			m, err := p.Receive(bg)
			if err != nil {
				return err
			}
			if t, ok := m.(codec.Tuple); ok && len(t) == 2 && t[0] == atomCount {
				if from, ok := t[1].(node.PID); ok {
					if err := p.Send(from, codec.Tuple{atomCount, count}); err != nil {
						return err
					}
					continue
				}
			}
			count++
			st.msgs.Add(1)
		}
	})
	n.Define("crash", func(p *node.Process, args []any) error {
		if len(args) > 0 && args[0] == "now" {
			return errCrash
		}
		if _, err := p.Receive(bg); err != nil {
			return err
		}
		return errCrash
	})
	n.Define("noop", func(*node.Process, []any) error { return nil })
	n.Define("pinger", func(p *node.Process, args []any) error {
		target, window, payload, err := pingArgs(args)
		if err != nil {
			return err
		}
		ping := codec.Tuple{p.Self(), payload}
		for range window {
			if err := p.Send(target, ping); err != nil {
				return err
			}
		}
		for {
			m, err := p.Receive(bg)
			if err != nil {
				return err
			}
			if m == atomStop {
				return nil
			}
			st.msgs.Add(1)
			if err := p.Send(target, ping); err != nil {
				return err
			}
		}
	})
	n.Define("latency", func(p *node.Process, args []any) error {
		target, ok := firstPID(args)
		if !ok || len(args) != 2 {
			return errors.New("meshbench: latency wants args (target PID, payload string)")
		}
		payload, _ := args[1].(string)
		ping := codec.Tuple{p.Self(), payload}
		var rtts []int64
		for {
			start := time.Now()
			if err := p.Send(target, ping); err != nil {
				return err
			}
			m, err := p.Receive(bg)
			if err != nil {
				return err
			}
			if t, ok := m.(codec.Tuple); ok && len(t) == 2 && t[0] == atomReport {
				// The pong still in flight is dropped with this process.
				from, _ := t[1].(node.PID)
				p50, p99 := percentiles(rtts)
				return p.Send(from, codec.Tuple{atomLatency, int64(len(rtts)), p50, p99})
			}
			rtts = append(rtts, int64(time.Since(start)))
			st.msgs.Add(1)
		}
	})
	n.Define("stats", func(p *node.Process, args []any) error {
		replyTo, ok := firstPID(args)
		if !ok {
			return errors.New("meshbench: stats wants a reply-to PID")
		}
		var peers []any
		for _, name := range p.Node().List() {
			peers = append(peers, name)
		}
		if peers == nil {
			peers = []any{}
		}
		return p.Send(replyTo, codec.Tuple{atomStats, p.Node().Self(), st.msgs.Load(), peers})
	})
	n.Define("whereis", func(p *node.Process, args []any) error {
		replyTo, ok := firstPID(args)
		if !ok {
			return errors.New("meshbench: whereis wants args (replyTo PID, names ...string)")
		}
		found := make([]any, 0, len(args)-1)
		for _, a := range args[1:] {
			name, _ := a.(string)
			if pid, ok := p.Node().Global().Whereis(name); ok {
				found = append(found, pid)
			} else {
				found = append(found, atomUndef)
			}
		}
		return p.Send(replyTo, codec.Tuple{atomWhereis, p.Node().Self(), found})
	})
}

func firstPID(args []any) (node.PID, bool) {
	if len(args) == 0 {
		return node.PID{}, false
	}
	pid, ok := args[0].(node.PID)
	return pid, ok
}

// pingArgs reads (target PID, window int, payload string).
func pingArgs(args []any) (target node.PID, window int, payload string, err error) {
	bad := errors.New("meshbench: pinger wants args (target PID, window int, payload string)")
	if len(args) != 3 {
		return target, 0, "", bad
	}
	var ok1, ok2, ok3 bool
	target, ok1 = args[0].(node.PID)
	window, ok2 = args[1].(int)
	payload, ok3 = args[2].(string)
	if !ok1 || !ok2 || !ok3 || window < 1 {
		return target, 0, "", bad
	}
	return target, window, payload, nil
}

// percentiles returns the 50th and 99th percentiles of samples (nearest
// rank), or zeros for none. It sorts samples.
func percentiles(samples []int64) (p50, p99 int64) {
	if len(samples) == 0 {
		return 0, 0
	}
	slices.Sort(samples)
	rank := func(q float64) int64 {
		i := int(math.Ceil(q*float64(len(samples)))) - 1
		return samples[max(0, min(i, len(samples)-1))]
	}
	return rank(0.50), rank(0.99)
}
