package bench

// Process-group fan-out: one Publish to a group whose members are spread
// over in-process nodes, against its in-run baseline, a Send to each member
// PID in a loop from the same node. An op ends when every member has the
// message.
//
//	MESH_PUBLISH_MEMBERS=100000 go test -run '^$' -bench 'GroupFanout' -benchtime 20x -count 6 ./bench/
//
// (default 10 000 members over 10 nodes).

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	nodes := make([]*node.Node, size)
	for i := range nodes {
		var opts []node.Option
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
	b.Run(fmt.Sprintf("members=%d/publish", members), func(b *testing.B) {
		for range b.N {
			want := got.Load() + int64(members)
			if err := pub.Groups().Publish("fanout", "tick"); err != nil {
				b.Fatal(err)
			}
			wait(want)
		}
	})
	b.Run(fmt.Sprintf("members=%d/send-each", members), func(b *testing.B) {
		for range b.N {
			want := got.Load() + int64(members)
			for _, pid := range pids {
				if err := pub.Send(pid, "tick"); err != nil {
					b.Fatal(err)
				}
			}
			wait(want)
		}
	})
}
