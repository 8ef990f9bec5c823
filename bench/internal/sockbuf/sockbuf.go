// Package sockbuf reads MESH_BENCH_SOCKBUF, the socket buffers a benchmark
// gives both of its nodes (node.WithSocketBuffers), so that the benchmark
// process and the peer programs it starts (which inherit its environment)
// are measured with the same kernel queues: "receive,notSent" in bytes,
// "0,0" for the kernel's own autotuned buffers; unset, the node's defaults.
// MESH_BENCH_BULKNICE likewise gives both nodes node.WithBulkNice (0..19).
//
//	MESH_BENCH_SOCKBUF=0,0 go test -run '^$' -bench 'HeadOfLine/stream=1MiB$' -benchtime 1000x ./bench/
//	MESH_BENCH_BULKNICE=5 go test -run '^$' -bench 'HeadOfLine/stream=1MiB$' -benchtime 1000x ./bench/
package sockbuf

import (
	"fmt"
	"os"

	"github.com/meshrt/mesh/node"
)

// Env and NiceEnv are the variables read.
const (
	Env     = "MESH_BENCH_SOCKBUF"
	NiceEnv = "MESH_BENCH_BULKNICE"
)

// Options returns the node options MESH_BENCH_SOCKBUF and
// MESH_BENCH_BULKNICE ask for (none when they are unset), or an error
// naming a malformed value.
func Options() ([]node.Option, error) {
	var opts []node.Option
	if v := os.Getenv(Env); v != "" {
		var recv, notSent int
		if n, err := fmt.Sscanf(v, "%d,%d", &recv, &notSent); err != nil || n != 2 || recv < 0 || notSent < 0 {
			return nil, fmt.Errorf("%s=%q: want receive,notSent in bytes, both >= 0", Env, v)
		}
		opts = append(opts, node.WithSocketBuffers(recv, notSent))
	}
	if v := os.Getenv(NiceEnv); v != "" {
		var nice int
		if n, err := fmt.Sscanf(v, "%d", &nice); err != nil || n != 1 || nice < 0 || nice > 19 {
			return nil, fmt.Errorf("%s=%q: want a niceness in 0..19", NiceEnv, v)
		}
		opts = append(opts, node.WithBulkNice(nice))
	}
	return opts, nil
}
