package bench

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pingDump writes each round trip of a ping-pong benchmark as a line "start
// duration" (ns; the start on CLOCK_MONOTONIC, the clock of perf's -k mono
// and of runtime/trace) to $MESH_BENCH_PINGDUMP.<n>.<benchmark> when that
// variable is set, so that the slowest round trips can be found in a
// scheduler trace (perf sched record -k mono) or an execution trace of the
// same run. Unset, it records nothing.
type pingDump struct {
	b     *testing.B
	ref   time.Time
	mono0 int64 // CLOCK_MONOTONIC at ref
	buf   [][2]int64
	name  string
}

var pingDumps atomic.Int64

func newPingDump(b *testing.B) *pingDump {
	prefix := os.Getenv("MESH_BENCH_PINGDUMP")
	if prefix == "" {
		return nil
	}
	var ts unix.Timespec
	ref := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		b.Fatal(err)
	}
	name := regexp.MustCompile(`[^A-Za-z0-9=.-]+`).ReplaceAllString(b.Name(), "_")
	return &pingDump{
		b:     b,
		ref:   ref,
		mono0: ts.Nano(),
		buf:   make([][2]int64, 0, b.N),
		name:  fmt.Sprintf("%s.%d.%s", prefix, pingDumps.Add(1), name),
	}
}

func (d *pingDump) record(t0 time.Time, rtt time.Duration) {
	if d == nil {
		return
	}
	d.buf = append(d.buf, [2]int64{d.mono0 + int64(t0.Sub(d.ref)), int64(rtt)})
}

func (d *pingDump) close() {
	if d == nil {
		return
	}
	f, err := os.Create(d.name)
	if err != nil {
		d.b.Error(err)
		return
	}
	w := bufio.NewWriter(f)
	for _, r := range d.buf {
		fmt.Fprintf(w, "%d %d\n", r[0], r[1])
	}
	if err := w.Flush(); err != nil {
		d.b.Error(err)
	}
	if err := f.Close(); err != nil {
		d.b.Error(err)
	}
}
