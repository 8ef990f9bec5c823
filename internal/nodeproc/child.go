package nodeproc

// Child node processes. Invariants: every child started is stopped by its
// starter on every exit path (Stop or Kill, deferred); a child's stdin is a
// pipe from its parent and the child is started with -stop-at-eof, so even a
// parent killed with SIGKILL ends its children, which stop at the end of
// their stdin.

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

// Child is one node process started by StartChild. Its methods are safe
// from any goroutine.
type Child struct {
	// Name is the node name the process printed: its bound port included.
	Name string
	// Cmd is the running command; tests signal its Process.
	Cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed once the process has been waited for
	err   error         // Wait's result, set before done closes
}

// LockedWriter serializes writes from several children's stderr copiers.
// It is safe from any goroutine; Lock/Unlock let a reader of W hold off
// writers.
type LockedWriter struct {
	sync.Mutex
	W io.Writer
}

// Write writes b to W under the lock.
func (l *LockedWriter) Write(b []byte) (int, error) {
	l.Lock()
	defer l.Unlock()
	return l.W.Write(b)
}

// StartChild starts `exe node args...` with env added to this process's
// environment (nil: inherited as is) and waits, until ctx ends, for the
// node name it prints as its first line. The child's stderr goes to stderr,
// which must be safe for concurrent writes when several children share it.
// The caller must end the child with Stop or Kill.
func StartChild(ctx context.Context, exe string, args, env []string, stderr io.Writer) (*Child, error) {
	cmd := exec.Command(exe, append([]string{"node"}, args...)...)
	cmd.Stderr = stderr
	if env != nil {
		cmd.Env = append(cmd.Environ(), env...)
	}
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
	c := &Child{Cmd: cmd, stdin: stdin, done: make(chan struct{})}
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
	case c.Name = <-first:
		if c.Name != "" {
			return c, nil
		}
		c.Kill()
		return nil, fmt.Errorf("node process exited before printing its name: %v", c.err)
	case <-ctx.Done():
		c.Kill()
		return nil, ctx.Err()
	}
}

// Done is closed once the process has exited and been waited for.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is the process's exit status (exec.Cmd.Wait's error); valid once Done
// is closed.
func (c *Child) Err() error {
	<-c.done
	return c.err
}

// Stop ends the child gracefully (end of stdin: the node stops and peers
// see NodeDown at once), killing it if it has not exited after grace.
func (c *Child) Stop(grace time.Duration) error {
	_ = c.stdin.Close()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		c.Kill()
		return errors.New("node process " + c.Name + " did not stop in time; killed")
	}
}

// Kill kills the child with SIGKILL and waits for it.
func (c *Child) Kill() {
	_ = c.Cmd.Process.Kill()
	<-c.done
}

// StopAll stops every child at once and waits for them all.
func StopAll(children []*Child, grace time.Duration) {
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Go(func() { _ = c.Stop(grace) })
	}
	wg.Wait()
}
