// Command nodepeer is the far node of bench/remote_test.go's two-process
// benchmarks: a Mesh node that prints "NAME <node name>" on its first line
// and serves until its stdin closes.
//
// Actors it defines:
//
//	sink(replyTo PID, count int)  receives count messages, then sends "done" to replyTo
//	echo()                        answers every codec.Tuple{from PID, payload} with payload
//	noop()                        returns at once (for spawn rates)
//	spin(us int)                  computes for us microseconds without parking, then returns
//
// Usage: nodepeer -cookie c [-cpuprofile file] (or NODEPEER_CPUPROFILE=file;
// NODEPEER_TRACE=file writes an execution trace)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"time"

	"github.com/meshrt/mesh/bench/internal/sockbuf"
	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

func main() {
	cookie := flag.String("cookie", "bench", "cluster cookie")
	cpuprofile := flag.String("cpuprofile", os.Getenv("NODEPEER_CPUPROFILE"), "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if tf := os.Getenv("NODEPEER_TRACE"); tf != "" {
		f, err := os.Create(tf)
		if err != nil {
			log.Fatal(err)
		}
		if err := trace.Start(f); err != nil {
			log.Fatal(err)
		}
		defer trace.Stop()
	}
	opts, err := sockbuf.Options()
	if err != nil {
		log.Fatal(err)
	}
	// Warnings only: the peer's INFO lines (peer up, down) would land among
	// the benchmark's result lines, which share its terminal.
	opts = append(opts, node.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	n, err := node.Start("peer@127.0.0.1:0", *cookie, opts...)
	if err != nil {
		log.Fatal(err)
	}
	n.Define("sink", func(p *node.Process, args []any) error {
		replyTo, count := args[0].(node.PID), args[1].(int)
		for range count {
			if _, err := p.Receive(context.Background()); err != nil {
				return err
			}
		}
		return p.Send(replyTo, "done")
	})
	n.Define("echo", func(p *node.Process, _ []any) error {
		for {
			m, err := p.Receive(context.Background())
			if err != nil {
				return err
			}
			t := m.(codec.Tuple)
			if err := p.Send(t[0].(node.PID), t[1]); err != nil {
				return err
			}
		}
	})
	n.Define("noop", func(*node.Process, []any) error { return nil })
	n.Define("spin", func(_ *node.Process, args []any) error {
		end := time.Now().Add(time.Duration(args[0].(int)) * time.Microsecond)
		for time.Now().Before(end) {
			// The clock read is the work.
		}
		return nil
	})
	fmt.Printf("NAME %s\n", n.Self())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.Stop(ctx)
}
