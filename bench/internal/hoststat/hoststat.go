// Package hoststat reads what the probes in bench/internal report beside
// their timings: this process's CPU time, and the share of the machine's
// time that the host stole from its vCPUs (/proc/stat's steal column; a run
// with steal over a few percent measures the host, not the program).
package hoststat

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU returns this process's CPU time so far (user and system) and the
// user part of it; zero where getrusage fails.
func CPU() (total, user time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Utime.Nano())
}

// Ticks are /proc/stat's ticks of all CPUs: their sum, and steal's.
type Ticks struct{ total, steal uint64 }

// Now reads /proc/stat's first line; false where there is none (not Linux)
// or it does not parse.
func Now() (Ticks, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Ticks{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return Ticks{}, false
	}
	var t Ticks
	for i, v := range f[1:] {
		if i >= 8 { // guest and guest_nice are counted in user and nice already
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return Ticks{}, false
		}
		t.total += n
		if i == 7 {
			t.steal = n
		}
	}
	return t, true
}

// StealSince returns the percentage of the machine's time stolen between
// before and t, and false when no tick passed.
func (t Ticks) StealSince(before Ticks) (float64, bool) {
	if t.total <= before.total {
		return 0, false
	}
	return 100 * float64(t.steal-before.steal) / float64(t.total-before.total), true
}
