package wire

// Invariants of fragmentation:
//   - Fragment payload: uvarint id, uvarint to, uvarint from, uvarint total
//     (term bytes), uvarint offset, then the chunk. Fragments of one message
//     are written in order; other items may come between them.
//   - The sender must write a message's FIRST fragment in send order (at
//     the moment it would have written the whole message); only later
//     fragments may be delayed. That is what lets the Reassembler keep
//     per-pair order: a record of pair (from, to) that arrives while an
//     earlier large message of that pair is incomplete is held behind it.
//   - Reassembler memory (announced totals of pending messages plus copies
//     of held records) never exceeds its budget; past it Feed fails with
//     codec.ErrLimit and the link must be closed.
//   - Records of pairs with nothing pending are delivered at once, without
//     copying or allocating.

import (
	"fmt"

	"github.com/meshrt/mesh/codec"
)

// DefaultFragmentSize is the default chunk size of fragments and the item
// size above which a message should be fragmented.
const DefaultFragmentSize = 64 << 10

// DefaultReassemblyBudget is the default memory budget of a Reassembler.
const DefaultReassemblyBudget = 256 << 20

// Fragmenter splits one encoded message item into fragment items. The zero
// value is ready for Reset. Not safe for concurrent use.
type Fragmenter struct {
	id, to, from uint64
	term         []byte
	off, size    int
}

// Reset prepares f to split item (from [AppendMessage]) into fragments of at
// most size term bytes (<= 0: DefaultFragmentSize) under id, which must be
// unique among the link's in-flight fragmented messages (a per-link counter).
// f keeps a reference to item until the last fragment is produced.
func (f *Fragmenter) Reset(id uint64, item []byte, size int) error {
	fr, _, err := (&FrameReader{maxFrame: 1<<31 - 1}).Next(item)
	if err != nil {
		return err
	}
	it := fr.Messages()
	if !it.Next() {
		if it.Err() != nil {
			return it.Err()
		}
		return fmt.Errorf("%w: empty message item", codec.ErrCorrupt)
	}
	m := it.Message()
	if size <= 0 {
		size = DefaultFragmentSize
	}
	*f = Fragmenter{id: id, to: m.To, from: m.From, term: m.Term, size: size}
	return nil
}

// More reports whether fragments remain.
func (f *Fragmenter) More() bool { return f.term != nil && f.off < len(f.term) }

// Next appends the next fragment item (a whole frame) to dst.
func (f *Fragmenter) Next(dst []byte) []byte {
	n := min(f.size, len(f.term)-f.off)
	dst, at := beginFrame(dst, KindFragment)
	dst = appendUvarint(dst, f.id)
	dst = appendUvarint(dst, f.to)
	dst = appendUvarint(dst, f.from)
	dst = appendUvarint(dst, uint64(len(f.term)))
	dst = appendUvarint(dst, uint64(f.off))
	dst = append(dst, f.term[f.off:f.off+n]...)
	f.off += n
	if f.off == len(f.term) {
		f.term = nil
	}
	return endFrame(dst, at)
}

type pairKey struct{ from, to uint64 }

// pending is a large message being reassembled, or a held record.
type pending struct {
	to, from uint64
	id       uint64
	total    int // announced term size (large) or len(buf) (held)
	buf      []byte
	large    bool
}

func (p *pending) done() bool { return len(p.buf) == p.total }

// Reassembler rebuilds fragmented messages of one link and delivers all of
// the link's messages in per-pair order. Not safe for concurrent use: it
// runs where the link's frames are parsed.
type Reassembler struct {
	maxMsg int
	budget int
	used   int
	frags  map[uint64]*pending    // by fragment id
	queues map[pairKey][]*pending // pairs with a pending large message
}

// NewReassembler returns a reassembler with a memory budget in bytes (<= 0:
// DefaultReassemblyBudget); lim bounds message sizes (nil: defaults).
func NewReassembler(budget int, lim *codec.Limits) *Reassembler {
	if budget <= 0 {
		budget = DefaultReassemblyBudget
	}
	maxMsg := codec.DefaultMaxMessage
	if lim != nil && lim.MaxMessage > 0 {
		maxMsg = lim.MaxMessage
	}
	return &Reassembler{maxMsg: maxMsg, budget: budget, frags: map[uint64]*pending{}, queues: map[pairKey][]*pending{}}
}

// Used returns the bytes currently reserved for pending and held messages.
func (r *Reassembler) Used() int { return r.used }

