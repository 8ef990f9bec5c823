package nodeproc

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

// bound is the safety bound on every wait of these tests: generous for a
// loaded 2-core machine under -race (10 s was passed once at load 20, by a
// SIGTERMed node that drains before it closes). It is not a timing
// assertion; the delays the issue cares about (≤ 1 s) are measured and
// logged.
const bound = 30 * time.Second

// tick is the tick timeout of the nodes in these tests: short, so a silent
// peer is found quickly, but with room for a node process that a loaded
// machine does not schedule for a second (1 s lost a link mid-traffic once,
// at load 20 under -race).
const tick = 2 * time.Second

// startNodeProcesses starts count `meshbench node` processes (this test
// binary, see TestMain) sharing cookie, killed when the test ends.
func startNodeProcesses(t *testing.T, cookie string, names ...string) []*Child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var stderr LockedWriter
	var buf bytes.Buffer
	stderr.W = &buf
	var children []*Child
	t.Cleanup(func() {
		for _, c := range children {
			c.Kill()
		}
		if t.Failed() {
			stderr.Lock()
			t.Logf("node processes' stderr:\n%s", buf.String())
			stderr.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	for _, name := range names {
		c, err := StartChild(ctx, exe, []string{"-name", name + "@127.0.0.1:0", "-cookie", cookie, "-tick", tick.String()}, nil, &stderr)
		if err != nil {
			t.Fatalf("starting node process %s: %v", name, err)
		}
		children = append(children, c)
	}
	return children
}

// startTestNode starts the in-process node the test drives, connected to
// every node process.
func startTestNode(t *testing.T, cookie string, children []*Child) *node.Node {
	t.Helper()
	n, err := node.Start("test@127.0.0.1:0", cookie, node.WithTickTimeout(tick))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	for _, c := range children {
		if err := n.Connect(ctx, c.Name); err != nil {
			t.Fatalf("Connect %s: %v", c.Name, err)
		}
	}
	return n
}

// awaitAll receives until every expectation has matched one message, and
// returns how long after since each took. Other messages are skipped.
func awaitAll(t *testing.T, p *node.Process, since time.Time, want map[string]func(any) bool) map[string]time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	got := make(map[string]time.Duration)
	for len(got) < len(want) {
		m, err := p.Receive(ctx)
		if err != nil {
			missing := []string{}
			for what := range want {
				if _, ok := got[what]; !ok {
					missing = append(missing, what)
				}
			}
			t.Fatalf("still waiting for %v after %v: %v", missing, bound, err)
		}
		for what, match := range want {
			if _, done := got[what]; !done && match(m) {
				got[what] = time.Since(since)
			}
		}
	}
	return got
}

func isNodeDown(name string) func(any) bool {
	return func(m any) bool { d, ok := m.(node.NodeDown); return ok && d.Node == name }
}

func isExit(from node.PID, reason any) func(any) bool {
	return func(m any) bool { e, ok := m.(node.Exit); return ok && e.From == from && e.Reason == reason }
}

func isDown(ref node.Ref, reason any) func(any) bool {
	return func(m any) bool { d, ok := m.(node.Down); return ok && d.Ref == ref && d.Reason == reason }
}

// A node process killed with SIGKILL in the middle of traffic is noticed at
// once by the survivor: its node monitors get NodeDown, its links Exit with
// reason noconnection, its monitors Down with noconnection; traffic to the
// other node goes on. Then a graceful SIGTERM of the other node gives
// NodeDown, Exit and Down promptly too.
func TestKilledNodeProcessFiresMonitorsAndLinksOnTheSurvivor(t *testing.T) {
	cookie := "mp-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	children := startNodeProcesses(t, cookie, "victim", "other")
	victim, other := children[0], children[1]
	n := startTestNode(t, cookie, children)

	ctx, cancel := context.WithTimeout(context.Background(), 3*bound)
	defer cancel()
	err := n.Run(ctx, func(p *node.Process) error {
		p.TrapExit(true)
		for _, c := range children {
			if err := p.MonitorNode(c.Name); err != nil {
				return err
			}
		}
		linkedV, err := p.SpawnLink(victim.Name, "echo")
		if err != nil {
			return err
		}
		sinkV, err := p.Spawn(victim.Name, "sink")
		if err != nil {
			return err
		}
		monV := p.Monitor(sinkV)
		linkedO, err := p.SpawnLink(other.Name, "echo")
		if err != nil {
			return err
		}
		sinkO, err := p.Spawn(other.Name, "sink")
		if err != nil {
			return err
		}
		monO := p.Monitor(sinkO)

		// Traffic: a process streaming to both sinks until the end.
		var sent atomic.Int64
		trafficDone := make(chan struct{})
		n.SpawnFunc(func(tp *node.Process) error {
			defer close(trafficDone)
			payload := strings.Repeat("x", 64)
			for ctx.Err() == nil {
				_ = tp.Send(sinkV, payload) // fails once the victim is gone
				if err := tp.Send(sinkO, payload); err != nil {
					return err
				}
				sent.Add(1)
			}
			return nil
		})
		for sent.Load() < 5000 {
			if ctx.Err() != nil {
				t.Fatal("the traffic did not start")
			}
			time.Sleep(time.Millisecond)
		}

		killed := time.Now()
		if err := victim.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
			return err
		}
		delays := awaitAll(t, p, killed, map[string]func(any) bool{
			"NodeDown":          isNodeDown(victim.Name),
			"Exit noconnection": isExit(linkedV, node.NoConnection),
			"Down noconnection": isDown(monV, node.NoConnection),
		})
		t.Logf("after SIGKILL of %s mid-traffic (%d messages sent so far): %v", victim.Name, sent.Load(), delays)

		// The other node still serves: its sink counted the traffic.
		if err := p.Send(sinkO, codec.Tuple{AtomCount, p.Self()}); err != nil {
			return err
		}
		rctx, rcancel := context.WithTimeout(ctx, bound)
		defer rcancel()
		m, err := p.ReceiveMatch(rctx, func(m any) bool { t, ok := m.(codec.Tuple); return ok && len(t) == 2 && t[0] == AtomCount })
		if err != nil {
			t.Fatalf("the surviving node's sink did not answer: %v", err)
		}
		if c, _ := m.(codec.Tuple)[1].(int64); c == 0 {
			t.Fatal("the surviving node's sink counted no traffic")
		}
		if got := n.List(); len(got) != 1 || got[0] != other.Name {
			t.Fatalf("List after the kill = %v, want [%s]", got, other.Name)
		}

		// The crash actor's error reaches a linked process as its text.
		crashed, err := p.SpawnLink(other.Name, "crash", "now")
		if err != nil {
			return err
		}
		awaitAll(t, p, time.Now(), map[string]func(any) bool{"Exit of crash": isExit(crashed, ErrCrash.Error())})

		stopped := time.Now()
		if err := other.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		delays = awaitAll(t, p, stopped, map[string]func(any) bool{
			"NodeDown": isNodeDown(other.Name),
			"Exit":     func(m any) bool { e, ok := m.(node.Exit); return ok && e.From == linkedO },
			"Down":     func(m any) bool { d, ok := m.(node.Down); return ok && d.Ref == monO },
		})
		t.Logf("after SIGTERM of %s: %v", other.Name, delays)
		<-trafficDone // its send to the stopped node fails, or ctx ends
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-other.Done():
		if other.Err() != nil {
			t.Errorf("%s after SIGTERM: %v, want a clean exit", other.Name, other.Err())
		}
	case <-time.After(bound):
		t.Errorf("%s did not exit after SIGTERM", other.Name)
	}
}

// A node process frozen with SIGSTOP keeps its sockets open but falls
// silent: the survivor declares it down after the tick timeout, with
// noconnection for its links and monitors.
func TestSilentNodeProcessIsDeclaredDownAfterTheTickTimeout(t *testing.T) {
	cookie := "mp-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	frozen := startNodeProcesses(t, cookie, "frozen")[0]
	n := startTestNode(t, cookie, []*Child{frozen})
	ctx, cancel := context.WithTimeout(context.Background(), 3*bound)
	defer cancel()
	err := n.Run(ctx, func(p *node.Process) error {
		p.TrapExit(true)
		if err := p.MonitorNode(frozen.Name); err != nil {
			return err
		}
		linked, err := p.SpawnLink(frozen.Name, "echo")
		if err != nil {
			return err
		}
		mon := p.Monitor(linked)
		froze := time.Now()
		if err := frozen.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return err
		}
		delays := awaitAll(t, p, froze, map[string]func(any) bool{
			"NodeDown":          isNodeDown(frozen.Name),
			"Exit noconnection": isExit(linked, node.NoConnection),
			"Down noconnection": isDown(mon, node.NoConnection),
		})
		t.Logf("after SIGSTOP of %s (tick timeout %v): %v", frozen.Name, tick, delays)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPercentilesUseNearestRank(t *testing.T) {
	tests := []struct {
		samples  []int64
		p50, p99 int64
	}{
		{nil, 0, 0},
		{[]int64{7}, 7, 7},
		{[]int64{3, 1, 2, 4}, 2, 4},
		{func() []int64 {
			s := make([]int64, 100)
			for i := range s {
				s[i] = int64(100 - i)
			}
			return s
		}(), 50, 99},
	}
	for _, tc := range tests {
		if p50, p99 := percentiles(tc.samples); p50 != tc.p50 || p99 != tc.p99 {
			t.Errorf("percentiles(%v) = %d, %d; want %d, %d", tc.samples, p50, p99, tc.p50, tc.p99)
		}
	}
}
