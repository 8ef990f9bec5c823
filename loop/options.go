package loop

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Defaults for the options of [New].
const (
	DefaultHandshakeTimeout     = 5 * time.Second
	DefaultMaxPendingHandshakes = 64
	DefaultMaxSilentConnections = 256
	DefaultMaxPendingPerSource  = 16
	DefaultFirstByteTimeout     = time.Second
	DefaultHighWater            = 2 << 20 // bytes queued or unwritten per conn before senders wait
	DefaultLowWater             = 512 << 10
	DefaultMaxInputPending      = 16 << 20 // plaintext a handler may leave unconsumed
	DefaultReceiveBuffer        = 64 << 10 // SO_RCVBUF of a conn's socket once bulk data arrives
	DefaultNotSentLowat         = 16 << 10 // TCP_NOTSENT_LOWAT of a conn's socket while bulk data goes out
)

// Option configures an [Engine].
//
// Every option follows one rule: a value outside the range its documentation
// gives makes [New] fail with an error wrapping [ErrOption] that names the
// option and the value. Nothing is clamped or silently replaced; to get a
// default, leave the option out. (A nil TLS configuration, logger or hook
// is not out of range: it means the default, as each option says.)
type Option func(*options)

type options struct {
	loops            int
	handshakeTimeout time.Duration
	maxPending       int
	maxSilent        int
	perSource        int
	firstByte        time.Duration
	outcome          func(string)
	high, low        int64
	maxInput         int
	rcvBuf, notSent  int // socket options; 0: the kernel's
	serverTLS        *tls.Config
	clientTLS        *tls.Config
	cert             *tls.Certificate
	hook             Hook
	logger           *slog.Logger

	err error // the first option given a value out of its range
}

func defaultOptions() options {
	return options{
		loops:            runtime.NumCPU(),
		handshakeTimeout: DefaultHandshakeTimeout,
		maxPending:       DefaultMaxPendingHandshakes,
		maxSilent:        DefaultMaxSilentConnections,
		perSource:        DefaultMaxPendingPerSource,
		firstByte:        DefaultFirstByteTimeout,
		high:             DefaultHighWater,
		low:              DefaultLowWater,
		maxInput:         DefaultMaxInputPending,
		rcvBuf:           DefaultReceiveBuffer,
		notSent:          DefaultNotSentLowat,
	}
}

// buildOptions applies opts over the defaults; the error is the first
// option out of its range.
func buildOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return o, o.err
}

// positive is an option that applies set when v is positive and refuses v
// otherwise.
func positive[T int | time.Duration](name string, v T, set func(*options)) Option {
	return func(o *options) {
		if v <= 0 {
			o.refuse(name, v, "must be positive")
			return
		}
		set(o)
	}
}

// refuse records that option name was given value v, outside want.
func (o *options) refuse(name string, v any, want string) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: %s(%v): %s", ErrOption, name, v, want)
	}
}

// WithLoops sets how many event loops the engine runs (default: one per
// CPU). n must be positive.
func WithLoops(n int) Option {
	return positive("WithLoops", n, func(o *options) { o.loops = n })
}

// WithHandshakeTimeout bounds TLS plus the post-TLS hook for each
// connection (default 5 s). A connection that misses it is dropped. d must
// be positive.
func WithHandshakeTimeout(d time.Duration) Option {
	return positive("WithHandshakeTimeout", d, func(o *options) { o.handshakeTimeout = d })
}

// WithMaxPendingHandshakes bounds the inbound connections in their TLS
// handshake and hook at once (default 64), and, separately, the Dials in
// flight: strangers never take a dial's slot. When an inbound connection
// starts talking at the bound, the oldest talking one is closed to make
// room for it; Dial waits for a slot (bounded by its context). n must be
// positive.
func WithMaxPendingHandshakes(n int) Option {
	return positive("WithMaxPendingHandshakes", n, func(o *options) { o.maxPending = n })
}

// WithMaxSilentConnections bounds the inbound connections that have not
// sent a byte yet (default 256). At the bound the oldest of them is closed
// to make room for the newest, so idle sockets, however many, only delay a
// real dialler by the moment it takes to send its TLS hello. n must be
// positive.
func WithMaxSilentConnections(n int) Option {
	return positive("WithMaxSilentConnections", n, func(o *options) { o.maxSilent = n })
}

// WithMaxPendingPerSource bounds the inbound connections in their
// handshake from one source IP address (default 16). At the bound the
// source's oldest silent connection makes room; if none is silent, the new
// one is closed. n must be positive.
func WithMaxPendingPerSource(n int) Option {
	return positive("WithMaxPendingPerSource", n, func(o *options) { o.perSource = n })
}

