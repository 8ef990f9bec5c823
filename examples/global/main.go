// Command global names a process cluster-wide — Mesh's Global.register,
// Global.whereis and Global.unregister. Every node holds the whole registry,
// so Whereis is a local lookup that never touches the network; a name
// registered on one node shows up on the others as soon as the news arrives.
//
//	go run ./examples/global    # starts its partner node as a child process
//
// or, in two terminals:
//
//	go run ./examples/global -serve -name b@127.0.0.1:7001 -cookie secret
//	go run ./examples/global -peer b@127.0.0.1:7001 -cookie secret
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/examples/internal/pair"
	"github.com/meshrt/mesh/node"
)

func main() {
	if err := run(pair.Parse()); err != nil {
		fmt.Fprintln(os.Stderr, "global:", err)
		os.Exit(1)
	}
}

// clock registers itself as "clock" and answers every {PID} request with
// the time on its node.
func clock(p *node.Process, args []any) error {
	if err := p.Node().Global().Register("clock", p.Self()); err != nil {
		return err
	}
	for {
		msg, err := p.Receive(context.Background())
		if err != nil {
			return err
		}
		if req, ok := msg.(codec.Tuple); ok && len(req) == 1 {
			if from, ok := req[0].(node.PID); ok {
				p.Send(from, "the time on "+p.Node().Self()+" is "+time.Now().Format(time.TimeOnly))
			}
		}
	}
}

func run(cfg *pair.Config) error {
	n, err := node.Start(cfg.Name, cfg.Cookie)
	if err != nil {
		return err
	}
	n.Define("clock", clock)
	return pair.Drive(context.Background(), n, cfg, func(ctx context.Context, peer string) error {
		return n.Run(ctx, func(p *node.Process) error {
			if _, err := p.Spawn(peer, "clock"); err != nil {
				return err
			}
			// The clock registers itself over there; wait for the news here.
			pid, ok := n.Global().Whereis("clock")
			for ; !ok && ctx.Err() == nil; pid, ok = n.Global().Whereis("clock") {
				time.Sleep(5 * time.Millisecond)
			}
			fmt.Println("whereis clock:", pid, ok)
			if err := p.Send(pid, codec.Tuple{p.Self()}); err != nil {
				return err
			}
			answer, err := p.Receive(ctx)
			if err != nil {
				return err
			}
			fmt.Println("clock says:", answer)

			// Any node may unregister a name; it is gone here at once.
			if err := n.Global().Unregister("clock"); err != nil {
				return err
			}
			_, ok = n.Global().Whereis("clock")
			fmt.Println("after unregister, whereis clock:", ok)
			return nil
		})
	})
}
