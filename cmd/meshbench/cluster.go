package main

// The nodes a run drives: in this process, as child `meshbench node`
// processes on 127.0.0.1 (--procs), or served elsewhere (--peers); and the
// controller node in this process that connects to them all and drives
// them by remote spawns of the actors of internal/nodeproc.

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/nodeproc"
	"github.com/meshrt/mesh/node"
)

// setupBound bounds each setup step of a run (starting, connecting, a
// round of reports); the measured phase is bounded by --duration.
const setupBound = 30 * time.Second

// clusterSpec says which nodes to drive.
type clusterSpec struct {
	nodes  int      // nodes to start (ignored with peers)
	procs  bool     // each started node in its own OS process
	peers  []string // nodes served elsewhere, instead of starting any
	cookie string   // "" : a fresh random one (not with peers)
}

// cluster is the controller node and the worker nodes it drives. Its
// methods are for the goroutine that started it.
type cluster struct {
	ctl      *node.Node
	workers  []string // worker node names, in order
	children []*nodeproc.Child
	locals   []*node.Node
	mode     string // "in-process", "processes" or "peers"
}

// startCluster starts (or reaches) the workers and the controller, connects
// the controller to each and waits until the workers form a full mesh. On
// error everything started is stopped again.
func startCluster(ctx context.Context, spec clusterSpec, stderr io.Writer) (c *cluster, err error) {
	c = &cluster{}
	defer func() {
		if err != nil {
			c.close()
			c = nil
		}
	}()
	cookie := spec.cookie
	if cookie == "" {
		cookie = rand.Text()
	}
	setup, cancel := context.WithTimeout(ctx, setupBound)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	host := "127.0.0.1"
	switch {
	case len(spec.peers) > 0:
		c.mode = "peers"
		c.workers = spec.peers
		if host, err = localHostFor(spec.peers[0]); err != nil {
			return c, err
		}
	case spec.procs:
		c.mode = "processes"
		exe, err := os.Executable()
		if err != nil {
			return c, err
		}
		childErr := &nodeproc.LockedWriter{W: stderr}
		for i := range spec.nodes {
			ch, err := nodeproc.StartChild(setup, exe,
				[]string{"--name", fmt.Sprintf("n%d@127.0.0.1:0", i+1), "--stop-at-eof"},
				[]string{cookieEnv + "=" + cookie}, childErr)
			if err != nil {
				return c, fmt.Errorf("starting node process %d: %w", i+1, err)
			}
			c.children = append(c.children, ch)
			c.workers = append(c.workers, ch.Name)
		}
	default:
		c.mode = "in-process"
		for i := range spec.nodes {
			n, err := node.Start(fmt.Sprintf("n%d@127.0.0.1:0", i+1), cookie, node.WithLogger(quiet))
			if err != nil {
				return c, err
			}
			nodeproc.Define(n, &nodeproc.State{})
			c.locals = append(c.locals, n)
			c.workers = append(c.workers, n.Self())
		}
	}
	c.ctl, err = node.Start("meshbench@"+net.JoinHostPort(host, "0"), cookie, node.WithLogger(quiet))
	if err != nil {
		return c, err
	}
	for _, w := range c.workers {
		if err := c.ctl.Connect(setup, w); err != nil {
			return c, fmt.Errorf("connect %s: %w", w, err)
		}
	}
	return c, c.ctl.Run(setup, func(p *node.Process) error { return c.waitFullMesh(setup, p) })
}

// localHostFor returns this machine's address on the route to the node
// named peer (no packet is sent): the controller advertises it, so that the
// peers can reach it back.
func localHostFor(peer string) (string, error) {
	_, hostport, ok := strings.Cut(peer, "@")
	if !ok {
		return "", usagef("--peers: %q is not name@host:port", peer)
	}
	c, err := net.Dial("udp", hostport)
	if err != nil {
		return "", fmt.Errorf("--peers: no route to %s: %w", hostport, err)
	}
	defer c.Close()
	h, _, err := net.SplitHostPort(c.LocalAddr().String())
	return h, err
}

// close stops the controller and every node this cluster started.
func (c *cluster) close() {
	sctx, cancel := context.WithTimeout(context.Background(), nodeproc.StopBound)
	defer cancel()
	if c.ctl != nil {
		_ = c.ctl.Stop(sctx)
	}
	for _, n := range c.locals {
		_ = n.Stop(sctx)
	}
	nodeproc.StopAll(c.children, nodeproc.StopBound)
}

// waitFullMesh polls the workers until each lists all the other workers:
// the mesh the controller's connections started is complete.
func (c *cluster) waitFullMesh(ctx context.Context, p *node.Process) error {
	for {
		all := true
		for _, w := range c.workers {
			if _, err := p.Spawn(w, "stats", p.Self()); err != nil {
				return err
			}
		}
		for range c.workers {
			m, err := receiveMatch(ctx, p, func(t codec.Tuple) bool { return len(t) == 4 && t[0] == nodeproc.AtomStats })
			if err != nil {
				return fmt.Errorf("waiting for the full mesh: %w", err)
			}
			peers, _ := m[3].([]any)
			have := make(map[string]bool, len(peers))
			for _, pe := range peers {
				s, _ := pe.(string)
				have[s] = true
			}
			self, _ := m[1].(string)
			for _, w := range c.workers {
				all = all && (w == self || have[w])
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the nodes did not form a full mesh")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// receiveMatch receives the next codec.Tuple for which match is true,
// leaving other messages queued.
func receiveMatch(ctx context.Context, p *node.Process, match func(codec.Tuple) bool) (codec.Tuple, error) {
	m, err := p.ReceiveMatch(ctx, func(m any) bool {
		t, ok := m.(codec.Tuple)
		return ok && match(t)
	})
	if err != nil {
		return nil, err
	}
	return m.(codec.Tuple), nil
}

// hostOf returns the host part of a node name.
func hostOf(name string) string {
	_, hp, _ := strings.Cut(name, "@")
	h, _, err := net.SplitHostPort(hp)
	if err != nil {
		return "127.0.0.1"
	}
	return h
}

// machine describes where the run ran: Go's view of the CPU count and the
// platform, the CPU model from /proc/cpuinfo and the load average where
// there are.
func machine() string {
	s := fmt.Sprintf("%s/%s, GOMAXPROCS=%d, NumCPU=%d, %s", runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				s += ", CPU: " + strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			s += ", load average " + strings.Join(f[:3], " ")
		}
	}
	return s
}
