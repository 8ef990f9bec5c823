package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/meshrt/mesh/node"
)

// runConfig is one `meshbench run` command line.
type runConfig struct {
	nodes     int
	payload   int
	duration  time.Duration
	inProcess bool
	args      []string
}

// runRows are the default run's scenarios, in order, with their senders;
// baseline marks those followed by their raw crypto/tls baseline.
var runRows = []struct {
	scenario string
	senders  int
	baseline bool
}{
	{"throughput", 1, true},
	{"latency", 1, true},
	{"call", 4, false},
	{"spawn", 4, false},
	{"registry", 1, false},
	{"fanout", 1, false},
}

func parseRun(args []string, stdout io.Writer) (runConfig, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	c := runConfig{args: args}
	fs.IntVar(&c.nodes, "nodes", 3, "node processes")
	fs.IntVar(&c.payload, "payload", 64, "payload bytes per message")
	fs.DurationVar(&c.duration, "duration", 2*time.Second, "length of each scenario's measured phase")
	fs.BoolVar(&c.inProcess, "in-process", false, "run the nodes in this process instead of node processes")
	if err := parseFlags(fs, args, stdout); err != nil {
		return c, err
	}
	switch {
	case c.nodes < 2 || c.nodes > 64:
		return c, usagef("run: --nodes must be 2..64")
	case c.payload < 0 || c.payload > 1<<20:
		return c, usagef("run: --payload must be 0..1048576 bytes")
	case c.duration <= 0:
		return c, usagef("run: --duration must be positive")
	}
	return c, nil
}

// runDefault is `meshbench` and `meshbench run`: every scenario in turn on
// node processes on 127.0.0.1, one table.
func runDefault(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseRun(args, stdout)
	if err != nil {
		return err
	}
	cl, err := startCluster(ctx, clusterSpec{nodes: cfg.nodes, procs: !cfg.inProcess}, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	defer cl.close()
	cmd := strings.TrimSpace("meshbench run " + strings.Join(args, " "))
	fmt.Fprintf(stdout, "meshbench: %d nodes (%s, TLS 1.3) and a controller node, %d-byte payload, %v per scenario\n",
		len(cl.workers), cl.mode, cfg.payload, cfg.duration)
	fmt.Fprintf(stdout, "command: %s\nmachine: %s\n", cmd, machine())
	fmt.Fprintf(stdout, "nodes: %s\n\n", strings.Join(cl.workers, " "))

	phases := 0
	for _, r := range runRows {
		phases++
		if r.baseline {
			phases++
		}
	}
	prog := newProgress(stderr, time.Duration(phases)*cfg.duration)
	defer prog.finish()
	var rows []figures
	var ratios []string
	runErr := cl.ctl.Run(context.Background(), func(p *node.Process) error {
		for _, r := range runRows {
			s := spec{scenario: r.scenario, senders: r.senders, payload: cfg.payload, duration: cfg.duration, fanout: 8}
			f, err := runScenario(ctx, p, cl, s, prog.wait)
			rows = append(rows, f)
			if err != nil {
				return err
			}
			if !r.baseline {
				continue
			}
			b, err := runBaseline(ctx, p, cl, s, prog.wait)
			rows = append(rows, b)
			if err != nil {
				return err
			}
			if b.rate() > 0 {
				ratios = append(ratios, fmt.Sprintf("%s / %s: %.2fx", f.name, b.name, f.rate()/b.rate()))
			}
		}
		return nil
	})
	prog.finish()
	if runErr != nil && !errors.Is(runErr, errInterrupted) {
		return runErr
	}
	writeTable(stdout, rows)
	fmt.Fprintln(stdout)
	for _, r := range ratios {
		fmt.Fprintln(stdout, r)
	}
	fmt.Fprintln(stdout, "rows: throughput = 1 sender streaming to a sink on the next node (latency: one-way, 1 in 64 messages")
	fmt.Fprintln(stdout, "stamped); latency = 1 message in flight, round trip; call = 4 callers, Process.Call to a server on the")
	fmt.Fprintln(stdout, "next node, one call after the other (calls/s); spawn = 4 spawners, remote spawns one after the other;")
	fmt.Fprintln(stdout, "registry = global Register/Unregister; fanout = 1 publisher to 8 subscribers on the other nodes")
	fmt.Fprintln(stdout, "(deliveries/s, one-way latency). raw tls rows: crypto/tls alone between the same processes.")
	return runErr
}
