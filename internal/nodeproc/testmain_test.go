package nodeproc

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/leaktest"
	"github.com/meshrt/mesh/node"
)

// TestMain lets this test binary stand in for a node process: the tests
// start os.Executable() — this binary — as `<binary> node -name N -cookie C
// [-tick D] [-listen ADDR]`, which serves this package's actors until
// SIGINT, SIGTERM or the end of its stdin, exactly as `meshbench node
// --stop-at-eof` does, without a separate build. Test binaries are otherwise
// invoked with -test.* flags only, so a first argument "node" is
// unambiguous.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "node" {
		os.Exit(helperNode(os.Args[2:]))
	}
	// A race-enabled binary sleeps a second at exit; the node processes
	// started by the tests inherit this and exit at once.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	leaktest.VerifyTestMain(m)
}

// helperNode is the node process the tests start.
func helperNode(args []string) int {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	name := fs.String("name", "", "node name")
	cookie := fs.String("cookie", "", "cookie")
	listen := fs.String("listen", "", "address to bind")
	tick := fs.Duration("tick", 15*time.Second, "tick timeout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := []node.Option{
		node.WithTickTimeout(*tick),
		node.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}
	if *listen != "" {
		opts = append(opts, node.WithListen(*listen))
	}
	err := Serve(ctx, Config{Name: *name, Cookie: *cookie, Opts: opts, StopAtEOF: true}, os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	return 0
}

// percentiles returns the 50th and 99th percentiles of samples (nearest
// rank), or zeros for none. It sorts samples.
func percentiles(samples []int64) (p50, p99 int64) {
	if len(samples) == 0 {
		return 0, 0
	}
	slices.Sort(samples)
	rank := func(q float64) int64 {
		i := int(math.Ceil(q*float64(len(samples)))) - 1
		return samples[max(0, min(i, len(samples)-1))]
	}
	return rank(0.50), rank(0.99)
}
