package wire

// Invariants of fragmentation:
//   - Fragment payload: uvarint id, uvarint to, uvarint from, uvarint total
//     (term bytes), uvarint offset, then the chunk. Fragments of one message
//     are written in order; other items may come between them.
//   - The sender must write a message's FIRST fragment in its sender's
//     order (where it would have written the whole message); only later
//     fragments may be delayed. A record of pair (from, to) that arrives
//     while an earlier large message of that pair is incomplete is held
//     behind it. The key is the record's to as addressed: a record to a
//     name (to 0) is not held behind a large message to its process's ID,
//     nor the other way round, so a sender that lets its own later records
//     overtake its fragments must not rely on this. The node does not: it
//     keeps everything a process sends behind that process's fragments on
//     the sending side (node/lanes.go), and the hold-back is only a
//     safeguard.
//   - The Reassemblers of one ReassemblyQuota together never exceed its
//     limits (every count is taken from the quota before it is used, and
//     given back there); a Reassembler of its own (NewReassembler) is one
//     with a quota of its own.
//   - Reassembler memory never exceeds its quota's budget: what it
//     charges is the capacity of every reassembly buffer, the bytes of
//     every held record and entryCost of bookkeeping for each of them.
//     A buffer grows as chunks arrive (by four times, capped at the
//     announced total rounded up to 64 KiB, the pools' unit: buffers.go),
//     or to the whole total at once when what arrived is more than a
//     wholeRatio-th of it (a message of a few fragments) and the budget
//     has room for it; never from the announced total alone, so memory
//     follows the bytes received: at most wholeRatio times them per
//     message, plus the rounding.
//     Unfinished messages and held records are also capped in number. Past
//     any limit Feed fails with a *LimitError (codec.ErrLimit) and the link
//     must be closed.
//   - Records of pairs with nothing pending are delivered at once, without
//     copying or allocating.
//   - A reassembled message, or a held record, is delivered in a buffer the
//     Reassembler drops right after: during that deliver call Owned reports
//     true, and the callee may keep Term (no copy).

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/meshrt/mesh/codec"
)

// DefaultFragmentSize is the default chunk size of fragments and the item
// size above which a message should be fragmented.
const DefaultFragmentSize = 64 << 10

// MaxFragmentOverhead is the most a fragment item adds to its chunk of
// term bytes (frame header and the five uvarints): a sender that wants
// items of at most n bytes fragments with size n - MaxFragmentOverhead.
const MaxFragmentOverhead = HeaderSize + 5*binary.MaxVarintLen64

// Reassembler defaults, per link.
const (
	// DefaultReassemblyBudget bounds the bytes a Reassembler holds:
	// buffers, held records and their bookkeeping.
	DefaultReassemblyBudget = 256 << 20
	// DefaultMaxPending bounds the unfinished fragmented messages. A node
	// fragments a message on its sender's goroutine, one at a time, so a
	// peer has at most one unfinished message per sending process.
	DefaultMaxPending = 4096
	// DefaultMaxHeld bounds the records held behind unfinished messages.
	DefaultMaxHeld = 1 << 16
)

// Fragmenter splits one encoded message item into fragment items. The zero
// value is ready for Reset. Not safe for concurrent use.
type Fragmenter struct {
	id, to, from uint64
	head, body   []byte // the term: head then body (ResetTerm; Reset: body only)
	off, size    int
	total        int // len(head) + len(body)
	more         bool
	hb           [1 + binary.MaxVarintLen64]byte // ResetValue's head
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
	f.ResetTerm(id, m.To, m.From, nil, m.Term, size)
	return nil
}

// ResetTerm prepares f to split a message from `from` to `to` whose term is
// head followed by body (as [codec.SplitTerm] returns them) into fragments,
// as Reset does for an encoded item: the fragments are the same, and the
// term's bytes are copied once, into the fragments, instead of into an
// encoded item first. f keeps references to head and body until the last
// fragment is produced; the caller keeps them unchanged until then.
func (f *Fragmenter) ResetTerm(id, to, from uint64, head, body []byte, size int) {
	if size <= 0 {
		size = DefaultFragmentSize
	}
	f.id, f.to, f.from, f.head, f.body, f.off, f.size = id, to, from, head, body, 0, size
	f.total = len(head) + len(body)
	f.more = f.total > 0
}

