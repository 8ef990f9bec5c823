package wire

// Control frames: one type per kind, each with Kind, Append (the whole
// frame, header included, into dst; it never fails) and Decode (from a frame
// payload). PIDs and Refs are written whole (node, incarnation, id) without
// a term tag; reasons and spawn arguments are terms. Decoded values never
// alias the payload (the name SpawnRequest.DecodeName returns excepted).
// All methods are safe from any goroutine on values not shared.

import (
	"fmt"

	"github.com/meshrt/mesh/codec"
)

// Control is what every control frame type implements, so a receiver can
// decode any control frame with DecodeControl and dispatch with one type
// switch, and a sender can queue any of them the same way.
type Control interface {
	// Kind is the frame kind the type is written as.
	Kind() Kind
	// Append appends the whole frame, header included, to dst.
	Append(dst []byte) []byte
	// Decode reads the frame's payload (after decompression) into the
	// value; lim bounds the terms inside (nil: codec defaults).
	Decode(payload []byte, lim *codec.Limits) error
}

// DecodeControl decodes any control frame into a new value of its type
// (*Link, *Exit, *Tick, ...). Batch and fragment frames are refused with
// codec.ErrCorrupt: feed those to a Reassembler. Safe from any goroutine.
func DecodeControl(f Frame, lim *codec.Limits) (Control, error) {
	var v Control
	switch f.Kind {
	case KindSpawnRequest:
		v = new(SpawnRequest)
	case KindSpawnReply:
		v = new(SpawnReply)
	case KindLink:
		v = new(Link)
	case KindUnlink:
		v = new(Unlink)
	case KindExit:
		v = new(Exit)
	case KindMonitor:
		v = new(Monitor)
	case KindDemonitor:
		v = new(Demonitor)
	case KindDown:
		v = new(Down)
	case KindRegistry:
		v = new(Registry)
	case KindTick:
		v = new(Tick)
	case KindTock:
		v = new(Tock)
	case KindNodes:
		v = new(Nodes)
	case KindGoodbye:
		v = new(Goodbye)
	case KindGroups:
		v = new(Groups)
	case KindPublish:
		v = new(Publish)
	case KindSync:
		v = new(Sync)
	case KindAck:
		v = new(Ack)
	default:
		return nil, fmt.Errorf("%w: %v is not a control frame", codec.ErrCorrupt, f.Kind)
	}
	if err := v.Decode(f.Payload, lim); err != nil {
		return nil, err
	}
	return v, nil
}

// MaxReason bounds an exit reason on the wire. Append writes a reason that
// cannot be encoded, or whose encoding is larger than MaxReason plus a
// string term's header, as its text (an error's Error(), otherwise fmt %v)
// cut to MaxReason bytes: a signal always travels, and never as a huge frame.
const MaxReason = 64 << 10

// maxReasonTerm is MaxReason plus room for a string term's tag and length.
const maxReasonTerm = MaxReason + 16

func appendReason(dst []byte, reason any) []byte {
	out, err := codec.AppendTerm(dst, reason)
	if err == nil && len(out)-len(dst) <= maxReasonTerm {
		return out
	}
	var s string
	if e, ok := reason.(error); ok {
		s = e.Error()
	} else {
		s = fmt.Sprint(reason)
	}
	if len(s) > MaxReason {
		s = s[:MaxReason]
	}
	out, _ = codec.AppendTerm(out[:len(dst)], s) // a string always encodes
	return out
}

// SpawnRequest asks the peer to start a defined actor.
type SpawnRequest struct {
	Req   uint64    // correlates the reply
	From  codec.PID // requester, linked to the new process when Link is set
	Actor string
	// Args is the encoded argument list, a codec term of type []any
	// (codec.AppendTerm): the sender encodes it, so an unencodable argument
	// is the caller's error, not the frame's. Decode keeps a copy and
	// decodes it too (see Arguments); DecodeName only decodes it.
	Args []byte
	Link bool

	argv []any // the arguments decoded, by Decode or DecodeName
}

