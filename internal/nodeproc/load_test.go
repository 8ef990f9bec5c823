package nodeproc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/testutil"
	"github.com/meshrt/mesh/node"
)

// loadBound bounds every wait of the load worker tests: generous for a
// loaded 2-core machine under -race. It is not a timing assertion.
const loadBound = 60 * time.Second

// twoNodes starts two connected in-process nodes serving this package's
// actors; both stop when the test ends.
func twoNodes(t *testing.T) (a, b *node.Node) {
	t.Helper()
	quiet := node.WithLogger(slog.New(slog.DiscardHandler))
	var ns []*node.Node
	for i := range 2 {
		n, err := node.Start(fmt.Sprintf("load%d@127.0.0.1:0", i), "load-cookie", quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), loadBound)
			defer cancel()
			_ = n.Stop(ctx)
		})
		Define(n, &State{})
		ns = append(ns, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), loadBound)
	defer cancel()
	if err := ns[0].Connect(ctx, ns[1].Self()); err != nil {
		t.Fatal(err)
	}
	return ns[0], ns[1]
}

// reports stops run on both nodes and collects want reports, by role.
func reports(t *testing.T, p *node.Process, run int64, want int, nodes ...*node.Node) map[string]Report {
	t.Helper()
	for _, n := range nodes {
		if _, err := p.Spawn(n.Self(), "stop", run); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), loadBound)
	defer cancel()
	got := map[string]Report{}
	for len(got) < want {
		m, err := p.ReceiveMatch(ctx, func(m any) bool { r, ok := ParseReport(m); return ok && r.Run == run })
		if err != nil {
			t.Fatalf("%d of %d reports: %v", len(got), want, err)
		}
		r, _ := ParseReport(m)
		got[r.Role] = r
	}
	return got
}

// lcall calls a server on the other node, one call after the other, and
// reports every call it made with its latency; a server that is gone is an
// error, counted once.
func TestLoadCallReportsCallsAndCountsAFailedOne(t *testing.T) {
	a, b := twoNodes(t)
	err := a.Run(context.Background(), func(p *node.Process) error {
		server, err := p.Spawn(b.Self(), "server")
		if err != nil {
			return err
		}
		const run = 11
		if _, err := p.Spawn(a.Self(), "lcall", int64(run), p.Self(), server, 64); err != nil {
			return err
		}
		// Some calls are answered (the server counts them) before the stop.
		testutil.Eventually(t, loadBound, "calls answered", func() bool { return serverCount(t, p, b) > 0 })
		r := reports(t, p, run, 1, a, b)["call"]
		if r.Ops <= 0 || r.Errors != 0 || r.Hist == nil || r.Hist.TotalCount() < r.Ops {
			t.Errorf("call report: ops %d errors %d samples %v; want calls, no errors, a sample each", r.Ops, r.Errors, r.Hist)
		}

		// A server that has exited: the call fails, the error is counted.
		if err := p.Exit(server, node.Kill); err != nil {
			return err
		}
		const run2 = 12
		if _, err := p.Spawn(a.Self(), "lcall", int64(run2), p.Self(), server, 64); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), loadBound)
		defer cancel()
		m, err := p.ReceiveMatch(ctx, func(m any) bool { r, ok := ParseReport(m); return ok && r.Run == run2 })
		if err != nil {
			return err
		}
		if r, _ := ParseReport(m); r.Ops != 0 || r.Errors != 1 {
			t.Errorf("call to a dead server: ops %d errors %d; want 0 and 1", r.Ops, r.Errors)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// serverCount is the count of messages b's actors have handled (its stats).
func serverCount(t *testing.T, p *node.Process, b *node.Node) int64 {
	t.Helper()
	if _, err := p.Spawn(b.Self(), "stats", p.Self()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), loadBound)
	defer cancel()
	m, err := p.ReceiveMatch(ctx, func(m any) bool {
		t, ok := m.(codec.Tuple)
		return ok && len(t) == 4 && t[0] == AtomStats
	})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := m.(codec.Tuple)[2].(int64)
	return n
}

// Given a group, the sinks join it and the sender publishes to it: every
// subscriber receives every round, counted, nothing lost.
func TestLoadFanoutPublishesToTheSinksGroup(t *testing.T) {
	a, b := twoNodes(t)
	err := a.Run(context.Background(), func(p *node.Process) error {
		const run, group = 21, "load-fanout"
		var sinks []any
		for range 3 {
			s, err := p.Spawn(b.Self(), "lsink", int64(run), p.Self(), 1, group)
			if err != nil {
				return err
			}
			sinks = append(sinks, s)
		}
		// The subscribers are members of the group, as seen from the
		// publisher's node.
		testutil.Eventually(t, loadBound, "the sinks in the group on the publisher's node", func() bool {
			ms := a.Groups().Members(group)
			for _, s := range sinks {
				if !slices.Contains(ms, s.(node.PID)) {
					return false
				}
			}
			return true
		})
		// This process listens in on the group until the first message
		// published to it: the sender is past its wait for the sinks.
		if err := a.Groups().Join(group, p.Self()); err != nil {
			return err
		}
		if _, err := p.Spawn(a.Self(), "lsend", int64(run), p.Self(), sinks, 64, 4, group); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), loadBound)
		defer cancel()
		if _, err := p.ReceiveMatch(ctx, func(m any) bool {
			t, ok := m.(codec.Tuple)
			return ok && len(t) == 2 && t[0] == AtomReady && t[1] == int64(run)
		}); err != nil {
			return fmt.Errorf("the sender did not say it was ready: %w", err)
		}
		if _, err := p.ReceiveMatch(ctx, func(m any) bool { _, ok := m.(string); return ok }); err != nil {
			return fmt.Errorf("no message published to the group: %w", err)
		}
		if err := a.Groups().Leave(group, p.Self()); err != nil {
			return err
		}
		var got []Report
		for _, n := range []*node.Node{a, b} {
			if _, err := p.Spawn(n.Self(), "stop", int64(run)); err != nil {
				return err
			}
		}
		for len(got) < 4 {
			m, err := p.ReceiveMatch(ctx, func(m any) bool { r, ok := ParseReport(m); return ok && r.Run == run })
			if err != nil {
				return fmt.Errorf("%d of 4 reports: %w", len(got), err)
			}
			r, _ := ParseReport(m)
			got = append(got, r)
		}
		var sent, received int64
		for _, r := range got {
			switch r.Role {
			case "send":
				sent = r.Ops
				if r.Errors != 0 {
					t.Errorf("sender errors: %d", r.Errors)
				}
			case "sink":
				received += r.Ops
				if r.Ops != r.Extra || r.Hist == nil {
					t.Errorf("sink received %d of %d (samples %v)", r.Ops, r.Extra, r.Hist)
				}
			}
		}
		if sent <= 0 || received != sent {
			t.Errorf("deliveries: %d sent, %d received; want equal and some", sent, received)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
