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
	DefaultHighWater            = 2 << 20 // bytes queued or unwritten per conn before senders wait
	DefaultLowWater             = 512 << 10
	DefaultMaxInputPending      = 16 << 20 // plaintext a handler may leave unconsumed
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
	high, low        int64
	maxInput         int
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
		high:             DefaultHighWater,
		low:              DefaultLowWater,
		maxInput:         DefaultMaxInputPending,
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

// refuse records that option name was given value v, outside want.
func (o *options) refuse(name string, v any, want string) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: %s(%v): %s", ErrOption, name, v, want)
	}
}

// WithLoops sets how many event loops the engine runs (default: one per
// CPU). n must be at least 1.
func WithLoops(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.refuse("WithLoops", n, "must be at least 1")
			return
		}
		o.loops = n
	}
}

// WithHandshakeTimeout bounds TLS plus the post-TLS hook for each
// connection (default 5 s). A connection that misses it is dropped. d must
// be positive.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.refuse("WithHandshakeTimeout", d, "must be positive")
			return
		}
		o.handshakeTimeout = d
	}
}

// WithMaxPendingHandshakes bounds the handshakes in flight at once (default
// 64). Inbound connections above the bound are closed at once; Dial waits
// for a slot (bounded by its context). n must be at least 1.
func WithMaxPendingHandshakes(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.refuse("WithMaxPendingHandshakes", n, "must be at least 1")
			return
		}
		o.maxPending = n
	}
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
	return func(o *options) {
		if n <= 0 {
			o.refuse("WithMaxInputPending", n, "must be positive")
			return
		}
		o.maxInput = n
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