// Kind returns KindSpawnRequest.
func (*SpawnRequest) Kind() Kind { return KindSpawnRequest }

// Append appends the whole frame to dst. Args must be an encoded term.
func (x *SpawnRequest) Append(dst []byte) []byte {
	dst, at := x.appendHead(dst)
	dst = append(dst, x.Args...)
	return endFrame(dst, at)
}

// appendHead begins the frame and appends everything before the
// arguments; at is endFrame's.
func (x *SpawnRequest) appendHead(dst []byte) (_ []byte, at int) {
	dst, at = beginFrame(dst, KindSpawnRequest)
	dst = appendUvarint(dst, x.Req)
	dst = appendPID(dst, x.From)
	dst = append(dst, 0x10) // a string term's tag: the actor name
	dst = appendUvarint(dst, uint64(len(x.Actor)))
	dst = append(dst, x.Actor...)
	return appendBool(dst, x.Link), at
}

// AppendWithArgs is Append with the arguments encoded straight into the
// frame (codec.AppendList of args), in place of Args, which it ignores: no
// buffer of their own and no copy. On an error (args cannot be encoded)
// it returns dst unchanged in length. Any goroutine, on an x and dst it
// does not share.
func (x *SpawnRequest) AppendWithArgs(dst []byte, args []any) ([]byte, error) {
	n := len(dst)
	dst, at := x.appendHead(dst)
	dst, err := codec.AppendList(dst, args)
	if err != nil {
		return dst[:n], err
	}
	return endFrame(dst, at), nil
}

// Decode reads a KindSpawnRequest payload; the arguments must be exactly
// one []any term within lim. Nothing decoded aliases b. A node name
// x.From holds before (a receiver presets its peer's, the requester's) is
// kept when the payload's is the same, with no look-up in the intern
// table; so does DecodeName. Any goroutine, on an x it does not share.
func (x *SpawnRequest) Decode(b []byte, lim *codec.Limits) error {
	actor, args, err := x.decode(b, lim)
	if err != nil {
		return err
	}
	x.Actor = string(actor)
	x.Args = append([]byte(nil), args...)
	return nil
}

// DecodeName reads a KindSpawnRequest payload as Decode does, except that
// it clears Actor and Args and returns the actor's name instead, aliasing b
// (valid while b is; a caller keeps none of it, and its capacity ends with
// the name, so an append copies): a receiver that only looks the name up
// and uses the decoded arguments (Arguments) allocates neither the name nor
// a copy of the arguments' encoding. The decoded arguments never alias b.
// Any goroutine, on an x it does not share.
func (x *SpawnRequest) DecodeName(b []byte, lim *codec.Limits) (actor []byte, err error) {
	x.Actor, x.Args = "", nil
	actor, _, err = x.decode(b, lim)
	return actor[:len(actor):len(actor)], err
}

// decode reads a payload into x's Req, From, Link and decoded arguments,
// and returns the actor's name and the arguments' encoding, both aliasing
// b, when it returns no error.
func (x *SpawnRequest) decode(b []byte, lim *codec.Limits) (actor, args []byte, err error) {
	r := reader{b: b}
	x.Req = r.u()
	x.From = r.pidLike(x.From.Node)
	if t := r.fixed(1); r.err == nil && t[0] != 0x10 {
		r.err = fmt.Errorf("%w: actor name tag", codec.ErrCorrupt)
	}
	actor = r.lenBytes(maxNameBytes)
	x.Link = r.bool()
	at := r.off
	v := r.term(lim)
	x.argv = nil
	if r.err == nil {
		var ok bool
		if x.argv, ok = v.([]any); !ok {
			r.err = fmt.Errorf("%w: spawn arguments are %T, not []any", codec.ErrCorrupt, v)
		}
	}
	if err = r.end("spawn request"); err != nil {
		return nil, nil, err
	}
	return actor, b[at:r.off], nil
}

