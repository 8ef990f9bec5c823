// Command list queries the cluster — Mesh's Node.list() — and shows that the
// cluster is a full mesh: this node connects to b only, b already knows c,
// and soon this node lists both.
//
//	go run ./examples/list    # starts b and c as child processes
//
// or, in three terminals:
//
//	go run ./examples/list -serve -name b@127.0.0.1:7001 -cookie secret
//	go run ./examples/list -serve -name c@127.0.0.1:7002 -cookie secret -peer b@127.0.0.1:7001
//	go run ./examples/list -peer b@127.0.0.1:7001 -cookie secret
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
		fmt.Fprintln(os.Stderr, "list:", err)
		os.Exit(1)
	}
}

func run(cfg *pair.Config) error {
	n, err := node.Start(cfg.Name, cfg.Cookie)
	if err != nil {
		return err
	}
	return pair.Drive(context.Background(), n, cfg, func(ctx context.Context, peer string) error {
		if cfg.Peer == "" { // we started b; now start c, which joins b
			_, stopC, err := pair.StartNode("c@127.0.0.1:0", cfg.Cookie, peer)
			if err != nil {
				return err
			}
			defer stopC()
		}

		if err := n.Connect(ctx, peer); err != nil {
			return err
		}
		// Connecting is enough: b tells this node about c, and it connects.
		for len(n.List()) < 2 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Println("cluster:", n.List())
		return nil
	})
}