// ResetValue is ResetTerm for a message whose value is msg itself, when
// its encoding is a short head and then its bytes (a []byte or a string:
// codec.SplitTerm) and it is over above bytes: the fragments then copy
// msg's bytes once, where AppendMessage and Reset would have copied them
// into an encoded item first (and moved them again to fit the length).
// It reports whether it did; false for any other value, or a smaller one,
// which the caller encodes with AppendMessage. ids is the link's counter
// of fragmented-message ids: the message's id is the next one, taken only
// when f is reset. A term over maxTerm (<= 0: codec.DefaultMaxMessage) is
// refused as AppendMessage refuses it (codec.ErrLimit). The caller keeps
// msg unchanged until the last fragment is produced.
func (f *Fragmenter) ResetValue(ids *atomic.Uint64, to, from uint64, msg any, above, maxTerm, size int) (bool, error) {
	head, body, ok := codec.SplitTerm(f.hb[:0], msg)
	if !ok || len(head)+len(body) <= above {
		return false, nil
	}
	if maxTerm <= 0 {
		maxTerm = codec.DefaultMaxMessage
	}
	if len(body) > maxTerm || len(head)+len(body) > maxTerm {
		return false, errTooLarge(len(body), maxTerm)
	}
	f.ResetTerm(ids.Add(1), to, from, head, body, size)
	return true, nil
}

