// Command spawn starts a process on another node by the name of an actor that
// node defined — Mesh's Node.spawn(node, actor). Defined names are a node's
// allow-list: spawning any other name fails with node.ErrUnknownActor.
//
//	go run ./examples/spawn    # starts its partner node as a child process
//
// or, in two terminals:
//
//	go run ./examples/spawn -serve -name b@127.0.0.1:7001 -cookie secret
//	go run ./examples/spawn -peer b@127.0.0.1:7001 -cookie secret
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/meshrt/mesh/examples/internal/pair"
	"github.com/meshrt/mesh/node"
)

func main() {
	if err := run(pair.Parse()); err != nil {
		fmt.Fprintln(os.Stderr, "spawn:", err)
		os.Exit(1)
	}
}

// greeter answers the process that spawned it, wherever that runs.
func greeter(p *node.Process, args []any) error {
	replyTo, who := args[0].(node.PID), args[1].(string)
	return p.Send(replyTo, fmt.Sprintf("hello %s, from %s", who, p.Node().Self()))
}

func run(cfg *pair.Config) error {
	n, err := node.Start(cfg.Name, cfg.Cookie)
	if err != nil {
		return err
	}
	n.Define("greeter", greeter) // both nodes run this program, so both define it
	return pair.Drive(context.Background(), n, cfg, func(ctx context.Context, peer string) error {
		return n.Run(ctx, func(p *node.Process) error {
			// Spawn connects to peer if it is not connected yet.
			pid, err := p.Spawn(peer, "greeter", p.Self(), "world")
			if err != nil {
				return err
			}
			fmt.Println("spawned", pid)
			reply, err := p.Receive(ctx)
			if err != nil {
				return err
			}
			fmt.Println("got:", reply)

			_, err = p.Spawn(peer, "no-such-actor")
			fmt.Println("spawning an undefined actor is refused:", errors.Is(err, node.ErrUnknownActor))
			return nil
		})
	})
}
