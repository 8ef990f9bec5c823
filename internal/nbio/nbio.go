// Package nbio makes the system calls of a round trip that cannot block
// — reads and writes of non-blocking descriptors, a poll with a zero
// timeout — without the Go runtime's syscall entry, on Linux.
//
// A system call made through package syscall or x/sys enters the
// runtime's syscall state (entersyscall), and that entry wakes the
// runtime's monitor thread (sysmon) when it sleeps deeply, which it does
// whenever it last found every P idle: between the two halves of a round
// trip, nearly always. So the first read after a wake-up for input paid a
// futex wake before it read, and the monitor then polled every 20 µs for
// a while on the other core (nanosleep), the core the other side of the
// round trip needs. The calls here are made as the runtime's own
// netpoller makes its calls, so the scheduler need not know of them
// (docs/latency.md has the measurements). Under the race detector, and
// off Linux, they are x/sys's calls, which tell the detector of the I/O.
//
// Two things follow for a caller. Its descriptors must be non-blocking:
// a raw call that blocked would hold its P, and the next stop-the-world
// would wait for it (package loop refuses its duplicates a socket
// without O_NONBLOCK). And the runtime's monitor preempts a goroutine that
// runs too long only while it is awake, and a raw read does not wake it:
// while raw calls are made, a timer of this package's (guard_linux.go)
// keeps the monitor from sleeping longer than 50 ms, and the first raw
// call after a pause wakes it, so that a goroutine computing right after a
// raw read is preempted within about 70 ms.
//
// Every function is safe from any goroutine; each returns -1 and the
// errno on an error, as x/sys does.
package nbio
