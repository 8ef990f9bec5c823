//go:build linux

package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// processCPU returns the CPU time (user and system, every thread) process
// pid has used so far and its minor page faults (fresh memory touched), from
// /proc/<pid>/stat; pid 0 is this process. The kernel counts CPU time in
// clock ticks (USER_HZ, 100 a second on Linux): a figure over a run of a
// second or more is good to a percent or two.
func processCPU(pid int) (cpu time.Duration, faults int64, ok bool) {
	name := "/proc/self/stat"
	if pid != 0 {
		name = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, 0, false
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// the fields after it start past the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); minflt is field 10, utime and stime are
	// fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, false
	}
	flt, err0 := strconv.ParseInt(string(f[7]), 10, 64)
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		return 0, 0, false
	}
	const tick = time.Second / 100 // USER_HZ
	return time.Duration(ut+st) * tick, flt, true
}
