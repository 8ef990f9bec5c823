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
// reads every request. -tail prints each mode's mean and far tail, this
// process's CPU an operation and the host's steal. -trace writes an
// execution trace of the measured part (NODEPEER_TRACE=file does the same
// for the peer, which inherits the environment).
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

	"github.com/meshrt/mesh/bench/internal/hoststat"
	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

func main() {
	peerBin := flag.String("peer", "", "the nodepeer binary (required)")
	n := flag.Int("n", 20000, "operations per mode")
	modes := flag.String("mode", "spawn,pingpong", "comma list of spawn, spawnspin and pingpong, run in order")
	spin := flag.Int("spin", 1000, "spawnspin: microseconds each spawned process computes without parking")
	traceFile := flag.String("trace", "", "write an execution trace of the measured part here")
	tail := flag.Bool("tail", false, "print each mode's tail too: mean, p90, p99.9, max, how many operations took over 200 us and 1 ms and what share of the mode's time they took, this process's CPU an operation and the host's steal")
	pingOnce := flag.Bool("ping1", false, "after the warm-up, ping the echo process once (with -echo and no pingpong mode), to see whether one answered ping leaves the echo holding the link's read duty as the alternating warm-up of spawn,pingpong does (it did not: docs/latency.md, \"where the busy spawn's tail waits\")")
	echoFirst := flag.Bool("echo", true, "spawn the echo process even when no pingpong mode runs (it stays parked on the peer, and no read duty lingers there)")
	flag.Parse()
	if *peerBin == "" || *n <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*peerBin, *n, strings.Split(*modes, ","), *traceFile, *echoFirst, *spin, *tail, *pingOnce); err != nil {
		log.Fatal(err)
	}
}

func run(peerBin string, n int, modes []string, traceFile string, echoFirst bool, spin int, tail, pingOnce bool) error {
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
		if pingOnce && echo != (node.PID{}) {
			if err := p.Send(echo, msg); err != nil {
				return err
			}
			if _, err := p.Receive(context.Background()); err != nil {
				return err
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
			c0, _ := hoststat.CPU()
			st0, _ := hoststat.Now()
			t0 := time.Now()
			for i := range lat {
				s := time.Now()
				if err := op(); err != nil {
					return err
				}
				lat[i] = time.Since(s)
			}
			el := time.Since(t0)
			c1, _ := hoststat.CPU()
			st1, _ := hoststat.Now()
			slices.Sort(lat)
			fmt.Printf("%-9s %7.0f ops/s p50 %6.1f us p99 %6.1f us\n", m, float64(n)/el.Seconds(),
				us(lat[n/2]), us(lat[n*99/100]))
			if tail {
				printTail(m, lat, el)
				steal, _ := st1.StealSince(st0)
				fmt.Printf("%-9s this process's CPU %.1f us/op; the host stole %.2f%% of the vCPUs' time\n",
					m, us((c1-c0)/time.Duration(n)), steal)
			}
		}
		return nil
	})
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// printTail prints the tail of one mode's sorted latencies: a mean far
// above the p50 means a few operations waited long, and the share of the
// mode's time they took says how much of the rate they cost.
func printTail(m string, lat []time.Duration, el time.Duration) {
	n := len(lat)
	var sum, over200, over1ms time.Duration
	var n200, n1ms int
	for _, d := range lat {
		sum += d
		if d > 200*time.Microsecond {
			n200++
			over200 += d
		}
		if d > time.Millisecond {
			n1ms++
			over1ms += d
		}
	}
	fmt.Printf("%-9s tail: mean %6.1f p90 %6.1f p99.9 %7.1f max %8.1f us; >200us %d (%.1f%% of time) >1ms %d (%.1f%% of time)\n",
		m, us(sum/time.Duration(n)), us(lat[n*90/100]), us(lat[n*999/1000]), us(lat[n-1]),
		n200, 100*float64(over200)/float64(el), n1ms, 100*float64(over1ms)/float64(el))
}
