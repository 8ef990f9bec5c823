package node

// Crash reports: a process that ends abnormally — an error, a panic, any
// reason but normal and shutdown — is logged at Error with its PID, actor
// name, reason and, for a panic, the stack.
//
// A peer can make this node crash processes at will (spawn a defined actor
// with bad arguments, send a malformed request), so reports are
// rate-limited: a token bucket of crashBurst reports refilled at
// crashPerSecond; what it holds back is counted and the count is given with
// the next report that goes out.

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

const (
	crashBurst     = 20
	crashPerSecond = 5
	maxCrashStack  = 16 << 10 // bytes of a panic's stack logged
)

// crashLog is the rate limiter of crash reports.
type crashLog struct {
	mu         sync.Mutex
	tokens     float64   // guarded by mu
	last       time.Time // guarded by mu: the last refill
	suppressed int       // guarded by mu: reports held back since the last one logged
}

// allow takes a token; it returns false when none is left, and otherwise
// how many reports were held back since the last one allowed.
func (c *crashLog) allow(now time.Time) (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.IsZero() {
		c.tokens = crashBurst
	} else {
		c.tokens = min(crashBurst, c.tokens+now.Sub(c.last).Seconds()*crashPerSecond)
	}
	c.last = now
	if c.tokens < 1 {
		c.suppressed++
		return false, 0
	}
	c.tokens--
	held := c.suppressed
	c.suppressed = 0
	return true, held
}

// abnormal reports whether reason is worth a crash report.
func abnormal(reason any) bool {
	switch reason {
	case any(Normal), any(Shutdown):
		return false
	}
	return true
}

// crashReport logs p's abnormal end with reason. Called by the goroutine
// that ran p's function, once it has ended p.
func (n *Node) crashReport(p *Process, reason any) {
	ctx := context.Background()
	if !abnormal(reason) || !n.log.Enabled(ctx, slog.LevelError) {
		return
	}
	ok, held := n.svc.crash.allow(time.Now())
	if !ok {
		return
	}
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs, slog.Any("pid", p.pid))
	if p.def != nil {
		attrs = append(attrs, slog.String("actor", p.def.name))
	}
	attrs = append(attrs, slog.Any("reason", reason))
	if pe, ok := reason.(*PanicError); ok {
		stack := pe.Stack
		if len(stack) > maxCrashStack {
			stack = stack[:maxCrashStack]
		}
		attrs = append(attrs, slog.String("stack", string(stack)))
	}
	if held > 0 {
		attrs = append(attrs, slog.Int("suppressed", held))
	}
	n.log.LogAttrs(ctx, slog.LevelError, "process crashed", attrs...)
}
