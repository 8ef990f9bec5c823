package testutil

import (
	"testing"
	"time"
)

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	Eventually(t, time.Minute, "the third poll", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times, want 3", n)
	}
}

func TestSoakReadsTheEnvironment(t *testing.T) {
	t.Setenv(SoakEnv, "")
	if d := Soak(t); d != 0 {
		t.Fatalf("unset: %v", d)
	}
	t.Setenv(SoakEnv, "90s")
	if d := Soak(t); d != 90*time.Second {
		t.Fatalf("90s: %v", d)
	}
}
