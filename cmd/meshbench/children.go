package main

// Child node processes. Invariants: every child started is stopped by its
// starter on every exit path (stop, deferred); a child's stdin is a pipe from
// its parent, so even a parent killed with SIGKILL ends its children, which
// stop at the end of their stdin.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// child is one `meshbench node` process. Its methods are safe from any
// goroutine.
type child struct {
	name  string // the node name it printed: its bound port included
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed once the process has been waited for
	err   error         // Wait's result, set before done closes
}

// lockedWriter serializes writes from several children's stderr copiers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// startChild starts `exe node args...` and waits (until ctx ends) for the
// node name it prints as its first line. The child's stderr goes to stderr,
// which must be safe for concurrent writes when several children share it.
func startChild(ctx context.Context, exe string, args []string, stderr io.Writer) (*child, error) {
	cmd := exec.Command(exe, append([]string{"node"}, args...)...)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	first := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		first <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, r)
		c.err = cmd.Wait() // after stdout is drained, as Wait requires
		close(c.done)
	}()
	select {
	case c.name = <-first:
		if c.name != "" {
			return c, nil
		}
		c.kill()
		return nil, fmt.Errorf("meshbench: node process exited before printing its name: %v", c.err)
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	}
}

// stop ends the child gracefully (end of stdin: the node stops and peers see
// NodeDown at once), killing it if it has not exited after grace.
func (c *child) stop(grace time.Duration) error {
	_ = c.stdin.Close()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		c.kill()
		return errors.New("meshbench: node process " + c.name + " did not stop in time; killed")
	}
}

// kill kills the child with SIGKILL and waits for it.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// stopAll stops every child at once and waits for them all.
func stopAll(children []*child, grace time.Duration) {
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Go(func() { _ = c.stop(grace) })
	}
	wg.Wait()
}
