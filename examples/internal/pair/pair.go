// Package pair holds the plumbing every example shares, so that each example's
// main shows only Mesh: the -name/-peer/-cookie/-serve flags, starting the
// partner node as a child process when no -peer is given, and serving a node
// until it is told to stop.
//
// Every example is one program with two roles. Run with -serve it starts a
// node, prints the node's name on the first line of stdout and serves until
// SIGINT/SIGTERM or the end of stdin. Run without -serve it is the node that
// drives the example; given no -peer it first starts a copy of itself with
// -serve and uses that as its partner.
package pair

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshrt/mesh/node"
)

// Config is what the flags say. Set by [Parse]; read-only afterwards.
type Config struct {
	Name   string // this node's name, name@host:port (port 0: any free port)
	Peer   string // the partner's name; empty: start one as a child process
	Cookie string // the shared secret both nodes prove
	Serve  bool   // play the partner: serve until stopped
}

// Parse parses the command line. The node is called a@127.0.0.1:0, or
// b@127.0.0.1:0 when serving, unless -name says otherwise.
func Parse() *Config {
	c := &Config{}
	flag.StringVar(&c.Name, "name", "", "this node's name (default a@127.0.0.1:0, or b@127.0.0.1:0 with -serve)")
	flag.StringVar(&c.Peer, "peer", "", "the partner node's name (default: start one as a child process)")
	flag.StringVar(&c.Cookie, "cookie", "", "the cluster's secret cookie (default: random with a child partner, else mesh-example)")
	flag.BoolVar(&c.Serve, "serve", false, "be the partner: print this node's name and serve until SIGTERM or end of stdin")
	flag.Parse()
	switch {
	case c.Name != "":
	case c.Serve:
		c.Name = "b@127.0.0.1:0"
	default:
		c.Name = "a@127.0.0.1:0"
	}
	switch {
	case c.Cookie != "":
	case c.Peer == "" && !c.Serve:
		c.Cookie = rand.Text() // only we and our child know it
	default:
		c.Cookie = "mesh-example"
	}
	return c
}

// Partner returns the name of the partner node: -peer if given, else that of
// a copy of this program started by [StartNode] as b@127.0.0.1:0.
func Partner(c *Config) (name string, stop func(), err error) {
	if c.Peer != "" {
		return c.Peer, func() {}, nil
	}
	return StartNode("b@127.0.0.1:0", c.Cookie, "")
}

// StartNode starts a copy of this program with -serve as node name, which
// connects to join if that is not empty. It returns the name the node got
// and a function that stops it; the node also stops by itself when this
// program exits, as its stdin closes.
func StartNode(name, cookie, join string) (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	args := []string{"-serve", "-name", name, "-cookie", cookie}
	if join != "" {
		args = append(args, "-peer", join)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		stdin.Close() // the node stops at the end of its stdin
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		first <- strings.TrimSpace(line)
		io.Copy(os.Stderr, r) // whatever the node prints later
	}()
	var got string
	select {
	case got = <-first:
	case <-time.After(30 * time.Second):
	}
	if got == "" {
		stop()
		return "", nil, errors.New("pair: the partner node did not start")
	}
	return got, stop, nil
}

// Serve connects n to -peer if one was given, prints n's name on stdout and
// serves until ctx ends, SIGINT or SIGTERM arrives, or stdin ends; then it
// stops n gracefully.
func Serve(ctx context.Context, n *node.Node, c *Config) error {
	if c.Peer != "" {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.Connect(cctx, c.Peer)
		cancel()
		if err != nil {
			return err
		}
	}
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	fmt.Println(n.Self())
	<-ctx.Done()
	stopCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	return n.Stop(stopCtx)
}

// Drive plays n's role in an example. With -serve it serves (see [Serve],
// until serving ends or a signal or the end of stdin). Otherwise it finds
// the partner (see [Partner]), runs body with the partner's name and a
// context that bounds the example (a minute), then stops the partner and n.
func Drive(serving context.Context, n *node.Node, c *Config, body func(ctx context.Context, peer string) error) error {
	if c.Serve {
		return Serve(serving, n, c)
	}
	defer n.Stop(context.Background())
	peer, stop, err := Partner(c)
	if err != nil {
		return err
	}
	defer stop()
	// A bound against a hang, generous for a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return body(ctx, peer)
}