// Arguments returns the arguments Decode or DecodeName decoded (nil on a
// request built by the sender).
func (x *SpawnRequest) Arguments() []any { return x.argv }

// SpawnCode says how a spawn request ended.
type SpawnCode uint8

// Spawn outcomes.
const (
	SpawnOK           SpawnCode = 0
	SpawnUnknownActor SpawnCode = 1 // no such actor defined on the node
	SpawnFailed       SpawnCode = 2 // see Err
)

// maxSpawnError bounds a spawn reply's error text.
const maxSpawnError = 64 << 10

// SpawnReply answers a SpawnRequest.
type SpawnReply struct {
	Req  uint64
	PID  codec.PID // the new process, when Code is SpawnOK
	Code SpawnCode
	Err  string // human-readable detail, when Code is not SpawnOK
}

// Kind returns KindSpawnReply.
func (*SpawnReply) Kind() Kind { return KindSpawnReply }

// Append appends the whole frame to dst; Err is cut to 64 KiB.
func (x *SpawnReply) Append(dst []byte) []byte {
	dst, at := beginFrame(dst, KindSpawnReply)
	dst = appendUvarint(dst, x.Req)
	dst = appendPID(dst, x.PID)
	dst = append(dst, byte(x.Code))
	e := x.Err
	if len(e) > maxSpawnError {
		e = e[:maxSpawnError]
	}
	dst = appendUvarint(dst, uint64(len(e)))
	dst = append(dst, e...)
	return endFrame(dst, at)
}

// Decode reads a KindSpawnReply payload. A node name x.PID holds before
// (a receiver presets its peer's, which names the processes the peer
// spawns) is kept when the payload's is the same, with no look-up in the
// intern table.
func (x *SpawnReply) Decode(b []byte, _ *codec.Limits) error {
	r := reader{b: b}
	x.Req = r.u()
	x.PID = r.pidLike(x.PID.Node)
	if c := r.fixed(1); r.err == nil {
		x.Code = SpawnCode(c[0])
	}
	x.Err = r.str(maxSpawnError)
	return r.end("spawn reply")
}

// Link asks the peer to link its process To with From.
type Link struct {
	From, To codec.PID
}

// Kind returns KindLink.
func (*Link) Kind() Kind { return KindLink }

// Append appends the whole frame to dst.
func (x *Link) Append(dst []byte) []byte { return appendPair(dst, KindLink, x.From, x.To) }

// Decode reads a KindLink payload.
func (x *Link) Decode(b []byte, _ *codec.Limits) error {
	return decodePair(b, "link", &x.From, &x.To)
}

// Unlink asks the peer to remove the link between From and its process To.
type Unlink struct {
	From, To codec.PID
}

// Kind returns KindUnlink.
func (*Unlink) Kind() Kind { return KindUnlink }

// Append appends the whole frame to dst.
func (x *Unlink) Append(dst []byte) []byte { return appendPair(dst, KindUnlink, x.From, x.To) }

// Decode reads a KindUnlink payload.
func (x *Unlink) Decode(b []byte, _ *codec.Limits) error {
	return decodePair(b, "unlink", &x.From, &x.To)
}

func appendPair(dst []byte, k Kind, from, to codec.PID) []byte {
	dst, at := beginFrame(dst, k)
	dst = appendPID(dst, from)
	dst = appendPID(dst, to)
	return endFrame(dst, at)
}

func decodePair(b []byte, what string, from, to *codec.PID) error {
	r := reader{b: b}
	*from = r.pid()
	*to = r.pid()
	return r.end(what)
}

// Exit is an exit signal from From to To with a reason term.
type Exit struct {
	From, To codec.PID
	// Reason is any term; one that cannot be encoded, or is larger than
	// MaxReason encoded, travels as its text.
	Reason any
	// Link is true when the signal comes from a link (From ended), false
	// for an explicit exit sent by From.
	Link bool
}

// Kind returns KindExit.
func (*Exit) Kind() Kind { return KindExit }