// WithFirstByteTimeout bounds how long an inbound connection may stay
// silent after accept before it is dropped (default 1 s); the handshake
// timeout still bounds the whole. d must be positive.
func WithFirstByteTimeout(d time.Duration) Option {
	return positive("WithFirstByteTimeout", d, func(o *options) { o.firstByte = d })
}

// WithHandshakeOutcome sets a function called once for each connection the
// engine ends before its hook has run (or, inbound, evicts before it):
// with OutcomeLimit, OutcomeTimeout or OutcomeTLS. The hook reports the
// outcomes of connections that reach it. fn is called from the accept
// loop or a handshake goroutine and must not block.
func WithHandshakeOutcome(fn func(outcome string)) Option {
	return func(o *options) { o.outcome = fn }
}

// WithWaterMarks sets the per-connection backpressure marks in bytes
// (default 2 MiB and 512 KiB). Once the queued bytes reach high, Enqueue
// waits until the loop has brought them below low; the loop also stops
// draining while more than high ciphertext bytes wait for the socket. high
// must be positive and 0 <= low <= high.
func WithWaterMarks(high, low int) Option {
	return func(o *options) {
		if high <= 0 || low < 0 || low > high {
			o.refuse("WithWaterMarks", fmt.Sprintf("%d, %d", high, low), "want high > 0 and 0 <= low <= high")
			return
		}
		o.high, o.low = int64(high), int64(low)
	}
}

// WithMaxInputPending bounds the plaintext a handler may leave unconsumed
// (an incomplete frame) before the connection is closed with
// [ErrInputTooLarge] (default 16 MiB). n must be positive.
func WithMaxInputPending(n int) Option {
	return positive("WithMaxInputPending", n, func(o *options) { o.maxInput = n })
}

// WithSocketBuffers sets the two kernel limits a conn's socket gets while
// bulk data flows (defaults DefaultReceiveBuffer and DefaultNotSentLowat).
// receive is the receive buffer (SO_RCVBUF), which bounds what the peer
// can send ahead of what this side's loop has read, set from the first
// Conn.ShortenReceive on (the handler calls it when its input shows bulk
// data); notSent is the most ciphertext the kernel keeps unsent on the way
// out (TCP_NOTSENT_LOWAT, Linux), set while the conn's bulk lane has items
// (EnqueueBulk) and lifted once a drain finds it empty; beyond it the
// socket takes no more and the rest waits in the conn's own queue, where
// small items overtake bulk data (package doc, "Output and backpressure").
// Bytes in kernel buffers go out first come, first served: with the
// kernel's defaults (a receive buffer autotuned up to net.ipv4.tcp_rmem,
// no unsent limit) a small message waited behind megabytes of a large one
// already handed to the kernel. Until bulk data flows the kernel's
// settings stay: a stream of small items needs their depth (with the short
// limits it moved 25-30% fewer messages). 0 keeps the kernel's setting for
// that limit throughout. A link with a large bandwidth-delay product
// (across a WAN) that carries bulk data needs a receive buffer of about
// bandwidth x round trip to keep its throughput: pass 0 there. Both must
// be >= 0.
func WithSocketBuffers(receive, notSent int) Option {
	return func(o *options) {
		if receive < 0 || notSent < 0 {
			o.refuse("WithSocketBuffers", fmt.Sprintf("%d, %d", receive, notSent), "want both >= 0")
			return
		}
		o.rcvBuf, o.notSent = receive, notSent
	}
}

// WithCertificate sets the certificate the engine presents; by default it
// makes an ephemeral one (tlsconn.NewCertificate). Ignored when WithTLS
// gives a server configuration.
func WithCertificate(cert tls.Certificate) Option {
	return func(o *options) { o.cert = &cert }
}

// WithTLS replaces the TLS configurations (default: tlsconn.ServerConfig
// and tlsconn.ClientConfig). A nil argument keeps the default for that side.
// A configuration that allows anything but TLS 1.3 is out of range.
func WithTLS(server, client *tls.Config) Option {
	return func(o *options) {
		for _, c := range []*tls.Config{server, client} {
			if c != nil && (c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13) {
				o.refuse("WithTLS", fmt.Sprintf("versions %#x-%#x", c.MinVersion, c.MaxVersion), "must allow only TLS 1.3")
				return
			}
		}
		if server != nil {
			o.serverTLS = server
		}
		if client != nil {
			o.clientTLS = client
		}
	}
}

// WithHook sets the post-TLS hook (the Mesh cookie handshake). Without one,
// or with nil, every connection that completes TLS is accepted with a nil
// Info.
func WithHook(h Hook) Option {
	return func(o *options) { o.hook = h }
}

// WithLogger sets the logger (default, and with nil: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}
