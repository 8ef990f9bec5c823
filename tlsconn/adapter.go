package tlsconn

// Invariants:
//   - mode only moves from blocking to loop-fed (Detach), never back.
//   - In loop-fed mode the read half (Feed, Unread, Read, Drained) is used
//     by the conn's reader only: its loop, or the goroutine the loop lent
//     its read duty to (package loop's inline reading), the hand-off
//     ordering their uses. The write half (Write and the output buffer) may be
//     used by the loop and by one sender doing a direct write at once
//     (tls.Conn serialises its own writes under its output mutex, so
//     appends arrive in record order); mu guards out.
//   - in is a view of the loop's input buffer; it is valid only between
//     Feed and the return of the loop callback that fed it. The caller
//     must Feed(nil) (or consume it all) before that buffer is reused.
//   - Write in loop-fed mode never fails: a failed write would be latched
//     by tls.Conn forever.
//   - rec follows the record framing of every byte tls.Conn has read
//     through the adapter in blocking mode and of every byte fed after
//     (Feed moves it to the feed's end at once). A loop-fed Read gives the
//     feed's last record (the one the feed ends in, or ends) alone, never
//     with bytes before it. tls.Conn reads from its net.Conn only when its
//     raw input lacks part of the record it is at, so from the first
//     loop-fed Read on (framed) it asks for the last record only once it
//     has opened every record before it, and once it opened a last record
//     that ended the feed it holds no ciphertext (see Drained).

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrWouldBlock is what a loop-fed [Adapter] returns from Read once its fed
// input is used up. It is a net.Error with Timeout and Temporary true, which
// tls.Conn does not latch. Test for it with errors.Is.
var ErrWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsconn: would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Adapter is the net.Conn under a tls.Conn; see the package documentation
// for its two modes. Not safe for concurrent use: in blocking mode it is
// used by the handshake goroutine, in loop-fed mode by the conn's reader
// (its read half) and writers (its write half), as the invariants say.
type Adapter struct {
	dbg adapterDebug // the meshdebug build's checks (debug_on.go); empty (and not last: no padding) otherwise

	local  net.Addr
	remote net.Addr

	// dmu guards nc and detached against deadline calls from other
	// goroutines (the owner moving the handshake deadline to abort it);
	// reads and writes in blocking mode run on the handshake goroutine,
	// which is also the one that calls Detach.
	dmu      sync.Mutex
	nc       net.Conn // blocking mode transport; nil after Detach
	detached bool
	held     bool // the owner holds the deadline (SetHandshakeDeadline)

	in     []byte       // loop-fed: ciphertext offered by the loop, not yet read
	before int          // loop-fed: how many bytes of in come before the feed's last record
	rec    recordCursor // the framing of the stream, up to the end of in
	framed bool         // a loop-fed Read happened (see the invariants)
	lost   bool         // fed input was replaced unread: rec no longer knows the stream

	mu  sync.Mutex
	out []byte // loop-fed: ciphertext written by tls.Conn, not yet taken
	// has is len(out) > 0, stored under mu and read without it
	// (PendingOutput: a load where a lock and an unlock were two atomic
	// read-modify-writes, on every read pass and every drain).
	has atomic.Bool
}

var _ net.Conn = (*Adapter)(nil)

// NewAdapter wraps nc in blocking mode.
func NewAdapter(nc net.Conn) *Adapter {
	return &Adapter{nc: nc, local: nc.LocalAddr(), remote: nc.RemoteAddr()}
}

// Server wraps nc in a new [Adapter] in blocking mode and returns the server
// side tls.Conn over it. The handshake has not run yet.
func Server(nc net.Conn, cfg *tls.Config) (*tls.Conn, *Adapter) {
	a := NewAdapter(nc)
	return tls.Server(a, cfg), a
}

// Client is [Server] for the dialling side.
func Client(nc net.Conn, cfg *tls.Config) (*tls.Conn, *Adapter) {
	a := NewAdapter(nc)
	return tls.Client(a, cfg), a
}

// Detach switches the adapter to loop-fed mode and returns the net.Conn it
// wrapped, which the caller hands to its event loop. Call it only after the
// handshake and the post-TLS hook have returned, with no call in flight.
func (a *Adapter) Detach() net.Conn {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	a.detached = true
	a.held = false
	nc := a.nc
	a.nc = nil
	return nc
}

// SetHandshakeDeadline is the owner's one way to set the wrapped
// connection's deadline during the handshake, and it makes the owner the
// only one who moves it: from a call with a non-zero t until a call with
// the zero time (which clears the deadline), SetDeadline, SetReadDeadline
// and SetWriteDeadline change nothing. Those are what tls.Conn's own
// deadline methods call, so a post-TLS hook (or a library it runs) cannot
// move or clear the handshake deadline by accident. A time in the past
// aborts a blocked Read or Write at once. Blocking mode only: after Detach
// it does nothing. Safe from any goroutine.
func (a *Adapter) SetHandshakeDeadline(t time.Time) error {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	if a.detached {
		return nil
	}
	a.held = !t.IsZero()
	return a.nc.SetDeadline(t)
}

