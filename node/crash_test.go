package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordHandler keeps the records logged through it.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// crashes returns the crash reports logged so far, each as its attributes.
func (h *recordHandler) crashes() []map[string]slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]slog.Value
	for _, r := range h.recs {
		if r.Message != "process crashed" || r.Level != slog.LevelError {
			continue
		}
		m := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
		out = append(out, m)
	}
	return out
}

func TestAbnormalExitsAreLoggedAsCrashReports(t *testing.T) {
	h := &recordHandler{}
	n := startNode(t, WithLogger(slog.New(h)))
	n.Define("failer", func(p *Process, args []any) error { return errors.New("bad input") })
	n.Define("panicker", func(p *Process, args []any) error { panic("oops") })
	n.Define("fine", func(p *Process, args []any) error { return nil })
	n.Define("stopper", func(p *Process, args []any) error { return nil })
	var pids []PID
	within(t, n, func(p *Process) error {
		for _, a := range []string{"fine", "failer", "panicker"} {
			pid, err := p.Spawn(n.Self(), a)
			if err != nil {
				return err
			}
			pids = append(pids, pid)
		}
		// Killed by a signal: no report (the process did not crash).
		victim := n.SpawnFunc(func(q *Process) error { _, err := q.Receive(context.Background()); return err })
		return p.Exit(victim, errors.New("told to"))
	})
	eventually(t, "two crash reports", func() bool { return len(h.crashes()) >= 2 })
	time.Sleep(10 * time.Millisecond) // a third report, which must not come, would be here by now
	got := h.crashes()
	if len(got) != 2 {
		t.Fatalf("%d crash reports; want 2: %v", len(got), got)
	}
	byActor := map[string]map[string]slog.Value{}
	for _, c := range got {
		byActor[c["actor"].String()] = c
	}
	f, pa := byActor["failer"], byActor["panicker"]
	if f == nil || pa == nil {
		t.Fatalf("reports: %v", got)
	}
	if f["pid"].Any() != pids[1] || !strings.Contains(f["reason"].String(), "bad input") {
		t.Errorf("failer's report: %v", f)
	}
	if pa["pid"].Any() != pids[2] || !strings.Contains(pa["stack"].String(), "crash_test.go") {
		t.Errorf("panicker's report has no stack: %v", pa)
	}
}

func TestCrashReportsAreRateLimited(t *testing.T) {
	var c crashLog
	now := time.Now()
	for i := range crashBurst {
		if ok, _ := c.allow(now); !ok {
			t.Fatalf("report %d of the burst refused", i)
		}
	}
	for range 10 {
		if ok, _ := c.allow(now); ok {
			t.Fatal("report past the burst allowed")
		}
	}
	ok, held := c.allow(now.Add(time.Second / crashPerSecond))
	if !ok || held != 10 {
		t.Fatalf("after a refill: %v, %d held; want true, 10", ok, held)
	}
	if ok, held := c.allow(now.Add(time.Second / crashPerSecond)); ok || held != 0 {
		t.Fatalf("one token per refill: %v, %d", ok, held)
	}
}

func TestDefaultLoggerIsSlogDefault(t *testing.T) {
	if defaultOptions().logger != slog.Default() {
		t.Fatal("the default logger is not slog.Default()")
	}
}
