package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// A watchdog for rare link faults, for long loops (make watchdog): a link
// that goes down during a run, or a run that takes past its bound, ends
// the test binary at once with every goroutine's stack, instead of a
// receiver waiting out testWait for messages a dropped link lost. Build it
// with the meshdebug tag (loop/debug_on.go) to have the stream checks
// report the first byte out of place before that.

// watchHandler panics, with every goroutine's stack, at the first log
// record of a link going down or being cut while armed.
type watchHandler struct{ armed *atomic.Bool }

func (h watchHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h watchHandler) Handle(_ context.Context, r slog.Record) error {
	if !h.armed.Load() {
		return nil
	}
	switch r.Message {
	case "peer down", "peer cut: over a limit", "peer silent past the tick timeout":
	default:
		return nil
	}
	msg := "watchdog: " + r.Message
	r.Attrs(func(a slog.Attr) bool { msg += fmt.Sprintf(" %s=%v", a.Key, a.Value); return true })
	watchdogExit(msg)
	return nil
}

func (h watchHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h watchHandler) WithGroup(string) slog.Handler      { return h }

// watchdogExit ends the test binary with msg and every goroutine's stack.
func watchdogExit(msg string) {
	buf := make([]byte, 16<<20)
	fmt.Fprintf(os.Stderr, "%s\n%s\n", msg, buf[:runtime.Stack(buf, true)])
	panic(msg)
}

// TestWatchdogReplyWaitBesideStreams is
// TestReplyWaitLeavesOtherProcessesMessagesInTheirMailboxesInOrder under
// the watchdog: every link it makes must stay up from start to end, and
// a run must end within MESH_WATCHDOG seconds (set it to run the test).
func TestWatchdogReplyWaitBesideStreams(t *testing.T) {
	bound, err := strconv.Atoi(os.Getenv("MESH_WATCHDOG"))
	if err != nil || bound <= 0 {
		t.Skip("MESH_WATCHDOG (a run's bound in seconds) not set: make watchdog runs it")
	}
	var armed atomic.Bool
	armed.Store(true)
	defer armed.Store(false) // before the cleanups stop the nodes, whichever way the run ends
	dog := time.AfterFunc(time.Duration(bound)*time.Second, func() {
		watchdogExit(fmt.Sprintf("watchdog: the run took more than %d s", bound))
	})
	defer dog.Stop()
	replyWaitBesideStreams(t, WithLogger(slog.New(watchHandler{&armed})))
}
