package hoststat

import (
	"runtime"
	"testing"
)

func TestCPUGrowsWithWork(t *testing.T) {
	c0, _ := CPU()
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	c1, u1 := CPU()
	if c1 <= c0 || u1 > c1 {
		t.Fatalf("CPU before %v, after %v (user %v): want it grown, user within total (%d)", c0, c1, u1, x)
	}
}

func TestStealIsAShareOfTheTicksBetweenTwoReads(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/stat is Linux's")
	}
	before := Ticks{total: 1000, steal: 10}
	if s, ok := (Ticks{total: 1200, steal: 30}).StealSince(before); !ok || s != 10 {
		t.Fatalf("StealSince = %v, %v; want 10, true", s, ok)
	}
	if _, ok := before.StealSince(before); ok {
		t.Fatal("StealSince with no tick between the reads reported a share")
	}
	if _, ok := Now(); !ok {
		t.Fatal("Now could not read /proc/stat")
	}
}
