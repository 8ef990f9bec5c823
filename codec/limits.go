package codec

// Limits bound everything a decoder accepts. Each check runs before the
// allocation it guards. A zero field means "use the default"; a nil *Limits
// means all defaults.
type Limits struct {
	// MaxDepth bounds the nesting of containers, pointers and user types.
	MaxDepth int
	// MaxElems bounds the total number of elements (list, tuple and map
	// entries, struct slice and map elements) in one term.
	MaxElems int
	// MaxString bounds the length of one string, atom or []byte.
	MaxString int
	// MaxMessage bounds the encoded size of one term.
	MaxMessage int
	// MaxExpansion bounds the memory one decode allocates, relative to its
	// input: at most MaxExpansion bytes per input byte, plus
	// DecodeSlack. The cost is estimated per value as it is decoded
	// (containers by their slots, strings by their bytes, maps by their
	// entries), so a small input that would decode to a huge value (a
	// list of millions of empty maps, say) is refused with ErrLimit
	// before it is built. The default, 16, passes every ordinary value:
	// only lists dense in empty containers come near it.
	MaxExpansion int
}

// Default limits. MaxDepth also bounds encoding, which is how cycles are
// refused.
const (
	DefaultMaxDepth     = 128
	DefaultMaxElems     = 1 << 24
	DefaultMaxString    = 128 << 20
	DefaultMaxMessage   = 128 << 20
	DefaultMaxExpansion = 16
	// DecodeSlack is the allocation every decode may make whatever its
	// input's size.
	DecodeSlack = 1 << 20
)

// DefaultLimits returns the limits used when nil is passed.
func DefaultLimits() Limits {
	return Limits{
		MaxDepth:     DefaultMaxDepth,
		MaxElems:     DefaultMaxElems,
		MaxString:    DefaultMaxString,
		MaxMessage:   DefaultMaxMessage,
		MaxExpansion: DefaultMaxExpansion,
	}
}

// termLimits returns the resolved limits a term decode needs, in registers.
func (l *Limits) termLimits() (depth, elems, str, msg, expand int) {
	depth, elems, str, msg, expand = DefaultMaxDepth, DefaultMaxElems, DefaultMaxString, DefaultMaxMessage, DefaultMaxExpansion
	if l == nil {
		return
	}
	if l.MaxExpansion > 0 {
		expand = l.MaxExpansion
	}
	if l.MaxDepth > 0 {
		depth = l.MaxDepth
	}
	if l.MaxElems > 0 {
		elems = l.MaxElems
	}
	if l.MaxString > 0 {
		str = l.MaxString
	}
	if l.MaxMessage > 0 {
		msg = l.MaxMessage
	}
	return
}
