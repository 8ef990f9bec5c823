package main

// Scenarios: what one measured phase runs on the workers and how their
// reports make one row of figures.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/nodeproc"
	"github.com/meshrt/mesh/node"
)

// scenarios are the names --scenario accepts, in the order run shows them.
var scenarios = []string{"throughput", "latency", "call", "spawn", "registry", "fanout"}

// scenarioUnit says what one operation of each scenario is.
var scenarioUnit = map[string]string{
	"throughput": "messages received (one-way streams, sender i on node i, its sink on the next node)",
	"latency":    "round trips (one message in flight per sender, to an echo on the next node)",
	"call":       "calls (Process.Call, one after the other per caller, to a server on the next node that replies with the request)",
	"spawn":      "remote spawns (one after the other per sender, of an actor that returns at once)",
	"registry":   "global registry operations (Register then Unregister of fresh names)",
	"fanout":     "deliveries (each message published to a process group of --fanout subscribers spread over the other nodes)",
}

// spec is one scenario's parameters.
type spec struct {
	scenario string
	senders  int
	payload  int
	duration time.Duration
	fanout   int // subscribers per publisher (fanout)
	// fromFirst puts every sender on the first node and every peer of a
	// sender (sink, echo, spawn target) on the second, as compare does for
	// every system; otherwise sender i runs on node i and its peer on the
	// next node.
	fromFirst bool
}

// figures are one row: what the workers reported for one phase.
type figures struct {
	name   string // the row's label
	ops    int64
	errors int64
	span   time.Duration
	hist   *hdrhistogram.Histogram // nil: no latency samples
	// bytesPerOp is the payload carried by one operation (MB/s); 0: none.
	bytesPerOp int
	partial    bool // the phase was interrupted
}

func (f figures) rate() float64 {
	if f.span <= 0 {
		return 0
	}
	return float64(f.ops) / f.span.Seconds()
}

func (f figures) mbPerSec() float64 { return f.rate() * float64(f.bytesPerOp) / 1e6 }

// quantileUS returns the latency at quantile q (0..100) in microseconds, or
// -1 without samples.
func (f figures) quantileUS(q float64) float64 {
	if f.hist == nil || f.hist.TotalCount() == 0 {
		return -1
	}
	if q >= 100 {
		return float64(f.hist.Max()) / 1e3
	}
	return float64(f.hist.ValueAtPercentile(q)) / 1e3
}

// waiter waits out a measured phase of d (showing progress under label) and
// reports whether ctx ended first.
type waiter func(ctx context.Context, label string, d time.Duration) (interrupted bool)

// phase is one measured run on the workers: the actors started, the
// reports they will send.
type phase struct {
	run     int64
	expect  int        // reports to collect
	sinks   []node.PID // told to give up if their senders' ends never come
	workers []string   // nodes to tell to stop
}

// newRun returns a fresh run id.
func newRun() int64 { return rand.Int64N(1<<62) + 1 }

// runPhase starts a phase with start, waits it out, stops it and collects
// its reports (after an interrupt too: the figures so far). The setup and
// collection are bounded by setupBound and not cut short by ctx.
func runPhase(ctx context.Context, p *node.Process, cl *cluster, label string, d time.Duration, wait waiter,
	start func(ctx context.Context, ph *phase) error) ([]nodeproc.Report, bool, error) {
	setup, cancel := context.WithTimeout(context.Background(), setupBound)
	defer cancel()
	ph := &phase{run: newRun(), workers: cl.workers}
	startErr := start(setup, ph)
	interrupted := false
	if startErr == nil {
		interrupted = wait(ctx, label, d)
	}
	stopWorkers(p, ph)
	// The reports: within setupBound of the stop, telling the sinks to
	// give up on a missing sender's end marker after a third of it.
	collect, cancelCollect := context.WithTimeout(context.Background(), setupBound)
	defer cancelCollect()
	var reps []nodeproc.Report
	abortAt := time.Now().Add(setupBound / 3)
	for len(reps) < ph.expect {
		rctx, rcancel := context.WithDeadline(collect, abortAt)
		m, err := p.ReceiveMatch(rctx, func(m any) bool {
			r, ok := nodeproc.ParseReport(m)
			return ok && r.Run == ph.run
		})
		rcancel()
		if err != nil {
			if collect.Err() == nil {
				for _, s := range ph.sinks { // a sender is gone: take what arrived
					_ = p.Send(s, codec.Tuple{nodeproc.AtomAbort})
				}
				ph.sinks = nil
				abortAt = time.Now().Add(setupBound)
				continue
			}
			return reps, interrupted, fmt.Errorf("%s: %d of %d workers reported: %w", label, len(reps), ph.expect, errors.Join(startErr, err))
		}
		r, _ := nodeproc.ParseReport(m)
		reps = append(reps, r)
	}
	return reps, interrupted, startErr
}

