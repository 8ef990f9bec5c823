package codec

import "errors"

// Sentinel errors. Every error the package returns wraps one of these (with
// %w), so callers test them with errors.Is.
var (
	// ErrUnencodable reports a value that cannot travel: a chan, func,
	// complex number, unregistered user type, or a cycle (nesting deeper
	// than the depth limit).
	ErrUnencodable = errors.New("codec: value cannot be encoded")
	// ErrUnknownType reports a user type name that was not registered on
	// the decoding side.
	ErrUnknownType = errors.New("codec: unknown registered type")
	// ErrLimit reports input over one of the [Limits] (depth, element
	// count, string length, message or frame size, decompressed size,
	// reassembly budget). It is refused before anything is allocated.
	ErrLimit = errors.New("codec: limit exceeded")
	// ErrTruncated reports input that ends inside a term or record.
	ErrTruncated = errors.New("codec: truncated input")
	// ErrCorrupt reports input that is not a valid encoding.
	ErrCorrupt = errors.New("codec: corrupt input")
	// ErrVersion reports a frame of a wire version this package does not
	// speak.
	ErrVersion = errors.New("codec: unsupported wire version")
	// ErrNeedMore is returned by [FrameReader.Next] when the bytes given
	// hold no complete frame yet: read more and call again. It is never
	// wrapped, so == works as well as errors.Is.
	ErrNeedMore = errors.New("codec: need more bytes")
	// ErrRegister reports a refused [Register] call.
	ErrRegister = errors.New("codec: bad registration")
)