// Holding reports whether records from `from` to `to` are currently held
// behind an incomplete large message. The node can use it to keep a control
// signal of that pair (an exit, say) behind the held messages.
func (r *Reassembler) Holding(from, to uint64) bool {
	_, ok := r.queues[pairKey{from, to}]
	return ok
}

// Pending returns the number of incomplete fragmented messages.
func (r *Reassembler) Pending() int { return len(r.frags) }

// Feed takes a batch or fragment frame and calls deliver for every message
// that is now deliverable, in order. A Message's Term is valid only during
// the call. An error from deliver stops Feed and is returned; any other
// error means the link must be closed.
func (r *Reassembler) Feed(f Frame, deliver func(Message) error) error {
	switch f.Kind {
	case KindBatch:
		it := f.Messages()
		for it.Next() {
			// it.m is read in place, not copied to a local: the copy's
			// overlapping 16-byte moves of the fields Next just stored
			// stalled store forwarding (9 ns a message in the profile).
			if len(r.queues) > 0 {
				if q, ok := r.queues[pairKey{it.m.From, it.m.To}]; ok {
					if err := r.reserve(len(it.m.Term)); err != nil {
						return err
					}
					h := &pending{to: it.m.To, from: it.m.From, total: len(it.m.Term), buf: append([]byte(nil), it.m.Term...)}
					r.queues[pairKey{it.m.From, it.m.To}] = append(q, h)
					continue
				}
			}
			if err := deliver(it.m); err != nil {
				return err
			}
		}
		return it.Err()
	case KindFragment:
		return r.fragment(f.Payload, deliver)
	}
	return fmt.Errorf("%w: %v frame fed to the reassembler", codec.ErrCorrupt, f.Kind)
}

func (r *Reassembler) reserve(n int) error {
	if n > r.budget-r.used {
		return fmt.Errorf("%w: reassembly budget %d bytes exhausted (%d used, %d more asked)", codec.ErrLimit, r.budget, r.used, n)
	}
	r.used += n
	return nil
}

func (r *Reassembler) fragment(p []byte, deliver func(Message) error) error {
	d := reader{b: p}
	var h [5]uint64
	for i := range h {
		x, err := d.uvarint()
		if err != nil {
			return err
		}
		h[i] = x
	}
	id, to, from, total, off := h[0], h[1], h[2], h[3], h[4]
	chunk := p[d.off:]
	e := r.frags[id]
	if e == nil {
		if off != 0 {
			return fmt.Errorf("%w: fragment %d at offset %d with no first fragment", codec.ErrCorrupt, id, off)
		}
		if total == 0 || total > uint64(r.maxMsg) {
			return fmt.Errorf("%w: fragmented message of %d bytes (MaxMessage %d)", codec.ErrLimit, total, r.maxMsg)
		}
		if err := r.reserve(int(total)); err != nil {
			return err
		}
		e = &pending{to: to, from: from, id: id, total: int(total), large: true}
		r.frags[id] = e
		k := pairKey{from, to}
		r.queues[k] = append(r.queues[k], e)
	} else if e.to != to || e.from != from || uint64(e.total) != total || uint64(len(e.buf)) != off {
		return fmt.Errorf("%w: fragment %d does not continue its message", codec.ErrCorrupt, id)
	}
	if len(chunk) == 0 || len(chunk) > e.total-len(e.buf) {
		return fmt.Errorf("%w: fragment %d chunk of %d bytes, %d expected at most", codec.ErrCorrupt, id, len(chunk), e.total-len(e.buf))
	}
	if e.buf == nil {
		// The total is already reserved in the budget: allocate it once
		// rather than grow (and copy) a 64 MiB message twenty times.
		e.buf = make([]byte, 0, e.total)
	}
	e.buf = append(e.buf, chunk...)
	if !e.done() {
		return nil
	}
	delete(r.frags, id)
	return r.release(pairKey{from, to}, deliver)
}

// release delivers the complete entries at the head of a pair's queue.
func (r *Reassembler) release(k pairKey, deliver func(Message) error) error {
	q := r.queues[k]
	i := 0
	var err error
	for ; i < len(q) && q[i].done() && err == nil; i++ {
		e := q[i]
		r.used -= e.total
		q[i] = nil
		err = deliver(Message{To: e.to, From: e.from, Term: e.buf})
	}
	if i == len(q) {
		delete(r.queues, k)
	} else {
		r.queues[k] = q[i:]
	}
	return err
}