// Append appends the whole frame to dst.
func (x *Exit) Append(dst []byte) []byte {
	dst, at := beginFrame(dst, KindExit)
	dst = appendPID(dst, x.From)
	dst = appendPID(dst, x.To)
	dst = appendBool(dst, x.Link)
	dst = appendReason(dst, x.Reason)
	return endFrame(dst, at)
}

// Decode reads a KindExit payload.
func (x *Exit) Decode(b []byte, lim *codec.Limits) error {
	r := reader{b: b}
	x.From = r.pid()
	x.To = r.pid()
	x.Link = r.bool()
	x.Reason = r.term(lim)
	return r.end("exit")
}

// Monitor asks the peer to let From watch its process To under Ref.
type Monitor struct {
	From, To codec.PID
	Ref      codec.Ref
}

// Kind returns KindMonitor.
func (*Monitor) Kind() Kind { return KindMonitor }

// Append appends the whole frame to dst.
func (x *Monitor) Append(dst []byte) []byte {
	return appendWatch(dst, KindMonitor, x.From, x.To, x.Ref)
}

// Decode reads a KindMonitor payload.
func (x *Monitor) Decode(b []byte, _ *codec.Limits) error {
	return decodeWatch(b, "monitor", &x.From, &x.To, &x.Ref)
}

// Demonitor asks the peer to drop the monitor Ref of From on its process To.
type Demonitor struct {
	From, To codec.PID
	Ref      codec.Ref
}

// Kind returns KindDemonitor.
func (*Demonitor) Kind() Kind { return KindDemonitor }

// Append appends the whole frame to dst.
func (x *Demonitor) Append(dst []byte) []byte {
	return appendWatch(dst, KindDemonitor, x.From, x.To, x.Ref)
}

// Decode reads a KindDemonitor payload.
func (x *Demonitor) Decode(b []byte, _ *codec.Limits) error {
	return decodeWatch(b, "demonitor", &x.From, &x.To, &x.Ref)
}

func appendWatch(dst []byte, k Kind, from, to codec.PID, ref codec.Ref) []byte {
	dst, at := beginFrame(dst, k)
	dst = appendPID(dst, from)
	dst = appendPID(dst, to)
	dst = appendRef(dst, ref)
	return endFrame(dst, at)
}

func decodeWatch(b []byte, what string, from, to *codec.PID, ref *codec.Ref) error {
	r := reader{b: b}
	*from = r.pid()
	*to = r.pid()
	*ref = r.ref()
	return r.end(what)
}

// Down tells Watcher that the process PID it monitored under Ref is gone.
type Down struct {
	Ref          codec.Ref
	Watcher, PID codec.PID
	// Reason is any term; one that cannot be encoded, or is larger than
	// MaxReason encoded, travels as its text.
	Reason any
}

// Kind returns KindDown.
func (*Down) Kind() Kind { return KindDown }

// Append appends the whole frame to dst.
func (x *Down) Append(dst []byte) []byte {
	dst, at := beginFrame(dst, KindDown)
	dst = appendRef(dst, x.Ref)
	dst = appendPID(dst, x.Watcher)
	dst = appendPID(dst, x.PID)
	dst = appendReason(dst, x.Reason)
	return endFrame(dst, at)
}

// Decode reads a KindDown payload.
func (x *Down) Decode(b []byte, lim *codec.Limits) error {
	r := reader{b: b}
	x.Ref = r.ref()
	x.Watcher = r.pid()
	x.PID = r.pid()
	x.Reason = r.term(lim)
	return r.end("down")
}

// Registry carries an opaque registry operation encoded by package global.
type Registry struct {
	Payload []byte
}

// Kind returns KindRegistry.
func (*Registry) Kind() Kind { return KindRegistry }

// Append appends the whole frame to dst.
func (x *Registry) Append(dst []byte) []byte {
	dst, at := beginFrame(dst, KindRegistry)
	dst = append(dst, x.Payload...)
	return endFrame(dst, at)
}

