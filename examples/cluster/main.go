// Command cluster forms a 3-node cluster by seeds, kills one node (SIGKILL,
// no goodbye), restarts it under the same name, and shows it rejoin and its
// group member come back, with no Connect anywhere:
//
//	go run ./examples/cluster
//
// Nodes a and b run in this process; c runs as a child process (this
// program with -serve), so that it can really be killed. Every node is
// given the same three seeds; a node skips its own name.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/meshrt/mesh/node"
)

const cookie = "cluster-example"

// fast redials, so the example does not wait for the default backoff.
var redial = node.WithRedialBackoff(50*time.Millisecond, 500*time.Millisecond)

func main() {
	serve := flag.Bool("serve", false, "run node c (used by the example itself)")
	name := flag.String("name", "", "this node's name, with -serve")
	seeds := flag.String("seeds", "", "comma-separated seeds, with -serve")
	flag.Parse()
	if *serve {
		if err := serveNode(*name, strings.Split(*seeds, ",")); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// serveNode runs a node whose one worker joins the group "workers", until
// stdin closes (or the process is killed).
func serveNode(name string, seeds []string) error {
	n, err := node.Start(name, cookie, node.WithSeeds(seeds...), redial)
	if err != nil {
		return err
	}
	worker := n.SpawnFunc(func(p *node.Process) error {
		_, err := p.Receive(context.Background())
		return err
	})
	if err := n.Groups().Join("workers", worker); err != nil {
		return err
	}
	fmt.Println(n.Self())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.Stop(ctx)
}

func freeName(prefix string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return fmt.Sprintf("%s@%s", prefix, l.Addr()), nil
}

func run() error {
	var names []string
	for _, p := range []string{"a", "b", "c"} {
		nm, err := freeName(p)
		if err != nil {
			return err
		}
		names = append(names, nm)
	}
	seeds := strings.Join(names, ",")
	var nodes []*node.Node
	for _, nm := range names[:2] {
		n, err := node.Start(nm, cookie, node.WithSeeds(names...), redial)
		if err != nil {
			return err
		}
		defer n.Stop(context.Background())
		nodes = append(nodes, n)
	}
	a := nodes[0]
	for _, n := range nodes {
		w := n.SpawnFunc(func(p *node.Process) error { _, err := p.Receive(context.Background()); return err })
		if err := n.Groups().Join("workers", w); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return a.Run(ctx, func(p *node.Process) error {
		if err := p.MonitorNodes(); err != nil {
			return err
		}
		c, _, err := startChild(names[2], seeds)
		if err != nil {
			return err
		}
		if err := waitMembers(ctx, a, 3); err != nil {
			return err
		}
		if _, err := nodeEvent(ctx, p, names[2]); err != nil { // c's NodeUp
			return err
		}
		fmt.Printf("cluster formed by seeds: %v\n", append([]string{a.Self()}, a.List()...))
		fmt.Printf("workers: %d members, on %s\n", len(a.Groups().Members("workers")), memberNodes(a))

		fmt.Println("killing c")
		_ = c.Process.Kill()
		_ = c.Wait()
		if ev, err := nodeEvent(ctx, p, names[2]); err != nil {
			return err
		} else {
			fmt.Printf("a saw: %s\n", ev)
		}
		if err := waitMembers(ctx, a, 2); err != nil {
			return err
		}
		fmt.Printf("workers: %d members, on %s\n", len(a.Groups().Members("workers")), memberNodes(a))

		fmt.Println("restarting c")
		c, stdin, err := startChild(names[2], seeds)
		if err != nil {
			return err
		}
		defer func() {
			_ = stdin.Close() // c stops gracefully at the end of its stdin
			_ = c.Wait()
		}()
		if ev, err := nodeEvent(ctx, p, names[2]); err != nil {
			return err
		} else {
			fmt.Printf("a saw: %s\n", ev)
		}
		if err := waitMembers(ctx, a, 3); err != nil {
			return err
		}
		fmt.Printf("workers: %d members, on %s\n", len(a.Groups().Members("workers")), memberNodes(a))
		return nil
	})
}

// startChild runs node c as a child process and waits for its name line.
// Closing the returned stdin stops it gracefully.
func startChild(name, seeds string) (*exec.Cmd, io.WriteCloser, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe, "-serve", "-name", name, "-seeds", seeds)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		_ = cmd.Process.Kill()
		return nil, nil, fmt.Errorf("node c did not start: %w", err)
	}
	return cmd, stdin, nil
}

// nodeEvent waits for the next NodeUp or NodeDown about node.
func nodeEvent(ctx context.Context, p *node.Process, name string) (string, error) {
	m, err := p.ReceiveMatch(ctx, func(m any) bool {
		switch e := m.(type) {
		case node.NodeUp:
			return e.Node == name
		case node.NodeDown:
			return e.Node == name
		}
		return false
	})
	if err != nil {
		return "", err
	}
	switch e := m.(type) {
	case node.NodeDown:
		return fmt.Sprintf("NodeDown c (reason %v)", e.Reason), nil
	default:
		return "NodeUp c", nil
	}
}

func waitMembers(ctx context.Context, n *node.Node, want int) error {
	for len(n.Groups().Members("workers")) != want {
		select {
		case <-ctx.Done():
			return errors.New("the group did not reach its size in time")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func memberNodes(n *node.Node) string {
	var out []string
	for _, pid := range n.Groups().Members("workers") {
		out = append(out, strings.SplitN(pid.Node, "@", 2)[0])
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
