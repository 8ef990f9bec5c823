package main

// The cluster load run: node processes of this program on 127.0.0.1, a
// controller node in this process that connects them into a full mesh and
// drives them by remote spawns of the actors of nodecmd.go.

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

// setupBound bounds each setup step of a run (starting, connecting, one
// round of stats); the measured phase is bounded by -duration.
const setupBound = 30 * time.Second

// runCluster starts cfg.nodes node processes with a fresh random cookie,
// connects them into a full mesh, measures the remote spawn rate, then runs
// cfg.pairs pinger/ponger pairs, each pinger on one node and its ponger on
// the next, plus one 1-in-flight pinger timing round trips. It prints the
// messages each node received per second, the total, the spawn rate and the
// ping-pong latency. Every child process is stopped on every way out.
func runCluster(ctx context.Context, cfg loadConfig, args []string, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cookie := rand.Text()
	childErr := &lockedWriter{w: stderr}
	var children []*child
	defer func() { stopAll(children, 10*time.Second) }()
	setup, cancel := context.WithTimeout(ctx, setupBound)
	defer cancel()
	for i := range cfg.nodes {
		c, err := startChild(setup, exe, []string{"-name", fmt.Sprintf("n%d@127.0.0.1:0", i+1), "-cookie", cookie}, childErr)
		if err != nil {
			return fmt.Errorf("starting node process %d: %w", i+1, err)
		}
		children = append(children, c)
	}
	ctl, err := node.Start("meshbench@127.0.0.1:0", cookie)
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ctl.Stop(stopCtx)
	}()
	nodes := make([]string, len(children))
	for i, c := range children {
		nodes[i] = c.name
		if err := ctl.Connect(setup, c.name); err != nil {
			return err
		}
	}

	fmt.Fprintf(stdout, "meshbench: cluster run: %d node processes, %d pairs, window %d, %d-byte payload, %v\n",
		cfg.nodes, cfg.pairs, cfg.window, cfg.payload, cfg.duration)
	fmt.Fprintf(stdout, "command: %s\n", strings.Join(append([]string{"meshbench", "run"}, args...), " "))
	fmt.Fprintf(stdout, "machine: %s\n", machine())
	fmt.Fprintf(stdout, "nodes: %s (controller %s)\n", strings.Join(nodes, " "), ctl.Self())

	return ctl.Run(ctx, func(p *node.Process) error {
		if err := waitFullMesh(ctx, p, nodes); err != nil {
			return err
		}
		spawns, spawnTime, err := spawnRate(ctx, ctl, nodes, min(time.Second, cfg.duration))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "remote spawns: %d in %v = %.0f spawns/s (8 concurrent spawners)\n",
			spawns, spawnTime.Round(time.Millisecond), float64(spawns)/spawnTime.Seconds())

		payload := strings.Repeat("x", cfg.payload)
		var pingers []node.PID
		defer func() {
			for _, pid := range pingers {
				_ = p.Send(pid, atomStop) // quiet the cluster before it stops
			}
		}()
		for i := range cfg.pairs {
			pong, err := p.Spawn(nodes[(i+1)%len(nodes)], "echo")
			if err != nil {
				return err
			}
			ping, err := p.Spawn(nodes[i%len(nodes)], "pinger", pong, cfg.window, payload)
			if err != nil {
				return err
			}
			pingers = append(pingers, ping)
		}
		latPong, err := p.Spawn(nodes[1%len(nodes)], "echo")
		if err != nil {
			return err
		}
		lat, err := p.Spawn(nodes[0], "latency", latPong, payload)
		if err != nil {
			return err
		}

		before, err := stats(ctx, p, nodes)
		if err != nil {
			return err
		}
		start := time.Now()
		select {
		case <-time.After(cfg.duration):
		case <-ctx.Done():
			return ctx.Err()
		}
		after, err := stats(ctx, p, nodes)
		if err != nil {
			return err
		}
		elapsed := time.Since(start)
		if err := p.Send(lat, codec.Tuple{atomReport, p.Self()}); err != nil {
			return err
		}
		rep, err := receiveTuple(ctx, p, atomLatency, 4)
		if err != nil {
			return fmt.Errorf("latency report: %w", err)
		}

		var total int64
		for _, name := range nodes {
			d := after[name] - before[name]
			total += d
			fmt.Fprintf(stdout, "node %s: %d msgs in %v = %.0f msgs/s\n",
				name, d, elapsed.Round(time.Millisecond), float64(d)/elapsed.Seconds())
		}
		fmt.Fprintf(stdout, "messages: %d in %v = %.0f msgs/s (all nodes, every message received counted once)\n",
			total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
		samples, _ := rep[1].(int64)
		p50, _ := rep[2].(int64)
		p99, _ := rep[3].(int64)
		fmt.Fprintf(stdout, "ping-pong latency, 1 in flight %s -> %s under the load: p50 %v p99 %v (%d round trips)\n",
			nodes[0], nodes[1%len(nodes)], time.Duration(p50).Round(100*time.Nanosecond), time.Duration(p99).Round(100*time.Nanosecond), samples)
		return nil
	})
}

