// Package sockbuf reads MESH_BENCH_SOCKBUF, the socket buffers a benchmark
// gives both of its nodes (node.WithSocketBuffers), so that the benchmark
// process and the peer programs it starts (which inherit its environment)
// are measured with the same kernel queues: "receive,notSent" in bytes,
// "0,0" for the kernel's own autotuned buffers; unset, the node's defaults.
//
//	MESH_BENCH_SOCKBUF=0,0 go test -run '^$' -bench 'HeadOfLine/stream=1MiB$' -benchtime 1000x ./bench/
package sockbuf

import (
	"fmt"
	"os"

	"github.com/meshrt/mesh/node"
)

// Env is the variable read.
const Env = "MESH_BENCH_SOCKBUF"

// Options returns the node options MESH_BENCH_SOCKBUF asks for (none when
// it is unset), or an error naming a malformed value.
func Options() ([]node.Option, error) {
	v := os.Getenv(Env)
	if v == "" {
		return nil, nil
	}
	var recv, notSent int
	if n, err := fmt.Sscanf(v, "%d,%d", &recv, &notSent); err != nil || n != 2 || recv < 0 || notSent < 0 {
		return nil, fmt.Errorf("%s=%q: want receive,notSent in bytes, both >= 0", Env, v)
	}
	return []node.Option{node.WithSocketBuffers(recv, notSent)}, nil
}
