package bench

import (
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
)

// cpuProfile starts a CPU profile written to $env/name if the environment
// variable env names a directory, and returns what stops it (a no-op when
// env is unset). The benchmarks that profile their phases share it.
func cpuProfile(b *testing.B, env, name string) (stop func()) {
	dir := os.Getenv(env)
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}
