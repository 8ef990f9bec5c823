package bench

// Process-group fan-out: one Publish to a group whose members are spread
// over 10 in-process nodes, against its in-run baseline, a Send to each
// member PID in a loop from the same node; each until every member has the
// message. Reported per op: publish-ms, send-each-ms, speedup-x (their
// ratio), caller-speedup-x (the same ratio for the time until Publish or
// the send loop returns: the caller's own cost) and frames/publish (frames
// the publisher wrote for one Publish: one per other node, 9).
//
//	MESH_PUBLISH_MEMBERS=100000 go test -run '^$' -bench 'GroupFanout' -benchtime 10x -count 3 ./bench/
//
// (default 10 000 members). MESH_PUBLISH_PROFILE=dir writes a CPU profile
// of each op's Publish and of its send loop, separately (dir/publish-N.pprof,
// dir/send-N.pprof; `go tool pprof` merges the files it is given).

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrt/mesh/node"
)

func BenchmarkGroupFanout(b *testing.B) {
	members := 10_000
	if s := os.Getenv("MESH_PUBLISH_MEMBERS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 10 {
			b.Fatalf("MESH_PUBLISH_MEMBERS=%q", s)
		}
		members = v
	}
	const size = 10
	reg := prometheus.NewRegistry()
	quiet := quietLogger()
	nodes := make([]*node.Node, size)
	for i := range nodes {
		// No ticks during the run: the frame count is the Publish's alone.
		opts := []node.Option{node.WithMetrics(reg), node.WithTickTimeout(time.Hour), node.WithLogger(quiet)}
		if i > 0 {
			opts = append(opts, node.WithSeeds(nodes[0].Self()))
		}
		n, err := node.Start(fmt.Sprintf("f%d@127.0.0.1:0", i), "fanout", opts...)
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
	}
	defer func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = n.Stop(ctx)
			})
		}
		wg.Wait()
	}()
	for {
		full := true
		for _, n := range nodes {
			full = full && len(n.List()) == size-1
		}
		if full {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var got atomic.Int64
	for i := range members {
		n := nodes[i%size]
		pid := n.SpawnFunc(func(p *node.Process) error {
			for {
				if _, err := p.Receive(context.Background()); err != nil {
					return nil
				}
				got.Add(1)
			}
		})
		if err := n.Groups().Join("fanout", pid); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range nodes {
		for len(n.Groups().Members("fanout")) != members {
			time.Sleep(10 * time.Millisecond)
		}
	}
	pub := nodes[0]
	pids := pub.Groups().Members("fanout")
	wait := func(want int64) {
		for got.Load() < want {
			time.Sleep(50 * time.Microsecond)
		}
	}
	// One op is a Publish, then a Send to each member in a loop, each
	// until every member has the message: the two in the same run, op by
	// op, so that the ratio holds however busy the machine is. Frames are
	// the publisher's mesh_frames_sent_total, summed over its peers.
	b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
		var publish, sendEach, publishCall, sendLoop time.Duration
		var frames float64
		for i := range b.N {
			f0 := framesSent(b, reg, pub.Self())
			stop := phaseProfile(b, "publish", i)
			t0 := time.Now()
			want := got.Load() + int64(members)
			if err := pub.Groups().Publish("fanout", "tick"); err != nil {
				b.Fatal(err)
			}
			publishCall += time.Since(t0)
			wait(want)
			publish += time.Since(t0)
			stop()
			frames += framesSent(b, reg, pub.Self()) - f0

			stop = phaseProfile(b, "send", i)
			t0 = time.Now()
			want = got.Load() + int64(members)
			for _, pid := range pids {
				if err := pub.Send(pid, "tick"); err != nil {
					b.Fatal(err)
				}
			}
			sendLoop += time.Since(t0)
			wait(want)
			sendEach += time.Since(t0)
			stop()
		}
		ops := float64(b.N)
		b.ReportMetric(ms(publish)/ops, "publish-ms")
		b.ReportMetric(ms(sendEach)/ops, "send-each-ms")
		b.ReportMetric(float64(sendEach)/float64(publish), "speedup-x")
		b.ReportMetric(float64(sendLoop)/float64(publishCall), "caller-speedup-x")
		b.ReportMetric(frames/ops, "frames/publish")
	})
}

// phaseProfile starts a CPU profile of one phase of op i into
// $MESH_PUBLISH_PROFILE/phase-i.pprof, if that is set, and returns what
// stops it.
func phaseProfile(b *testing.B, phase string, i int) (stop func()) {
	return cpuProfile(b, "MESH_PUBLISH_PROFILE", fmt.Sprintf("%s-%d.pprof", phase, i))
}

// framesSent is the frames node has written to its peers so far.
func framesSent(b *testing.B, g prometheus.Gatherer, node string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		b.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "mesh_frames_sent_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "node" && l.GetValue() == node {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