// Decode copies a KindRegistry payload.
func (x *Registry) Decode(b []byte, _ *codec.Limits) error {
	x.Payload = append([]byte(nil), b...)
	return nil
}

// Tick is a heartbeat: the peer echoes it back as a Tock with the same
// fields, so the sender measures the round trip from Time.
type Tick struct {
	Seq  uint64
	Time int64 // sender's clock, e.g. Unix nanoseconds or a monotonic offset
}

// Kind returns KindTick.
func (*Tick) Kind() Kind { return KindTick }

// Append appends the whole frame to dst.
func (x *Tick) Append(dst []byte) []byte { return appendBeat(dst, KindTick, x.Seq, x.Time) }

// Decode reads a KindTick payload.
func (x *Tick) Decode(b []byte, _ *codec.Limits) error {
	return decodeBeat(b, "tick", &x.Seq, &x.Time)
}

// Tock echoes a Tick: the same Seq and Time.
type Tock struct {
	Seq  uint64
	Time int64
}

// Kind returns KindTock.
func (*Tock) Kind() Kind { return KindTock }

// Append appends the whole frame to dst.
func (x *Tock) Append(dst []byte) []byte { return appendBeat(dst, KindTock, x.Seq, x.Time) }

// Decode reads a KindTock payload.
func (x *Tock) Decode(b []byte, _ *codec.Limits) error {
	return decodeBeat(b, "tock", &x.Seq, &x.Time)
}

func appendBeat(dst []byte, k Kind, seq uint64, t int64) []byte {
	dst, at := beginFrame(dst, k)
	dst = appendUvarint(dst, seq)
	dst = appendUvarint(dst, zigzag(t))
	return endFrame(dst, at)
}

func decodeBeat(b []byte, what string, seq *uint64, t *int64) error {
	r := reader{b: b}
	*seq = r.u()
	z := r.u()
	*t = int64(z>>1) ^ -int64(z&1)
	return r.end(what)
}

// Nodes is node-list gossip: the names of the nodes the sender is connected
// to.
type Nodes struct {
	Names []string
}

// Kind returns KindNodes.
func (*Nodes) Kind() Kind { return KindNodes }

