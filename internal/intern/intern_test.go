package intern

import (
	"fmt"
	"maps"
	"testing"
	"unsafe"
)

func TestBytesSharesRepeatedNames(t *testing.T) {
	a := Bytes([]byte("node-a@h:1"))
	b := Bytes([]byte("node-a@h:1"))
	if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatal("the same name was not shared")
	}
	if n := testing.AllocsPerRun(100, func() { _ = Bytes([]byte("node-a@h:1")) }); n != 0 {
		t.Fatalf("%v allocs for an interned name, want 0", n)
	}
	if Bytes(nil) != "" {
		t.Fatal("empty")
	}
}

func TestBytesIsBounded(t *testing.T) {
	// Fill the table to one short of its bound directly (adding names one
	// by one copies the table each time), then go past it.
	full := map[string]string{}
	if m := tab.Load(); m != nil {
		maps.Copy(full, *m)
	}
	for i := 0; len(full) < MaxEntries-1; i++ {
		s := fmt.Sprintf("bound-%d", i)
		full[s] = s
	}
	tab.Store(&full)
	for i := range 10 {
		_ = Bytes(fmt.Appendf(nil, "over-%d", i))
	}
	if n := len(*tab.Load()); n > MaxEntries {
		t.Fatalf("table holds %d names, bound %d", n, MaxEntries)
	}
	if s := Bytes([]byte("past-the-bound")); s != "past-the-bound" {
		t.Fatalf("got %q", s)
	}
}