// ItemSize returns the size of the message item AppendMessage would have
// made of the term (for counters of bytes sent).
func (f *Fragmenter) ItemSize() int {
	n := f.Total()
	return HeaderSize + uvarintLen(f.to) + uvarintLen(f.from) + uvarintLen(uint64(n)) + n
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// Total returns the term's size in bytes.
func (f *Fragmenter) Total() int { return f.total }

// More reports whether fragments remain.
func (f *Fragmenter) More() bool { return f.more }

// Next appends the next fragment item (a whole frame) to dst. Call it only
// while More reports true.
func (f *Fragmenter) Next(dst []byte) []byte {
	total := f.total
	n := min(f.size, total-f.off)
	dst, at := beginFrame(dst, KindFragment)
	dst = appendUvarint(dst, f.id)
	dst = appendUvarint(dst, f.to)
	dst = appendUvarint(dst, f.from)
	dst = appendUvarint(dst, uint64(total))
	dst = appendUvarint(dst, uint64(f.off))
	end := f.off + n
	if f.off < len(f.head) {
		dst = append(dst, f.head[f.off:min(end, len(f.head))]...)
	}
	if end > len(f.head) {
		dst = append(dst, f.body[max(f.off, len(f.head))-len(f.head):end-len(f.head)]...)
	}
	f.off = end
	if f.off == total {
		f.more = false
		f.head, f.body = nil, nil
	}
	return endFrame(dst, at)
}

type pairKey struct{ from, to uint64 }

// entryCost is what a Reassembler charges for the bookkeeping of one
// unfinished message or held record besides its bytes: the entry (72 bytes),
// its slots in the id and pair maps and the pair's queue, with their growth
// (measured at about 240 bytes by TestReassemblerChargesItsBookkeeping; the
// charge keeps a margin).
const entryCost = 384

// wholeRatio: a message's reassembly buffer takes its whole announced
// size once the bytes received are more than a wholeRatio-th of it. A
// 1 MiB message sent in 64 KiB fragments then takes its buffer at its
// first fragment, where growing by four times from that fragment's size
// took three buffers and copied a third of the message between them: in
// a stream of 1 MiB messages that growth took 12% of the receiving
// node's CPU, five times the copy of the fragments into the buffer
// (docs/latency.md). A peer that announces more than it sends
// makes the receiver hold at most wholeRatio times what it sent, within
// the budget as ever.
const wholeRatio = 32

// ReassemblyOverhead is what a Reassembler charges its budget beyond a
// message's bytes: a budget must be at least the largest message plus
// this.
const ReassemblyOverhead = entryCost

// pending is a large message being reassembled, or a held record.
type pending struct {
	to, from uint64
	id       uint64
	total    int // announced term size (large) or len(buf) (held)
	buf      []byte
	charged  int // bytes charged to the budget for this entry
	large    bool
}

func (p *pending) done() bool { return len(p.buf) == p.total }

// ReassemblyLimits bound what one link's Reassemblers (its quota) may
// hold. A zero field means its default.
type ReassemblyLimits struct {
	// Budget bounds the bytes held: reassembly buffers, held records, and
	// their bookkeeping (default DefaultReassemblyBudget).
	Budget int
	// MaxPending bounds the unfinished fragmented messages (default
	// DefaultMaxPending).
	MaxPending int
	// MaxHeld bounds the records held behind unfinished messages (default
	// DefaultMaxHeld).
	MaxHeld int
	// MaxMessage bounds one reassembled message's term (default
	// codec.DefaultMaxMessage).
	MaxMessage int
}

func (l ReassemblyLimits) resolve() ReassemblyLimits {
	if l.Budget <= 0 {
		l.Budget = DefaultReassemblyBudget
	}
	if l.MaxPending <= 0 {
		l.MaxPending = DefaultMaxPending
	}
	if l.MaxHeld <= 0 {
		l.MaxHeld = DefaultMaxHeld
	}
	if l.MaxMessage <= 0 {
		l.MaxMessage = codec.DefaultMaxMessage
	}
	return l
}

// LimitError reports input over one of a Reassembler's limits: the peer
// must be cut. It wraps codec.ErrLimit.
type LimitError struct {
	// Limit names the limit, for logs and metric labels: "reassembly_budget",
	// "fragments_pending", "records_held" or "message_size" here; package
	// node adds its own ("registry_names", "group_members", "spawned"...).
	Limit string
	// Asked is what the input needed and Max the limit (bytes or a count).
	Asked, Max int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("wire: over the %s limit (%d asked, limit %d)", e.Limit, e.Asked, e.Max)
}

// Unwrap returns codec.ErrLimit.
func (e *LimitError) Unwrap() error { return codec.ErrLimit }

// Reassembler rebuilds fragmented messages of one link and delivers all of
// the link's messages in per-pair order. Not safe for concurrent use: it
// runs where the link's frames are parsed.
type Reassembler struct {
	lim    ReassemblyLimits       // resolved: q's
	q      *ReassemblyQuota       // what it draws on, maybe with other reassemblers
	used   int                    // its own share of q's bytes
	held   int                    // held records
	frags  map[uint64]*pending    // by fragment id
	queues map[pairKey][]*pending // pairs with a pending large message
	owned  bool                   // the message being delivered is the callee's to keep
	done   uint64                 // fragmented messages completed (Completed)
}

// NewReassembler returns a reassembler bounded by lim. Safe from any
// goroutine.
func NewReassembler(lim ReassemblyLimits) *Reassembler {
	return NewReassemblyQuota(lim).NewReassembler()
}

// A ReassemblyQuota is one set of reassembly limits that several
// Reassemblers draw on together: the connections of one link, so that a
// peer that sends on two of them cannot make the receiver hold twice its
// limits. Its counts are the sums of its reassemblers'. Safe for
// concurrent use.
type ReassemblyQuota struct {
	lim                  ReassemblyLimits // resolved
	bytes, pending, held atomic.Int64
}

// NewReassemblyQuota returns a quota of lim. Safe from any goroutine.
func NewReassemblyQuota(lim ReassemblyLimits) *ReassemblyQuota {
	return &ReassemblyQuota{lim: lim.resolve()}
}

// NewReassembler returns a reassembler that draws on q. Safe from any
// goroutine.
func (q *ReassemblyQuota) NewReassembler() *Reassembler {
	return &Reassembler{lim: q.lim, q: q, frags: map[uint64]*pending{}, queues: map[pairKey][]*pending{}}
}

// quotaRace is a test hook, nil outside tests: when set, charge calls it
// with the quota count it asks of, after it reads the count and before it
// decides on it and swaps it. That is the window in
// which the link's other reassembler, on another goroutine, may change
// the count; a test runs that reassembler's ask there, on one goroutine,
// for an exact interleaving (TestQuotaAsksInterleaved). Nil, it costs a
// load and a branch per ask (a message begun, a record held, a buffer
// grown: not per byte). Set only by tests that run alone.
var quotaRace func(count *atomic.Int64)

// charge adds n to count unless that takes it past max, and returns the
// count it saw. A compare-and-swap, not an add undone on failure: an
// attempt over the limit never shows in the count, where another
// reassembler of the quota would see it and be refused what fits (found
// in review). Every ask of a quota goes through it.
func charge(count *atomic.Int64, n, max int64) (seen int64, ok bool) {
	for {
		c := count.Load()
		if quotaRace != nil {
			quotaRace(count)
		}
		if c+n > max {
			return c, false
		}
		if count.CompareAndSwap(c, c+n) {
			return c, true
		}
	}
}

// take adds one to count unless that goes past max.
func take(count *atomic.Int64, max int, limit string) error {
	if n, ok := charge(count, 1, int64(max)); !ok {
		return &LimitError{Limit: limit, Asked: int(n + 1), Max: max}
	}
	return nil
}

// Quota returns the quota r draws on. Safe from any goroutine.
func (r *Reassembler) Quota() *ReassemblyQuota { return r.q }

// Limits returns the reassembler's limits, defaults filled in.
func (r *Reassembler) Limits() ReassemblyLimits { return r.lim }

// Used returns the bytes r currently charges to its quota's budget:
// buffers of its unfinished messages, its held records and their
// bookkeeping (its own share; the quota's other reassemblers charge the
// rest).
func (r *Reassembler) Used() int { return r.used }

// Holding reports whether records from `from` to `to` are currently held
// behind an incomplete large message. The node can use it to keep a control
// signal of that pair (an exit, say) behind the held messages.
func (r *Reassembler) Holding(from, to uint64) bool {
	_, ok := r.queues[pairKey{from, to}]
	return ok
}

// Owned reports, during a deliver call of Feed, whether the delivered
// Message's Term is the callee's to keep: a reassembled message or a held
// record, in a buffer the Reassembler no longer uses. It is false for a
// record delivered in place (Term points into the frame).
func (r *Reassembler) Owned() bool { return r.owned }

// Pending returns the number of incomplete fragmented messages.
func (r *Reassembler) Pending() int { return len(r.frags) }

// Completed returns the number of fragmented messages completed so far
// (delivered, or held behind an earlier one of their pair): a Feed that
// raised it took the last fragment of a message, one of one included.
func (r *Reassembler) Completed() uint64 { return r.done }

// Held returns the number of records held behind incomplete messages.
func (r *Reassembler) Held() int { return r.held }

// Feed takes a batch or fragment frame and calls deliver for every message
// that is now deliverable, in order. A Message's Term is valid only during
// the call. An error from deliver stops Feed and is returned; any other
// error (a *LimitError past a limit, codec.ErrCorrupt on a bad fragment)
// means the link must be closed.
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
					if err := r.hold(q, it.m); err != nil {
						return err
					}
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

// hold copies a record behind the pair's unfinished message.
func (r *Reassembler) hold(q []*pending, m Message) error {
	if err := take(&r.q.held, r.lim.MaxHeld, "records_held"); err != nil {
		return err
	}
	c := len(m.Term) + entryCost
	if err := r.reserve(c); err != nil {
		r.q.held.Add(-1)
		return err
	}
	h := &pending{to: m.To, from: m.From, total: len(m.Term), buf: append([]byte(nil), m.Term...), charged: c}
	r.queues[pairKey{m.From, m.To}] = append(q, h)
	r.held++
	return nil
}

// reserve charges n bytes to the quota (charge).
func (r *Reassembler) reserve(n int) error {
	if used, ok := charge(&r.q.bytes, int64(n), int64(r.lim.Budget)); !ok {
		return &LimitError{Limit: "reassembly_budget", Asked: int(used) + n, Max: r.lim.Budget}
	}
	r.used += n
	return nil
}

// unreserve gives back n bytes reserved.
func (r *Reassembler) unreserve(n int) {
	r.used -= n
	r.q.bytes.Add(-int64(n))
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
		if total == 0 {
			return fmt.Errorf("%w: fragmented message of 0 bytes", codec.ErrCorrupt)
		}
		if total > uint64(r.lim.MaxMessage) {
			return &LimitError{Limit: "message_size", Asked: int(min(total, 1<<62)), Max: r.lim.MaxMessage}
		}
		if err := take(&r.q.pending, r.lim.MaxPending, "fragments_pending"); err != nil {
			return err
		}
		if err := r.reserve(entryCost); err != nil {
			r.q.pending.Add(-1)
			return err
		}
		e = &pending{to: to, from: from, id: id, total: int(total), charged: entryCost, large: true}
		r.frags[id] = e
		k := pairKey{from, to}
		r.queues[k] = append(r.queues[k], e)
	} else if e.to != to || e.from != from || uint64(e.total) != total || uint64(len(e.buf)) != off {
		return fmt.Errorf("%w: fragment %d does not continue its message", codec.ErrCorrupt, id)
	}
	if len(chunk) == 0 || len(chunk) > e.total-len(e.buf) {
		return fmt.Errorf("%w: fragment %d chunk of %d bytes, %d expected at most", codec.ErrCorrupt, id, len(chunk), e.total-len(e.buf))
	}
	if need := len(e.buf) + len(chunk); need > cap(e.buf) {
		// Grow with what arrived, not with what was announced; by four
		// times, so a 64 MiB message is copied a third more, not twice;
		// to the whole message once what arrived is more than a
		// wholeRatio-th of it, so that a message of a few fragments takes
		// one buffer and no copy, if the budget has room for it now (else
		// it grows as before, and may find the room later, as other
		// messages end). A pooled buffer's capacity is c rounded up to
		// 64 KiB (buffers.go), charged as it is.
		c := min(e.total, max(need, 4*cap(e.buf)))
		var nb []byte
		if c < e.total && e.total/wholeRatio < need && r.reserve(bufferCap(e.total)-cap(e.buf)) == nil {
			nb = append(newBuffer(e.total), e.buf...)
		} else if err := r.reserve(bufferCap(c) - cap(e.buf)); err == nil {
			nb = append(newBuffer(c), e.buf...)
		} else if r.reserve(c-cap(e.buf)) == nil {
			// The rounding does not fit, the bytes do: a budget of the
			// largest message plus ReassemblyOverhead must still take
			// that message, in a buffer of its exact size.
			nb = append(make([]byte, 0, c), e.buf...)
		} else {
			return err
		}
		e.charged += cap(nb) - cap(e.buf)
		ReleaseBuffer(e.buf)
		e.buf = nb
	}
	e.buf = append(e.buf, chunk...)
	if !e.done() {
		return nil
	}
	delete(r.frags, id)
	r.q.pending.Add(-1)
	r.done++
	return r.release(pairKey{from, to}, deliver)
}

// release delivers the complete entries at the head of a pair's queue.
func (r *Reassembler) release(k pairKey, deliver func(Message) error) error {
	q := r.queues[k]
	i := 0
	var err error
	for ; i < len(q) && q[i].done() && err == nil; i++ {
		e := q[i]
		r.unreserve(e.charged)
		if !e.large {
			r.held--
			r.q.held.Add(-1)
		}
		q[i] = nil
		r.owned = true
		err = deliver(Message{To: e.to, From: e.from, Term: e.buf})
		r.owned = false
	}
	if i == len(q) {
		delete(r.queues, k)
	} else {
		r.queues[k] = q[i:]
	}
	return err
}
