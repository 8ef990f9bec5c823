package codec

import "errors"

// Sentinel errors. Every error the package returns wraps one of these (with
// %w), so callers test them with errors.Is.
var (
	// ErrUnencodable reports a value that cannot travel: a chan, func,
	// complex number, unregistered user type, or a cycle (nesting deeper
	// than the depth limit).
	ErrUnencodable = errors.New("codec: value cannot be encoded")
	// ErrLimit reports a value or input over one of the [Limits] (depth,
	// element count, string length, message size). Input is refused before
	// anything is allocated for it.
	ErrLimit = errors.New("codec: limit exceeded")
	// ErrTruncated reports input that ends inside a term or record.
	ErrTruncated = errors.New("codec: truncated input")
	// ErrCorrupt reports input that is not a valid encoding.
	ErrCorrupt = errors.New("codec: corrupt input")
	// ErrRegister reports a refused [Register] call.
	ErrRegister = errors.New("codec: bad registration")
)
