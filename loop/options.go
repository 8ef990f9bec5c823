package loop

import (
	"crypto/tls"
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

// WithLoops sets how many event loops the engine runs (default: one per
// CPU). Values below 1 mean 1.
func WithLoops(n int) Option {
	return func(o *options) { o.loops = max(n, 1) }
}

// WithHandshakeTimeout bounds TLS plus the post-TLS hook for each
// connection (default 5 s). A connection that misses it is dropped.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.handshakeTimeout = d
		}
	}
}

// WithMaxPendingHandshakes bounds the handshakes in flight at once (default
// 64). Inbound connections above the bound are closed at once; Dial waits
// for a slot (bounded by its context).
func WithMaxPendingHandshakes(n int) Option {
	return func(o *options) { o.maxPending = max(n, 1) }
}

// WithWaterMarks sets the per-connection backpressure marks in bytes. Once
// the queued bytes reach high, Enqueue waits until the loop has brought them
// below low; the loop also stops draining while more than high ciphertext
// bytes wait for the socket. low is clamped to [0, high].
func WithWaterMarks(high, low int) Option {
	return func(o *options) {
		if high > 0 {
			o.high = int64(high)
		}
		o.low = min(max(int64(low), 0), o.high)
	}
}

// WithMaxInputPending bounds the plaintext a handler may leave unconsumed
// (an incomplete frame) before the connection is closed with
// [ErrInputTooLarge] (default 16 MiB).
func WithMaxInputPending(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxInput = n
		}
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
// Both must allow only TLS 1.3.
func WithTLS(server, client *tls.Config) Option {
	return func(o *options) {
		if server != nil {
			o.serverTLS = server
		}
		if client != nil {
			o.clientTLS = client
		}
	}
}

// WithHook sets the post-TLS hook (the Mesh cookie handshake). Without one,
// every connection that completes TLS is accepted with a nil Info.
func WithHook(h Hook) Option {
	return func(o *options) { o.hook = h }
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}
