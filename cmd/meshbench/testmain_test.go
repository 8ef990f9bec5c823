package main

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain lets this test binary stand in for meshbench itself: a cluster
// run started from a test re-executes os.Executable() — this binary — as
// `<binary> node ...`, and the multi-process tests do the same, so the child
// node processes run exactly the code of `meshbench node` without a separate
// build. Test binaries are otherwise invoked with -test.* flags only, so a
// first argument "node" is unambiguous.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "node" {
		os.Exit(mainExit(os.Args[1:]))
	}
	// A race-enabled binary sleeps a second at exit; the node processes
	// started by the tests inherit this and exit at once.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	// The in-process nodes and the child-process watchers all end; gnet's
	// worker pool (ants) starts goroutines at package init.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}
