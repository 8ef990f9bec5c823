package main

import (
	"os"
	"strings"
	"testing"

	"github.com/meshrt/mesh/internal/leaktest"
)

// TestMain lets this test binary stand in for meshbench itself: a run with
// node processes started from a test re-executes os.Executable() — this
// binary — as `<binary> node ...`, so the child node processes run exactly
// the code of `meshbench node` without a separate build. Test binaries are
// otherwise invoked with -test.* flags only, so a first argument "node" is
// unambiguous.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "node" {
		os.Exit(mainExit(os.Args[1:]))
	}
	// A race-enabled binary sleeps a second at exit; the node processes
	// started by the tests inherit this and exit at once.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	leaktest.VerifyTestMain(m)
}
