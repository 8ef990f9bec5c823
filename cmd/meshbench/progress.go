package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows a bar over a run's measured phases on a terminal, and
// nothing elsewhere (a file, a pipe, a test's buffer). Its methods are for
// the goroutine that runs the phases.
type progress struct {
	bar   *progressbar.ProgressBar // nil: not a terminal
	total time.Duration
	done  time.Duration // phases finished
}

// newProgress returns a progress for phases adding up to total, drawn on w
// if w is a terminal.
func newProgress(w io.Writer, total time.Duration) *progress {
	pr := &progress{total: total}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		pr.bar = progressbar.NewOptions64(total.Milliseconds(),
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	return pr
}

// phaseStarted, if set (by tests), is called as each measured phase starts.
var phaseStarted func(label string)

// wait waits out one phase of d, or until ctx ends (true: interrupted).
func (pr *progress) wait(ctx context.Context, label string, d time.Duration) bool {
	if phaseStarted != nil {
		phaseStarted(label)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	defer func() { pr.done += d }()
	if pr.bar == nil {
		select {
		case <-t.C:
			return false
		case <-ctx.Done():
			return true
		}
	}
	pr.bar.Describe(label)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-t.C:
			_ = pr.bar.Set64((pr.done + d).Milliseconds())
			return false
		case <-ctx.Done():
			return true
		case <-tick.C:
			_ = pr.bar.Set64((pr.done + min(d, time.Since(start))).Milliseconds())
		}
	}
}

// finish clears the bar; it may be called more than once.
func (pr *progress) finish() {
	if pr.bar != nil {
		_ = pr.bar.Clear()
		_ = pr.bar.Exit()
		pr.bar = nil
	}
}
