package loop

import "errors"

// Errors of package loop, testable with errors.Is.
var (
	// ErrClosed: the connection is closed; Enqueue and Start report it,
	// wrapping the close reason.
	ErrClosed = errors.New("loop: connection closed")
	// ErrEngineClosed: the engine is closed. It is also the reason given to
	// the connections Engine.Close closes.
	ErrEngineClosed = errors.New("loop: engine closed")
	// ErrPeerClosed: the peer closed the connection (close_notify, EOF or
	// reset). The reason wraps the underlying error where there is one.
	ErrPeerClosed = errors.New("loop: closed by peer")
	// ErrHandshake: TLS or the post-TLS hook failed; wraps their error.
	ErrHandshake = errors.New("loop: handshake failed")
	// ErrHandshakeTimeout: the handshake missed its deadline.
	ErrHandshakeTimeout = errors.New("loop: handshake timed out")
	// ErrInputTooLarge: the handler left more plaintext unconsumed than
	// WithMaxInputPending allows.
	ErrInputTooLarge = errors.New("loop: unconsumed input over the limit")
	// ErrTLS: a record failed to decrypt or TLS failed on the loop.
	ErrTLS = errors.New("loop: tls failure")
	// ErrSlowConsumer: EnqueueNoWait found the conn's queue past its hard
	// limit (four times the high-water mark): the peer takes so little of
	// what is sent that the conn is cut rather than let memory grow.
	ErrSlowConsumer = errors.New("loop: slow consumer")
	// ErrOption: New was given an option value out of its range.
	ErrOption = errors.New("loop: bad option")
)
