// Command monitornode watches another node — Mesh's Node.monitor(name): when
// that node goes down (stops, crashes, or falls silent past the tick timeout)
// the watching process receives node.NodeDown. Here it asks the partner to
// stop, through its "halt" actor.
//
//	go run ./examples/monitornode    # starts its partner node as a child process
//
// or, in two terminals:
//
//	go run ./examples/monitornode -serve -name b@127.0.0.1:7001 -cookie secret
//	go run ./examples/monitornode -peer b@127.0.0.1:7001 -cookie secret
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/meshrt/mesh/examples/internal/pair"
	"github.com/meshrt/mesh/node"
)

func main() {
	if err := run(pair.Parse()); err != nil {
		fmt.Fprintln(os.Stderr, "monitornode:", err)
		os.Exit(1)
	}
}

func run(cfg *pair.Config) error {
	n, err := node.Start(cfg.Name, cfg.Cookie, node.WithTickTimeout(2*time.Second))
	if err != nil {
		return err
	}
	serving, halt := context.WithCancel(context.Background())
	defer halt()
	// halt stops the node it runs on when told to: Serve returns and stops
	// the node gracefully.
	n.Define("halt", func(p *node.Process, _ []any) error {
		if _, err := p.Receive(context.Background()); err != nil {
			return err
		}
		halt()
		return nil
	})
	return pair.Drive(serving, n, cfg, func(ctx context.Context, peer string) error {
		if err := n.Connect(ctx, peer); err != nil {
			return err
		}
		return n.Run(ctx, func(p *node.Process) error {
			if err := p.MonitorNode(peer); err != nil {
				return err
			}
			fmt.Println("monitoring", peer)
			pid, err := p.Spawn(peer, "halt")
			if err != nil {
				return err
			}
			if err := p.Send(pid, "now"); err != nil {
				return err
			}
			msg, err := p.Receive(ctx)
			if err != nil {
				return err
			}
			if down, ok := msg.(node.NodeDown); ok {
				fmt.Println("nodedown:", down.Node)
			}
			return nil
		})
	})
}
