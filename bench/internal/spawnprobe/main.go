// Command spawnprobe times remote spawns and ping-pongs, one at a time,
// from a node in this process to a bench/internal/nodepeer process: the
// spawn's cost beside a round trip's, in one run (docs/latency.md, "Remote
// spawn: idle starters").
//
//	go build -o /tmp/np ./bench/internal/nodepeer
//	go build -o /tmp/sp ./bench/internal/spawnprobe
//	/tmp/sp -peer /tmp/np -n 20000 -mode spawn,pingpong,spawn,pingpong
//
// Each mode prints its rate and the p50 and p99 of one operation. The
// warm-up runs only the modes asked for, and their order matters: once the
// echo process on the peer has answered a ping, its next wait reads the
// link itself (inline reading), so the spawn requests that follow are read
// there too, off the peer's loop; with -mode spawn alone the peer's loop
// reads every request. -trace writes an execution trace of the measured
// part (NODEPEER_TRACE=file does the same for the peer, which inherits the
// environment).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime/trace"
	"slices"
	"strings"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

func main() {
	peerBin := flag.String("peer", "", "the nodepeer binary (required)")
	n := flag.Int("n", 20000, "operations per mode")
	modes := flag.String("mode", "spawn,pingpong", "comma list of spawn, spawnspin and pingpong, run in order")
	spin := flag.Int("spin", 1000, "spawnspin: microseconds each spawned process computes without parking")
	traceFile := flag.String("trace", "", "write an execution trace of the measured part here")
	echoFirst := flag.Bool("echo", true, "spawn the echo process even when no pingpong mode runs (it stays parked on the peer, and no read duty lingers there)")
	flag.Parse()
	if *peerBin == "" || *n <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*peerBin, *n, strings.Split(*modes, ","), *traceFile, *echoFirst, *spin); err != nil {
		log.Fatal(err)
	}
}

func run(peerBin string, n int, modes []string, traceFile string, echoFirst bool, spin int) error {
	cmd := exec.Command(peerBin, "-cookie", "bench")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("peer did not start: %w", err)
	}
	peer := strings.TrimSpace(strings.TrimPrefix(line, "NAME "))
	nd, err := node.Start("probe@127.0.0.1:0", "bench")
	if err != nil {
		return err
	}
	defer func() { _ = nd.Stop(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nd.Connect(ctx, peer); err != nil {
		return err
	}
	return nd.Run(context.Background(), func(p *node.Process) error {
		var echo node.PID
		if echoFirst || slices.Contains(modes, "pingpong") {
			var err error
			if echo, err = p.Spawn(peer, "echo"); err != nil {
				return err
			}
		}
		msg := any(codec.Tuple{p.Self(), strings.Repeat("m", 64)})
		ops := map[string]func() error{
			"spawn":     func() error { _, err := p.Spawn(peer, "noop"); return err },
			"spawnspin": func() error { _, err := p.Spawn(peer, "spin", spin); return err },
			"pingpong": func() error {
				if err := p.Send(echo, msg); err != nil {
					return err
				}
				_, err := p.Receive(context.Background())
				return err
			},
		}
		for _, m := range modes {
			if ops[m] == nil {
				return fmt.Errorf("unknown mode %q", m)
			}
		}
		for range 1000 { // warm-up: only the modes asked for (see the top)
			for _, m := range modes {
				if err := ops[m](); err != nil {
					return err
				}
			}
		}
		if traceFile != "" {
			f, err := os.Create(traceFile)
			if err != nil {
				return err
			}
			if err := trace.Start(f); err != nil {
				return err
			}
			defer func() { trace.Stop(); _ = f.Close() }()
		}
		lat := make([]time.Duration, n)
		for _, m := range modes {
			op := ops[m]
			t0 := time.Now()
			for i := range lat {
				s := time.Now()
				if err := op(); err != nil {
					return err
				}
				lat[i] = time.Since(s)
			}
			el := time.Since(t0)
			slices.Sort(lat)
			fmt.Printf("%-9s %7.0f ops/s p50 %6.1f us p99 %6.1f us\n", m, float64(n)/el.Seconds(),
				us(lat[n/2]), us(lat[n*99/100]))
		}
		return nil
	})
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
