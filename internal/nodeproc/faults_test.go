package nodeproc

// Fault tests (DESIGN §6): node processes in their own network namespaces,
// their links cut silently (no socket is closed; frames stop arriving) or
// delayed. They need root, ip and tc, and skip with the reason elsewhere and
// under -short (see netns_test.go). The delays they log are measurements,
// not assertions; the waits are bounded by `bound`.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
	"github.com/meshrt/mesh/internal/testutil"
	"github.com/meshrt/mesh/node"
)

// A silent partition, then a heal:
//
//  1. a's link is cut: the test node's MonitorNode, Monitor and link on a
//     fire within the tick timeout, and every other node drops a from List.
//  2. On the majority side the test node registers "oneside" and "both" for
//     processes of b and c.
//  3. The test node crosses to a's side (its own link moves next to a's): it
//     drops b and c, redials a by itself, registers "aside" for a process of a
//     and "both" for itself. Each side now holds its own "both".
//  4. Heal: the full mesh comes back by itself (redials, no Connect); every
//     replica shows oneside, aside and
//     the earlier "both" (the Lamport rule, global.Wins); the test node's
//     process, the loser, gets a global.Conflict and keeps running.
func TestSilentPartitionFiresMonitorsAndHealSettlesTheRegistry(t *testing.T) {
	lab := newNetLab(t)
	cookie := "faults-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	a := lab.startNode(t, cookie, "a", "", "")
	b := lab.startNode(t, cookie, "b", "", "")
	c := lab.startNode(t, cookie, "c", "", "")
	n := lab.startTestNode(t, cookie)

	ctx, cancel := context.WithTimeout(context.Background(), 5*bound)
	defer cancel()
	err := n.Run(ctx, func(p *node.Process) error {
		p.TrapExit(true)
		for _, x := range []*Child{a, b, c} {
			if err := n.Connect(ctx, x.Name); err != nil {
				return err
			}
		}
		awaitMesh(t, p, a, b, c)

		// 1. Cut a.
		if err := p.MonitorNode(a.Name); err != nil {
			return err
		}
		linked, err := p.SpawnLink(a.Name, "echo")
		if err != nil {
			return err
		}
		sink, err := p.Spawn(a.Name, "sink")
		if err != nil {
			return err
		}
		mon := p.Monitor(sink)
		cut := time.Now()
		lab.move(t, "pa", islandBridge)
		delays := awaitAll(t, p, cut, map[string]func(any) bool{
			"NodeDown":          isNodeDown(a.Name),
			"Exit noconnection": isExit(linked, node.NoConnection),
			"Down noconnection": isDown(mon, node.NoConnection),
		})
		t.Logf("a's link cut silently (tick timeout %v); on the test node after: %v", tick, delays)
		if got, want := n.List(), sorted(b.Name, c.Name); !slices.Equal(got, want) {
			t.Fatalf("test node's List after the cut = %v, want %v", got, want)
		}
		for _, x := range []*Child{b, c} {
			eventually(t, x.Name+" drops "+a.Name, func() bool {
				return !slices.Contains(peersOf(t, p, x), a.Name)
			})
			t.Logf("%s had dropped a from its List %v after the cut", x.Name, time.Since(cut))
		}

		// 2. Names on the majority side, accepted by their owners.
		one, err := p.Spawn(b.Name, "echo")
		if err != nil {
			return err
		}
		both, err := p.Spawn(c.Name, "echo")
		if err != nil {
			return err
		}
		for _, r := range []struct {
			name string
			pid  node.PID
		}{{"oneside", one}, {"both", both}} {
			if err := n.Global().Register(r.name, r.pid); err != nil {
				return fmt.Errorf("Register %s during the partition: %w", r.name, err)
			}
			// The owner's add is sent before the echo's reply.
			roundTrip(t, p, r.pid)
		}

		// 3. The test node crosses to a's side.
		for _, x := range []*Child{b, c} {
			if err := p.MonitorNode(x.Name); err != nil {
				return err
			}
		}
		crossed := time.Now()
		lab.move(t, hostPort, islandBridge)
		delays = awaitAll(t, p, crossed, map[string]func(any) bool{
			"NodeDown b": isNodeDown(b.Name),
			"NodeDown c": isNodeDown(c.Name),
		})
		t.Logf("the test node's link moved to a's side; after: %v", delays)
		eventually(t, "the test node forgets b's and c's names", func() bool {
			_, ok1 := n.Global().Whereis("oneside")
			_, ok2 := n.Global().Whereis("both")
			// a may be back already: the test node redials it by itself.
			l := n.List()
			return !slices.Contains(l, b.Name) && !slices.Contains(l, c.Name) && !ok1 && !ok2
		})
		// No Connect: the test node redials a, lost by its tick timeout.
		awaitMesh(t, p, a)
		aside, err := p.Spawn(a.Name, "echo")
		if err != nil {
			return err
		}
		if err := n.Global().Register("aside", aside); err != nil {
			return fmt.Errorf("Register aside during the partition: %w", err)
		}
		roundTrip(t, p, aside)
		if err := n.Global().Register("both", p.Self()); err != nil {
			return fmt.Errorf("Register both on a's side: %w", err)
		}

		// 4. Heal.
		healed := time.Now()
		lab.move(t, "pa", mainBridge)
		lab.move(t, hostPort, mainBridge)
		// No Connect: every node redials the peers it lost (backoff capped
		// at 5 s), and the mesh comes back by itself.
		awaitMesh(t, p, a, b, c)
		meshed := time.Since(healed)
		got := awaitAll(t, p, healed, map[string]func(any) bool{
			"Conflict": func(m any) bool {
				c, ok := m.(global.Conflict)
				return ok && c.Name == "both" && c.Winner == both
			},
		})
		names := []string{"oneside", "both", "aside"}
		want := []any{one, both, aside}
		eventually(t, "every replica settles on "+fmt.Sprint(want), func() bool {
			for _, x := range []*Child{a, b, c} {
				if !slices.Equal(whereisOn(t, p, x, names...), want) {
					return false
				}
			}
			for i, name := range names {
				if pid, ok := n.Global().Whereis(name); !ok || pid != want[i] {
					return false
				}
			}
			return true
		})
		t.Logf("after the heal: full mesh in %v, the loser's Conflict in %v, all four replicas equal in %v",
			meshed, got["Conflict"], time.Since(healed))
		// The loser keeps running: it still answers through c's echo.
		roundTrip(t, p, both)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A 20 ms delay each way on a link: traffic and ticks keep it up (no
// NodeDown with a 1 s tick timeout, through traffic and through a quiet
// spell longer than the tick timeout), and ping-pong through it takes at
// least the 40 ms round trip the delay adds. The p50 is logged.
func TestDelayedLinkKeepsTrafficAndTicksFlowing(t *testing.T) {
	const oneWay = 20 * time.Millisecond
	lab := newNetLab(t)
	cookie := "faults-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var a *Child
	how := "tc netem delay " + oneWay.String() + " on both ends of a's veth"
	if lab.netem {
		a = lab.startNode(t, cookie, "a", "", "")
		lab.delay(t, "a", oneWay)
	} else {
		// No netem in this kernel: a advertises a relay on the host link
		// that holds every chunk 20 ms each way before the veth.
		how = "a relay holding each chunk " + oneWay.String() + " each way (this kernel has no netem)"
		target := fmt.Sprintf("10.250.%d.%d:7000", lab.subnet, lab.nextHost+1)
		relay := delayRelay(t, lab.hostIP(), target, oneWay)
		a = lab.startNode(t, cookie, "a", relay, target)
	}
	n := lab.startTestNode(t, cookie)

	ctx, cancel := context.WithTimeout(context.Background(), 3*bound)
	defer cancel()
	err := n.Run(ctx, func(p *node.Process) error {
		if err := n.Connect(ctx, a.Name); err != nil {
			return err
		}
		if err := p.MonitorNode(a.Name); err != nil {
			return err
		}
		echo, err := p.Spawn(a.Name, "echo")
		if err != nil {
			return err
		}
		// Traffic: one ping in flight for 2.5 tick timeouts.
		var rtts []int64
		for start := time.Now(); time.Since(start) < 5*tick/2; {
			sent := time.Now()
			roundTrip(t, p, echo)
			rtts = append(rtts, int64(time.Since(sent)))
		}
		// Quiet: only ticks cross the link for 2 tick timeouts. Nothing
		// may arrive, a NodeDown least of all.
		qctx, qcancel := context.WithTimeout(ctx, 2*tick)
		m, err := p.Receive(qctx)
		qcancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("delayed link: got %#v (err %v) during the traffic or the quiet spell, want nothing", m, err)
		}
		if !slices.Contains(n.List(), a.Name) {
			t.Fatalf("List = %v after the quiet spell, want it to hold %s", n.List(), a.Name)
		}
		roundTrip(t, p, echo)
		samples := len(rtts)
		p50, p99 := percentiles(rtts)
		t.Logf("delay by %s: ping-pong through the link p50 %v p99 %v (%d round trips); no NodeDown (tick timeout %v)",
			how, time.Duration(p50), time.Duration(p99), samples, tick)
		if time.Duration(p50) < 2*oneWay {
			t.Fatalf("p50 %v is below the %v the delay adds: the delay is not on the path", time.Duration(p50), 2*oneWay)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// awaitMesh waits until the test node and every node process are all
// connected to each other.
func awaitMesh(t *testing.T, p *node.Process, nodes ...*Child) {
	t.Helper()
	all := []string{p.Node().Self()}
	for _, x := range nodes {
		all = append(all, x.Name)
	}
	eventually(t, "full mesh of "+fmt.Sprint(all), func() bool {
		if !slices.Equal(p.Node().List(), without(all, p.Node().Self())) {
			return false
		}
		for _, x := range nodes {
			if !slices.Equal(peersOf(t, p, x), without(all, x.Name)) {
				return false
			}
		}
		return true
	})
}

// eventually polls cond until it holds, failing the test after bound; it
// returns how long that took.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	return testutil.Eventually(t, bound, what, cond)
}

var syncSeq atomic.Int64

// roundTrip sends a token to an echo and waits for it to come back.
func roundTrip(t *testing.T, p *node.Process, echo node.PID) {
	t.Helper()
	token := syncSeq.Add(1)
	if err := p.Send(echo, codec.Tuple{p.Self(), token}); err != nil {
		t.Fatalf("send to echo %v: %v", echo, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if _, err := p.ReceiveMatch(ctx, func(m any) bool {
		tu, ok := m.(codec.Tuple)
		return ok && len(tu) == 2 && tu[1] == token
	}); err != nil {
		t.Fatalf("echo %v did not answer: %v", echo, err)
	}
}

// peersOf asks node process x for its List (the stats actor).
func peersOf(t *testing.T, p *node.Process, x *Child) []string {
	t.Helper()
	if _, err := p.Spawn(x.Name, "stats", p.Self()); err != nil {
		t.Fatalf("stats on %s: %v", x.Name, err)
	}
	m := receiveTagged(t, p, AtomStats, x.Name)
	var peers []string
	for _, v := range m[3].([]any) {
		peers = append(peers, v.(string))
	}
	return peers
}

// whereisOn asks node process x's registry replica for names (the whereis
// actor): a PID or "undefined" for each.
func whereisOn(t *testing.T, p *node.Process, x *Child, names ...string) []any {
	t.Helper()
	args := []any{p.Self()}
	for _, name := range names {
		args = append(args, name)
	}
	if _, err := p.Spawn(x.Name, "whereis", args...); err != nil {
		t.Fatalf("whereis on %s: %v", x.Name, err)
	}
	return receiveTagged(t, p, AtomWhereis, x.Name)[2].([]any)
}

func receiveTagged(t *testing.T, p *node.Process, tag codec.Atom, from string) codec.Tuple {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	m, err := p.ReceiveMatch(ctx, func(m any) bool {
		tu, ok := m.(codec.Tuple)
		return ok && len(tu) >= 3 && tu[0] == tag && tu[1] == from
	})
	if err != nil {
		t.Fatalf("no %s reply from %s: %v", tag, from, err)
	}
	return m.(codec.Tuple)
}

func sorted(names ...string) []string { slices.Sort(names); return names }

func without(names []string, drop string) []string {
	var out []string
	for _, n := range names {
		if n != drop {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
