// Command connect connects two nodes — Mesh's Node.connect(name). Both prove
// the same cookie to each other; a wrong cookie gives node.ErrAuth.
//
//	go run ./examples/connect    # starts its partner node as a child process
//
// or, in two terminals:
//
//	go run ./examples/connect -serve -name b@127.0.0.1:7001 -cookie secret
//	go run ./examples/connect -peer b@127.0.0.1:7001 -cookie secret
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/meshrt/mesh/examples/internal/pair"
	"github.com/meshrt/mesh/node"
)

func main() {
	if err := run(pair.Parse()); err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
}

func run(cfg *pair.Config) error {
	n, err := node.Start(cfg.Name, cfg.Cookie)
	if err != nil {
		return err
	}
	return pair.Drive(context.Background(), n, cfg, func(ctx context.Context, peer string) error {
		if err := n.Connect(ctx, peer); err != nil {
			return err
		}
		fmt.Println(n.Self(), "connected to", peer)
		return nil
	})
}
