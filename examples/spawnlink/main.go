// Command spawnlink spawns a process on another node and links to it in one
// step — Mesh's Node.spawn_link(node, actor) — so that even a crash at once
// reaches the spawner. This process traps exits, so the crash arrives as a
// node.Exit message instead of killing it.
//
//	go run ./examples/spawnlink    # starts its partner node as a child process
//
// or, in two terminals:
//
//	go run ./examples/spawnlink -serve -name b@127.0.0.1:7001 -cookie secret
//	go run ./examples/spawnlink -peer b@127.0.0.1:7001 -cookie secret
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
		fmt.Fprintln(os.Stderr, "spawnlink:", err)
		os.Exit(1)
	}
}

// worker fails as soon as it starts: its error is its exit reason.
func worker(p *node.Process, args []any) error {
	return errors.New("worker gave up")
}

func run(cfg *pair.Config) error {
	n, err := node.Start(cfg.Name, cfg.Cookie)
	if err != nil {
		return err
	}
	n.Define("worker", worker)
	return pair.Drive(context.Background(), n, cfg, func(ctx context.Context, peer string) error {
		return n.Run(ctx, func(p *node.Process) error {
			p.TrapExit(true)
			pid, err := p.SpawnLink(peer, "worker")
			if err != nil {
				return err
			}
			fmt.Println("spawned and linked", pid)
			msg, err := p.Receive(ctx)
			if err != nil {
				return err
			}
			if exit, ok := msg.(node.Exit); ok && exit.From == pid {
				// A remote error travels as its text.
				fmt.Printf("linked worker exited: %v\n", exit.Reason)
			}
			return nil
		})
	})
}
