// Package intern shares the strings that repeat in every decoded PID and
// Ref (node names), so decoding one does not allocate its name. It serves
// package codec's term decoder and the distribution wire's control frames.
//
// The table is copy-on-write: lookups read an immutable map through an
// atomic pointer, without a lock. It is bounded (MaxEntries); past the bound
// names are simply allocated.
package intern

import (
	"sync"
	"sync/atomic"
)

// MaxEntries bounds the table: a peer that sends many distinct names cannot
// grow it further.
const MaxEntries = 4096

var (
	mu  sync.Mutex
	tab atomic.Pointer[map[string]string]
)

// Bytes returns string(b), shared with earlier calls for the same bytes
// while the table has room. Safe from any goroutine.
func Bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if m := tab.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok {
			return s
		}
	}
	s := string(b)
	mu.Lock()
	defer mu.Unlock()
	old := tab.Load()
	var n int
	if old != nil {
		n = len(*old)
		if v, ok := (*old)[s]; ok {
			return v
		}
	}
	if n >= MaxEntries {
		return s
	}
	m := make(map[string]string, n+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[s] = s
	tab.Store(&m)
	return s
}