// Append appends the whole frame to dst. Names longer than 255 bytes are
// not node names and are left out.
func (x *Nodes) Append(dst []byte) []byte {
	dst, at := beginFrame(dst, KindNodes)
	n := 0
	for _, s := range x.Names {
		if len(s) <= maxNameBytes {
			n++
		}
	}
	dst = appendUvarint(dst, uint64(n))
	for _, s := range x.Names {
		if len(s) <= maxNameBytes {
			dst = appendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	return endFrame(dst, at)
}

// Decode reads a KindNodes payload.
func (x *Nodes) Decode(b []byte, _ *codec.Limits) error {
	r := reader{b: b}
	n := r.u()
	if r.err == nil && n > uint64(len(b)-r.off) { // every name takes a byte
		r.err = fmt.Errorf("%w: %d names in %d bytes", codec.ErrCorrupt, n, len(b)-r.off)
	}
	if r.err != nil {
		return r.end("nodes")
	}
	x.Names = make([]string, 0, n)
	for range n {
		x.Names = append(x.Names, r.str(maxNameBytes))
	}
	return r.end("nodes")
}

// Goodbye tells the peer that the sender is closing the link on purpose,
// and why (an atom such as shutdown or disconnect), so the peer can tell a
// graceful stop from a lost connection. It is the last frame on the link.
type Goodbye struct {
	Reason codec.Atom
}

// MaxGoodbyeReason bounds a Goodbye's reason; Append cuts a longer one.
const MaxGoodbyeReason = 64

// Kind returns KindGoodbye.
func (*Goodbye) Kind() Kind { return KindGoodbye }

// Append appends the whole frame to dst.
func (x *Goodbye) Append(dst []byte) []byte {
	dst, at := beginFrame(dst, KindGoodbye)
	r := string(x.Reason)
	if len(r) > MaxGoodbyeReason {
		r = r[:MaxGoodbyeReason]
	}
	dst = appendUvarint(dst, uint64(len(r)))
	dst = append(dst, r...)
	return endFrame(dst, at)
}

// Decode reads a KindGoodbye payload.
func (x *Goodbye) Decode(b []byte, _ *codec.Limits) error {
	r := reader{b: b}
	x.Reason = codec.Atom(r.str(MaxGoodbyeReason))
	return r.end("goodbye")
}

// Groups carries an opaque process-group operation or snapshot encoded by
// the node's group replica.
type Groups struct {
	Payload []byte
}

// Kind returns KindGroups.
func (*Groups) Kind() Kind { return KindGroups }

// Append appends the whole frame to dst.
func (x *Groups) Append(dst []byte) []byte {
	dst, at := beginFrame(dst, KindGroups)
	dst = append(dst, x.Payload...)
	return endFrame(dst, at)
}

// Decode copies a KindGroups payload.
func (x *Groups) Decode(b []byte, _ *codec.Limits) error {
	x.Payload = append([]byte(nil), b...)
	return nil
}

// MaxGroupName bounds a group name on the wire.
const MaxGroupName = 255

// Publish carries one message, encoded once, for every member of Group on
// the receiving node: Term is the message's term encoding (as a batch
// record's), decoded by each member.
type Publish struct {
	Group string
	Term  []byte
}

// Kind returns KindPublish.
func (*Publish) Kind() Kind { return KindPublish }

// Append appends the whole frame to dst. A group name longer than
// MaxGroupName is cut (the node refuses such names before sending).
func (x *Publish) Append(dst []byte) []byte {
	dst, at := beginFrame(dst, KindPublish)
	g := x.Group
	if len(g) > MaxGroupName {
		g = g[:MaxGroupName]
	}
	dst = appendUvarint(dst, uint64(len(g)))
	dst = append(dst, g...)
	dst = append(dst, x.Term...)
	return endFrame(dst, at)
}

// Decode reads a KindPublish payload; Term is copied, not decoded.
func (x *Publish) Decode(b []byte, _ *codec.Limits) error {
	r := reader{b: b}
	x.Group = r.str(MaxGroupName)
	if r.err != nil {
		return r.end("publish")
	}
	if r.off == len(b) {
		return fmt.Errorf("%w: publish without a message", codec.ErrCorrupt)
	}
	x.Term = append([]byte(nil), b[r.off:]...)
	return nil
}

// Sync asks the peer to answer with an Ack of the same Seq once it has
// handled every frame that came before it on the connection: a sender
// learns that what it queued before the Sync has been delivered.
type Sync struct {
	Seq uint64
}

// Kind returns KindSync.
func (*Sync) Kind() Kind { return KindSync }

// Append appends the whole frame to dst.
func (x *Sync) Append(dst []byte) []byte { return appendSeq(dst, KindSync, x.Seq) }

// Decode reads a KindSync payload.
func (x *Sync) Decode(b []byte, _ *codec.Limits) error { return decodeSeq(b, "sync", &x.Seq) }

// Ack answers a Sync (Seq is the Sync's), or, sent back on a companion
// connection, counts the frames its receiver has handled on it so far.
type Ack struct {
	Seq uint64
}

// Kind returns KindAck.
func (*Ack) Kind() Kind { return KindAck }

// Append appends the whole frame to dst.
func (x *Ack) Append(dst []byte) []byte { return appendSeq(dst, KindAck, x.Seq) }

// Decode reads a KindAck payload.
func (x *Ack) Decode(b []byte, _ *codec.Limits) error { return decodeSeq(b, "ack", &x.Seq) }

func appendSeq(dst []byte, k Kind, seq uint64) []byte {
	dst, at := beginFrame(dst, k)
	dst = appendUvarint(dst, seq)
	return endFrame(dst, at)
}

func decodeSeq(b []byte, what string, seq *uint64) error {
	r := reader{b: b}
	*seq = r.u()
	return r.end(what)
}