// setDeadline applies one of the net.Conn deadline methods unless the owner
// holds the deadline or the adapter is loop-fed.
func (a *Adapter) setDeadline(set func(net.Conn) error) error {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	if a.detached || a.held {
		return nil
	}
	return set(a.nc)
}

// Feed offers ciphertext to the next reads (loop-fed mode). b is not
// copied: keep it unchanged until it is used up or replaced. Replacing
// input not read yet drops it (a conn that closes does): from then on
// [Adapter.Drained] is false. The conn's reader only (see the invariants).
func (a *Adapter) Feed(b []byte) {
	if len(a.in) > 0 {
		a.lost = true
	}
	a.in = b
	a.before = a.rec.advance(b)
	a.dbgFeed(b)
}

// Unread returns how many fed bytes the tls.Conn has not read yet. The
// conn's reader only.
func (a *Adapter) Unread() int { return len(a.in) }

// Drained reports whether the tls.Conn holds none of the ciphertext it
// read through the adapter and no fed input is left: the fed input is used
// up, it ended where a record ended, and tls.Conn took that last record
// alone, having opened every record before it (Read gives the feed's last
// record separately). Right after a tls.Conn Read that returned plaintext
// with a nil error into a buffer it did not fill (so tls.Conn keeps no
// plaintext either), true means that a further Read would only return
// [ErrWouldBlock]: the caller can skip it. After any other call it means
// nothing. False is always safe: Read until ErrWouldBlock. Loop-fed mode,
// the conn's reader only.
func (a *Adapter) Drained() bool {
	return a.framed && !a.lost && len(a.in) == 0 && a.rec.atBoundary()
}

// SwapOutput returns the ciphertext written so far and gives the adapter
// spare[:0] to append to from then on, in one step: bytes written by
// tls.Conn meanwhile land in exactly one of the two. Safe alongside
// tls.Conn writes from another goroutine.
func (a *Adapter) SwapOutput(spare []byte) []byte {
	if spare != nil {
		spare = spare[:0]
	}
	a.mu.Lock()
	b := a.out
	a.out = spare
	if len(b) > 0 {
		a.has.Store(false)
	}
	a.dbgSwapped(b)
	a.mu.Unlock()
	return b
}

// PendingOutput reports whether ciphertext is waiting to be taken (for
// instance a KeyUpdate answer a Read produced). Safe from any goroutine;
// it takes no lock, and is ordered with the caller's atomics like one (a
// Write's bytes are counted before the Write returns, a SwapOutput's
// taking of them before it returns).
func (a *Adapter) PendingOutput() bool { return a.has.Load() }

// Read implements net.Conn. In loop-fed mode it gives the fed bytes that
// come before the feed's last record, as many as p holds, and once those
// are read the last record (the rest of the feed); ErrWouldBlock once the
// feed is used up.
func (a *Adapter) Read(p []byte) (int, error) {
	if !a.detached {
		n, err := a.nc.Read(p)
		a.rec.advance(p[:max(n, 0)])
		return n, err
	}
	a.framed = true
	if len(a.in) == 0 {
		return 0, ErrWouldBlock
	}
	lim := a.before
	if lim == 0 {
		lim = len(a.in)
	}
	n := copy(p, a.in[:lim])
	a.before -= min(n, a.before)
	a.dbgRead(p[:n])
	a.in = a.in[n:]
	return n, nil
}

// Write implements net.Conn. In loop-fed mode it appends to the output
// buffer and never fails.
func (a *Adapter) Write(p []byte) (int, error) {
	if !a.detached {
		return a.nc.Write(p)
	}
	a.mu.Lock()
	a.out = append(a.out, p...)
	if len(p) > 0 {
		a.has.Store(true)
	}
	a.dbgWrote(p)
	a.mu.Unlock()
	return len(p), nil
}

// Close closes the wrapped net.Conn in blocking mode; in loop-fed mode it
// does nothing, since the socket belongs to the loop.
func (a *Adapter) Close() error {
	if !a.detached {
		return a.nc.Close()
	}
	return nil
}

// LocalAddr implements net.Conn.
func (a *Adapter) LocalAddr() net.Addr { return a.local }

// RemoteAddr implements net.Conn.
func (a *Adapter) RemoteAddr() net.Addr { return a.remote }

// SetDeadline implements net.Conn; a no-op in loop-fed mode and while the
// owner holds the deadline (see SetHandshakeDeadline).
func (a *Adapter) SetDeadline(t time.Time) error {
	return a.setDeadline(func(nc net.Conn) error { return nc.SetDeadline(t) })
}

// SetReadDeadline implements net.Conn, like SetDeadline.
func (a *Adapter) SetReadDeadline(t time.Time) error {
	return a.setDeadline(func(nc net.Conn) error { return nc.SetReadDeadline(t) })
}

// SetWriteDeadline implements net.Conn, like SetDeadline.
func (a *Adapter) SetWriteDeadline(t time.Time) error {
	return a.setDeadline(func(nc net.Conn) error { return nc.SetWriteDeadline(t) })
}

// IsWouldBlock reports whether err is (or wraps) [ErrWouldBlock].
func IsWouldBlock(err error) bool { return errors.Is(err, ErrWouldBlock) }
