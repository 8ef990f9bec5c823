package loop

// Admission of inbound connections that have not proved anything yet.
//
// Anyone who can reach the port can open a TCP connection and sit on it. The
// rules below keep such strangers from taking what proven peers and the
// node's own dials need.
//
// An inbound connection is silent from accept until its first bytes arrive,
// then talking (TLS and the hook) until its handshake ends. Silent ones cost
// a parked goroutine and a socket; talking ones cost the server TLS work.
// Each kind has its own bound, so a flood of idle sockets only ever competes
// with other idle sockets for the time it takes a real dialler to send its
// TLS hello (a few milliseconds).
//
// Invariants (guarded by admission.mu):
//   - Dials never wait on strangers: Dial takes a slot of Engine.dialSlots,
//     inbound connections an entry of admission.pending; the bounds are
//     separate.
//   - pending holds the inbound connections in their handshake, oldest
//     first: at most maxSilent silent ones, at most max talking ones, and at
//     most perSource from one source address.
//   - No bound refuses the newest connection while an older one can make
//     way: a new arrival at the silent bound evicts the oldest silent
//     connection; one that starts talking at the talking bound evicts the
//     oldest talking one; at its source's bound, an arrival evicts that
//     source's oldest silent one (if the source's connections all talk, the
//     arrival is refused: that source is busy enough).
//   - An evicted connection leaves pending at once (its slot is free) and its
//     socket is closed, which ends its handshake goroutine promptly. Those
//     goroutines still count in running; running never exceeds
//     2*(max+maxSilent), so eviction cannot be turned into unbounded
//     goroutines.
//   - A connection leaves pending exactly once: evicted, or done.
//
// The first bytes must come within the first-byte timeout (default 1 s),
// much shorter than the handshake timeout: a silent socket holds a slot for
// at most that long even when nobody else arrives.

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// inbound is one accepted connection in its handshake.
type inbound struct {
	nc      net.Conn
	source  string
	talking bool        // guarded by admission.mu: its first bytes arrived
	evicted atomic.Bool // set once, under admission.mu
	hooked  atomic.Bool // the hook runs: it reports this connection's outcome
}

// verdict is admission's answer to a new connection.
type verdict int

const (
	admitted      verdict = iota
	admittedEvict         // admitted by evicting another connection
	refusedSource         // its source holds perSource talking connections
	refusedFull           // too many handshake goroutines still running
)

func (v verdict) String() string {
	switch v {
	case admitted:
		return "admitted"
	case admittedEvict:
		return "admitted, another evicted"
	case refusedSource:
		return "refused: source at its bound"
	case refusedFull:
		return "refused: evicted handshakes still finishing"
	}
	return "verdict?"
}

// admission is the set of inbound connections in their handshake.
type admission struct {
	max, maxSilent, perSource int

	mu       sync.Mutex
	pending  []*inbound // oldest first
	silent   int        // how many in pending are silent
	bySource map[string]int
	running  int // handshake goroutines: pending plus evicted ones not yet done
}

func newAdmission(max, maxSilent, perSource int) *admission {
	return &admission{max: max, maxSilent: maxSilent, perSource: perSource, bySource: make(map[string]int)}
}

// admit decides for a new, silent connection from source. When it is
// admitted in exchange for another, victim is that other one, already out of
// the set: the caller closes its socket. Safe from any goroutine.
func (a *admission) admit(nc net.Conn, source string) (in, victim *inbound, v verdict) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running >= 2*(a.max+a.maxSilent) {
		return nil, nil, refusedFull
	}
	v = admitted
	if a.bySource[source] >= a.perSource {
		i := a.oldestLocked(false, source)
		if i < 0 {
			return nil, nil, refusedSource
		}
		victim = a.evictLocked(i)
		v = admittedEvict
	} else if a.silent >= a.maxSilent {
		victim = a.evictLocked(a.oldestLocked(false, ""))
		v = admittedEvict
	}
	in = &inbound{nc: nc, source: source}
	a.pending = append(a.pending, in)
	a.silent++
	a.bySource[source]++
	a.running++
	return in, victim, v
}

// talk records that in's first bytes arrived. At the talking bound the
// oldest talking connection makes way: victim is it, already out of the
// set, for the caller to close. ok is false if in was evicted meanwhile.
// Safe from any goroutine.
func (a *admission) talk(in *inbound) (victim *inbound, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in.evicted.Load() {
		return nil, false
	}
	if len(a.pending)-a.silent >= a.max {
		victim = a.evictLocked(a.oldestLocked(true, ""))
	}
	in.talking = true
	a.silent--
	return victim, true
}

// oldestLocked returns the index of the oldest pending connection that is
// talking (or silent), from source if source is not empty; -1 if none.
func (a *admission) oldestLocked(talking bool, source string) int {
	for i, in := range a.pending {
		if in.talking == talking && (source == "" || in.source == source) {
			return i
		}
	}
	return -1
}

// evictLocked takes pending[i] out of the set and marks it evicted.
func (a *admission) evictLocked(i int) *inbound {
	in := a.pending[i]
	a.removeLocked(i)
	in.evicted.Store(true)
	return in
}

func (a *admission) removeLocked(i int) {
	in := a.pending[i]
	a.pending = append(a.pending[:i], a.pending[i+1:]...)
	if !in.talking {
		a.silent--
	}
	if a.bySource[in.source]--; a.bySource[in.source] <= 0 {
		delete(a.bySource, in.source)
	}
}

// done ends in's handshake: it leaves the set unless it was evicted. It
// reports whether in was evicted (then its handshake's result must be
// discarded). Safe from any goroutine; call once per admitted connection.
func (a *admission) done(in *inbound) (evicted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running--
	if in.evicted.Load() {
		return true
	}
	for i, p := range a.pending {
		if p == in {
			a.removeLocked(i)
			break
		}
	}
	return false
}

// len returns how many inbound handshakes are pending.
func (a *admission) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// sourceOf is the address an inbound connection's bound counts against:
// its IP without the port.
func sourceOf(nc net.Conn) string {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return nc.RemoteAddr().String()
}

// acceptBackoff is how long the accept loop waits after its Accept failed
// (out of file descriptors and the like), given the wait after the previous
// failure (0 after a success): doubling from 5 ms, at most 1 s.
func acceptBackoff(prev time.Duration) time.Duration {
	return min(max(2*prev, 5*time.Millisecond), time.Second)
}

// warnEvery bounds how often a limit being hit is logged.
const warnEvery = 10 * time.Second

// limitWarner logs a Warn the first time a limit is hit and then at most
// once per warnEvery while it keeps being hit, with the count since the
// last line.
type limitWarner struct {
	mu     sync.Mutex
	last   time.Time
	missed uint64
}

// hit records one hit and reports whether to log now, with how many hits
// the line stands for.
func (w *limitWarner) hit(now time.Time) (log bool, count uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.missed++
	if !w.last.IsZero() && now.Sub(w.last) < warnEvery {
		return false, 0
	}
	w.last = now
	count, w.missed = w.missed, 0
	return true, count
}

// awaitFirstBytes waits until nc has input to read (or the peer closed),
// without consuming any, until nc's read deadline (the caller's); a passed
// deadline gives an error wrapping os.ErrDeadlineExceeded.
func awaitFirstBytes(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil // not a socket (tests): TLS's own deadline applies
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var b [1]byte
	var peekErr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			_, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // nothing yet: wait until readable
			}
			peekErr = e // nil: bytes, or EOF, which TLS reports
			return true
		}
	})
	if err != nil {
		return err
	}
	return peekErr
}
