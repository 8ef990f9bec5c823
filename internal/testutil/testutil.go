// Package testutil holds the test scaffolding the module's packages share:
// one way to wait for a condition, and one soak gate. (The goroutine-leak
// check is internal/leaktest.)
package testutil

import (
	"os"
	"testing"
	"time"
)

// Eventually polls cond every millisecond until it holds, failing the test
// (t.Fatalf, so call it from the test's goroutine) once bound has passed.
// It returns how long the wait took. bound is a failure bound for a loaded
// machine, not a timing assertion: a passing test never waits for it.
func Eventually(t testing.TB, bound time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > bound {
			t.Fatalf("still waiting after %v: %s", bound, what)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// SoakEnv is the environment variable that turns a test's short run into a
// soak: its value is how long the soak lasts (make soak sets it).
const SoakEnv = "MESH_SOAK"

// Soak returns how long a soak test should keep going: the duration in
// MESH_SOAK, or 0 when it is unset (the test then does its short run only).
// A malformed value fails the test.
func Soak(t testing.TB) time.Duration {
	t.Helper()
	v := os.Getenv(SoakEnv)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", SoakEnv, v, err)
	}
	return d
}
