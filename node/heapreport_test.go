package node

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
	"github.com/meshrt/mesh/internal/groups"
	"github.com/meshrt/mesh/internal/memlink"
	"github.com/meshrt/mesh/internal/wire"
)

// The worst case an authenticated peer can make a node with default limits
// hold: every table it can grow, filled to the point just before its cut,
// with the costliest entries it can make (longest names, one group per
// membership, fragments that never finish). Both nodes run in this process
// over an in-memory network; what the attacker's own side holds is made
// before the victim starts, or sent as raw frames that the attacker does not
// keep, so the heap growth after the victim starts is the victim's.
//
// MESH_HEAPREPORT=d divides every bound by d (1: the defaults, which take a
// few GiB and, on a 2-core machine, longer than an hour: a registration
// copies its shard of the registry's view, so filling a million names is
// quadratic in the shard size). It runs only when asked:
//
//	MESH_HEAPREPORT=16 go test -run TestWorstCaseHeap -v -timeout 60m ./node/
func TestWorstCaseHeapAnAuthenticatedPeerCanCause(t *testing.T) {
	div, _ := strconv.Atoi(os.Getenv("MESH_HEAPREPORT"))
	if div < 1 {
		t.Skip("a heap report: MESH_HEAPREPORT=16 go test -run TestWorstCaseHeap -v -timeout 60m ./node/ (16: every bound divided by 16)")
	}
	const wait = 10 * time.Minute
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("still waiting after %v: %s", wait, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	nw := memlink.NewNetwork()
	idle := func(p *Process) error {
		_, err := p.ReceiveMatch(context.Background(), func(m any) bool { return m == "stop" })
		return err
	}
	names, members := DefaultRegistryNamesPerPeer/div, DefaultMaxPeerGroupMembers/div
	spawned, relLimit := DefaultSpawnedPerPeer/div, DefaultRelationsPerPeer/div
	budget, pendingMax := DefaultReassemblyBytes/div, DefaultReassemblyPending/div
	limits := []Option{WithTickTimeout(time.Hour), WithRegistryLimits(names, 0), WithMaxPeerGroupMembers(members),
		WithPeerProcessLimits(spawned, relLimit), WithReassemblyLimits(budget, pendingMax, 0),
		WithMaxMessage(min(budget/2, codec.DefaultMaxMessage))}
	long := func(prefix string, i int, max int) string {
		s := fmt.Sprintf("%s%08d", prefix, i)
		return s + strings.Repeat("x", max-len(s))
	}
	// fill makes the names and memberships on n, pacing itself every 8 Ki
	// on done (what the peer holds: a registration goes to peers without
	// waiting, and a queue past its bound cuts the link).
	fill := func(n *Node, holder PID, done func(names, members int) bool) {
		for i := range names {
			if err := n.Global().Register(long("n", i, global.MaxNameLen), holder); err != nil {
				t.Fatal(err)
			}
			if (i+1)%(8<<10) == 0 {
				until("the names so far", func() bool { return done(i+1, 0) })
			}
		}
		for i := range members {
			if err := n.Groups().Join(long("g", i, groups.MaxGroupName), holder); err != nil {
				t.Fatal(err)
			}
			if (i+1)%(8<<10) == 0 {
				until("the memberships so far", func() bool { return done(names, i+1) })
			}
		}
	}

	// What the attacker's own replica costs, measured on a node alone.
	x := startNamed(t, "x", "c", onNet(nw), WithTickTimeout(time.Hour))
	x0 := heapMiB()
	fill(x, x.SpawnFunc(idle), func(int, int) bool { return true })
	own := heapMiB() - x0
	x.Stop(context.Background())

	a := startNamed(t, "a", "c", onNet(nw), WithTickTimeout(time.Hour))
	holder := a.SpawnFunc(idle)
	v := startNamed(t, "v", "c", append(limits, onNet(nw))...)
	v.Define("idle", func(p *Process, _ []any) error { return idle(p) })
	type row struct {
		table, made string
		mib         float64
	}
	var rows []row
	connect(t, a, v)
	base := heapMiB()
	last := base
	step := func(table, made string, less float64) {
		now := heapMiB()
		rows = append(rows, row{table, made, now - last - less})
		last = now
	}

	fill(a, holder, func(names, members int) bool {
		return v.Global().Len() == names && (members == 0 || len(v.Groups().Which()) == members)
	})
	step("registry names + group memberships (WithRegistryLimits, WithMaxPeerGroupMembers)",
		fmt.Sprintf("%d names of %d B, %d memberships in groups of %d B", names, global.MaxNameLen, members, groups.MaxGroupName), own)
	t.Logf("the attacker's own replica of them: %.0f MiB (measured on a node alone, subtracted)", own)

	var target PID
	for i := range spawned {
		pid, err := a.Spawn(v.Self(), "idle")
		if err != nil {
			t.Fatalf("spawn %d: %v", i, err)
		}
		target = pid
	}
	step("spawned processes (WithPeerProcessLimits)", fmt.Sprintf("%d idle processes", spawned), 0)

	pe := a.peerIfUp(v.Self())
	if pe == nil {
		t.Fatal("a lost v")
	}
	relations := 2*relLimit - 1 // counted again at 2x: the most held without a cut
	for i := range relations {
		id := uint64(1<<40 + i)
		m := wire.Monitor{From: PID{Node: a.self, Incarnation: a.incarnation, ID: id},
			To: target, Ref: Ref{Node: a.self, Incarnation: a.incarnation, ID: id}}
		if err := pe.sendMessage(0, m.Append(nil)); err != nil {
			t.Fatalf("monitor %d: %v", i, err)
		}
	}
	tp := v.local(target)
	until("v holds the monitors", func() bool {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		return tp.rel != nil && len(tp.rel.monitors) == relations
	})
	step("monitors held (WithPeerProcessLimits)", fmt.Sprintf("%d monitors on one process", relations), 0)

	// Unfinished fragmented messages: the first 64 KiB of many 4 MiB ones,
	// as many as the budget takes.
	lim := v.opts.reassembly
	chunk := wire.DefaultFragmentSize
	unfinished := min(lim.MaxPending, lim.Budget/(chunk+wire.ReassemblyOverhead)) - 1
	big := make([]byte, 4<<20)
	for i := range unfinished {
		item, err := wire.AppendMessage(nil, target.ID, uint64(1<<41+i), big, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		var f wire.Fragmenter
		if err := f.Reset(uint64(1<<42+i), item, chunk); err != nil {
			t.Fatal(err)
		}
		if err := pe.sendMessage(0, f.Next(nil)); err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
	}
	vpe := v.peerIfUp(a.Self())
	until("v holds the fragments", func() bool {
		return reasmPending(vpe) == unfinished
	})
	step("unfinished fragmented messages (WithReassemblyLimits)", fmt.Sprintf("%d of 64 KiB", unfinished), 0)

	total := 0.0
	for _, r := range rows {
		total += r.mib
	}
	t.Logf("victim heap growth, Go %s, %s/%s, every bound the default / %d:", runtime.Version(), runtime.GOOS, runtime.GOARCH, div)
	t.Logf("| table (option) | made | heap growth, MiB |")
	t.Logf("| --- | --- | --- |")
	for _, r := range rows {
		t.Logf("| %s | %s | %.0f |", r.table, r.made, r.mib)
	}
	t.Logf("| **all at once** | | **%.0f** |", total)

	// One more monitor crosses the next count: v cuts a, and what the
	// link held goes with it (the spawned processes stay: they outlive it).
	m := wire.Monitor{From: PID{Node: a.self, Incarnation: a.incarnation, ID: 1 << 43},
		To: target, Ref: Ref{Node: a.self, Incarnation: a.incarnation, ID: 1 << 43}}
	_ = pe.sendMessage(0, m.Append(nil))
	until("v cuts a", func() bool { return v.peerIfUp(a.Self()) == nil })
	until("v drops a's names and memberships", func() bool { return v.Global().Len() == 0 && len(v.Groups().Which()) == 0 })
	t.Logf("after the cut (the %d spawned processes still alive, the attacker's replica too): %.0f MiB over the start", spawned, heapMiB()-base)
}

// reasmPending returns pe's unfinished fragmented messages. The count is
// written on pe's loop and read here without it: a racy read that settles,
// enough for a report that never runs under -race (it needs the memory).
func reasmPending(pe *peer) int { return pe.reasm.Pending() }

// heapMiB returns the live heap and the goroutine stacks (a process's
// stack is not heap) after two collections, in MiB.
func heapMiB() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc+ms.StackInuse) / (1 << 20)
}
