// Command start starts a node — Mesh's Node.start(name, cookie) — and prints
// the name it got. Port 0 binds a free port; Self reports the port bound.
//
//	go run ./examples/start -name start@127.0.0.1:0 -cookie secret
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/meshrt/mesh/node"
)

func main() {
	name := flag.String("name", "start@127.0.0.1:0", "this node's name, name@host:port")
	cookie := flag.String("cookie", "secret", "the cluster's secret cookie")
	flag.Parse()

	n, err := node.Start(*name, *cookie)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(1)
	}
	fmt.Println("started", n.Self())
	fmt.Println("connected nodes:", n.List())
	if err := n.Stop(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(1)
	}
}