// waitFullMesh polls the nodes until each lists all the others and the
// controller: the mesh the controller's connections started is complete.
func waitFullMesh(ctx context.Context, p *node.Process, nodes []string) error {
	deadline := time.Now().Add(setupBound)
	for {
		all := true
		for _, name := range nodes {
			if _, err := p.Spawn(name, "stats", p.Self()); err != nil {
				return err
			}
		}
		for range nodes {
			t, err := receiveTuple(ctx, p, atomStats, 4)
			if err != nil {
				return err
			}
			peers, _ := t[3].([]any)
			all = all && len(peers) == len(nodes) // the others and the controller
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("meshbench: the node processes did not form a full mesh")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// spawnRate runs 8 goroutines spawning the noop actor round robin on nodes
// for d and returns how many spawns completed.
func spawnRate(ctx context.Context, ctl *node.Node, nodes []string, d time.Duration) (int64, time.Duration, error) {
	var (
		count   atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	start := time.Now()
	deadline := start.Add(d)
	for g := range 8 {
		wg.Go(func() {
			for i := g; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				if _, err := ctl.Spawn(nodes[i%len(nodes)], "noop"); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return count.Load(), time.Since(start), first
}

// stats asks every node for its received-message count.
func stats(ctx context.Context, p *node.Process, nodes []string) (map[string]int64, error) {
	for _, name := range nodes {
		if _, err := p.Spawn(name, "stats", p.Self()); err != nil {
			return nil, err
		}
	}
	got := make(map[string]int64, len(nodes))
	for range nodes {
		t, err := receiveTuple(ctx, p, atomStats, 4)
		if err != nil {
			return nil, err
		}
		name, _ := t[1].(string)
		got[name], _ = t[2].(int64)
	}
	return got, nil
}

// receiveTuple receives the next codec.Tuple of size elements tagged with
// tag, leaving other messages queued, within setupBound.
func receiveTuple(ctx context.Context, p *node.Process, tag codec.Atom, size int) (codec.Tuple, error) {
	ctx, cancel := context.WithTimeout(ctx, setupBound)
	defer cancel()
	m, err := p.ReceiveMatch(ctx, func(m any) bool {
		t, ok := m.(codec.Tuple)
		return ok && len(t) == size && t[0] == tag
	})
	if err != nil {
		return nil, err
	}
	return m.(codec.Tuple), nil
}

// machine describes where the run ran: Go's view of the CPU count and the
// platform, and the CPU model from /proc/cpuinfo where there is one.
func machine() string {
	s := fmt.Sprintf("%s/%s, GOMAXPROCS=%d, NumCPU=%d, %s", runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				return s + ", CPU: " + strings.TrimSpace(v)
			}
		}
	}
	return s
}