// stopWorkers tells every worker node to stop ph's run. A node whose
// connection to this one was lost meanwhile (a node cuts a peer that reads
// too slowly: a flood of global registry operations can do that to a
// controller starved of CPU) is asked again, Spawn dialling it anew, until
// it answers or setupBound/3 has passed: a worker never told to stop would
// never report.
func stopWorkers(p *node.Process, ph *phase) {
	deadline := time.Now().Add(setupBound / 3)
	for _, w := range ph.workers {
		for {
			_, err := p.Spawn(w, "stop", ph.run)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// spawnWorker spawns actor on w with args and counts one report to expect.
func (ph *phase) spawn(p *node.Process, w, actor string, args ...any) (node.PID, error) {
	pid, err := p.Spawn(w, actor, args...)
	if err != nil {
		return pid, fmt.Errorf("spawn %s on %s: %w", actor, w, err)
	}
	ph.expect++
	return pid, nil
}

// runScenario runs one scenario on the cluster's workers and returns its
// figures.
func runScenario(ctx context.Context, p *node.Process, cl *cluster, s spec, wait waiter) (figures, error) {
	ws := cl.workers
	k := len(ws)
	on := func(i int) string { return ws[i%k] }
	next := func(i int) string { return ws[(i+1)%k] }
	if s.fromFirst {
		on = func(int) string { return ws[0] }
		next = func(int) string { return ws[1%k] }
	}
	f := figures{name: s.scenario}
	var reps []nodeproc.Report
	var interrupted bool
	var err error
	switch s.scenario {
	case "throughput", "fanout":
		f.bytesPerOp = s.payload
		reps, interrupted, err = runPhase(ctx, p, cl, s.scenario, s.duration, wait, func(setup context.Context, ph *phase) error {
			for i := range s.senders {
				var sinks []any
				if s.scenario == "throughput" {
					sink, err := ph.spawn(p, next(i), "lsink", ph.run, p.Self(), 1)
					if err != nil {
						return err
					}
					sinks = append(sinks, sink)
					ph.sinks = append(ph.sinks, sink)
					if _, err := ph.spawn(p, on(i), "lsend", ph.run, p.Self(), sinks, s.payload, stampEvery); err != nil {
						return err
					}
					continue
				}
				// fanout: publisher i's subscribers join its group, and
				// it publishes to the group (what a user of Groups does).
				group := fmt.Sprintf("meshbench-%x-%d", ph.run, i)
				for j := range s.fanout {
					w := ws[(i+1+j%max(1, k-1))%k] // the other nodes in turn (this one if alone)
					sink, err := ph.spawn(p, w, "lsink", ph.run, p.Self(), 1, group)
					if err != nil {
						return err
					}
					sinks = append(sinks, sink)
					ph.sinks = append(ph.sinks, sink)
				}
				if _, err := ph.spawn(p, on(i), "lsend", ph.run, p.Self(), sinks, s.payload, stampEvery, group); err != nil {
					return err
				}
			}
			if s.scenario == "fanout" {
				// The measured phase starts once every publisher sees
				// its subscribers in its group and publishes.
				for range s.senders {
					if _, err := receiveMatch(setup, p, func(t codec.Tuple) bool {
						return len(t) == 2 && t[0] == nodeproc.AtomReady && t[1] == ph.run
					}); err != nil {
						return fmt.Errorf("fanout: waiting for the publishers' groups: %w", err)
					}
				}
			}
			return nil
		})
		var sent int64
		for _, r := range reps {
			switch r.Role {
			case "sink":
				f.ops += r.Ops
				f.span = max(f.span, r.Span)
				f.hist = merge(f.hist, r.Hist)
				sent += r.Extra
			case "send":
				f.errors += r.Errors
			}
		}
		if lost := sent - f.ops; lost > 0 && !interrupted {
			f.errors += lost
		}
	case "latency":
		f.bytesPerOp = 2 * s.payload
		var echoes []node.PID
		defer func() {
			for _, e := range echoes {
				_ = p.Exit(e, node.Kill)
			}
		}()
		reps, interrupted, err = runPhase(ctx, p, cl, s.scenario, s.duration, wait, func(_ context.Context, ph *phase) error {
			for i := range s.senders {
				echo, err := p.Spawn(next(i), "echo")
				if err != nil {
					return err
				}
				echoes = append(echoes, echo)
				if _, err := ph.spawn(p, on(i), "lping", ph.run, p.Self(), echo, s.payload); err != nil {
					return err
				}
			}
			return nil
		})
		f.add(reps)
	case "call":
		f.bytesPerOp = 2 * s.payload
		var servers []node.PID
		defer func() {
			for _, sv := range servers {
				_ = p.Exit(sv, node.Kill)
			}
		}()
		reps, interrupted, err = runPhase(ctx, p, cl, s.scenario, s.duration, wait, func(_ context.Context, ph *phase) error {
			for i := range s.senders {
				server, err := p.Spawn(next(i), "server")
				if err != nil {
					return err
				}
				servers = append(servers, server)
				if _, err := ph.spawn(p, on(i), "lcall", ph.run, p.Self(), server, s.payload); err != nil {
					return err
				}
			}
			return nil
		})
		f.add(reps)
	case "spawn":
		reps, interrupted, err = runPhase(ctx, p, cl, s.scenario, s.duration, wait, func(_ context.Context, ph *phase) error {
			for i := range s.senders {
				if _, err := ph.spawn(p, on(i), "lspawn", ph.run, p.Self(), next(i)); err != nil {
					return err
				}
			}
			return nil
		})
		f.add(reps)
	case "registry":
		reps, interrupted, err = runPhase(ctx, p, cl, s.scenario, s.duration, wait, func(_ context.Context, ph *phase) error {
			for i := range s.senders {
				prefix := fmt.Sprintf("meshbench-%x-%d-", ph.run, i)
				if _, err := ph.spawn(p, on(i), "lreg", ph.run, p.Self(), prefix); err != nil {
					return err
				}
			}
			return nil
		})
		f.add(reps)
	default:
		return f, usagef("bench: unknown scenario %q", s.scenario)
	}
	f.partial = interrupted
	if err == nil && interrupted {
		err = errInterrupted
	}
	return f, err
}

// stampEvery: one message in this many carries its send time (the sink's
// one-way latency samples); the others are the bare payload.
const stampEvery = 64

// add sums operation reports: ops and errors added, the longest span, the
// histograms merged.
func (f *figures) add(reps []nodeproc.Report) {
	for _, r := range reps {
		f.ops += r.Ops
		f.errors += r.Errors
		f.span = max(f.span, r.Span)
		f.hist = merge(f.hist, r.Hist)
	}
}

func merge(dst, src *hdrhistogram.Histogram) *hdrhistogram.Histogram {
	if src == nil {
		return dst
	}
	if dst == nil {
		dst = nodeproc.NewHistogram()
	}
	dst.Merge(src)
	return dst
}

// runBaseline runs the raw crypto/tls baseline of a scenario (throughput:
// one stream through a queue; latency: one frame in flight) between the
// same two workers as the scenario's first sender and its peer.
func runBaseline(ctx context.Context, p *node.Process, cl *cluster, s spec, wait waiter) (figures, error) {
	ws := cl.workers
	from, to := ws[0], ws[1%len(ws)]
	mode, sender, label := "count", "rawsend", "raw tls stream"
	f := figures{bytesPerOp: s.payload}
	if s.scenario == "latency" {
		mode, sender, label = "echo", "rawping", "raw tls ping-pong"
		f.bytesPerOp = 2 * s.payload
	}
	f.name = label
	reps, interrupted, err := runPhase(ctx, p, cl, label, s.duration, wait, func(setup context.Context, ph *phase) error {
		if _, err := p.Spawn(to, "rawsink", ph.run, p.Self(), hostOf(to), mode); err != nil {
			return err
		}
		if mode == "count" {
			ph.expect++
		}
		t, err := receiveMatch(setup, p, func(t codec.Tuple) bool {
			return len(t) == 3 && t[0] == nodeproc.AtomRawAddr && t[1] == ph.run
		})
		if err != nil {
			return fmt.Errorf("raw sink address: %w", err)
		}
		addr, _ := t[2].(string)
		_, err = ph.spawn(p, from, sender, ph.run, p.Self(), addr, s.payload)
		return err
	})
	for _, r := range reps {
		f.errors += r.Errors
		switch r.Role {
		case "rawsink":
			f.ops, f.span = r.Ops, r.Span
		case "rawping":
			f.ops, f.span, f.hist = r.Ops, r.Span, r.Hist
		}
	}
	f.partial = interrupted
	if err == nil && interrupted {
		err = errInterrupted
	}
	return f, err
}
