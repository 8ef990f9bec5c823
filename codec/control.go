package codec

// Control frame payloads. Each type has Append (the whole frame, header
// included, into dst) and Decode (from a frame payload). PIDs and Refs are
// written whole (node, incarnation, id) without a term tag; reasons and
// spawn arguments are terms. Decoded values never alias the payload. All
// methods are safe from any goroutine on distinct values.

import (
	"fmt"
)

// payload reads fields with a sticky error.
type payload struct {
	d   decoder
	err error
}

func newPayload(p []byte, lim *Limits) *payload {
	l := lim.resolve()
	return &payload{d: decoder{b: p, maxDepth: l.MaxDepth, maxString: l.MaxString, elems: l.MaxElems}}
}

func (p *payload) uvarint() uint64 {
	if p.err != nil {
		return 0
	}
	x, err := p.d.uvarint()
	p.err = err
	return x
}

func (p *payload) pid() PID {
	if p.err != nil {
		return PID{}
	}
	x, err := p.d.pid()
	p.err = err
	return x
}

func (p *payload) ref() Ref {
	if p.err != nil {
		return Ref{}
	}
	x, err := p.d.ref()
	p.err = err
	return x
}

func (p *payload) str(max int) string {
	if p.err != nil {
		return ""
	}
	b, err := p.d.lenBytes(max)
	p.err = err
	return string(b)
}

func (p *payload) term() any {
	if p.err != nil {
		return nil
	}
	v, err := p.d.term(0)
	p.err = err
	return v
}

func (p *payload) fixed(n int) []byte {
	if p.err != nil {
		return nil
	}
	b, err := p.d.fixed(n)
	p.err = err
	return b
}

// end reports the sticky error, or ErrCorrupt if bytes are left over.
func (p *payload) end(what string) error {
	if p.err != nil {
		return fmt.Errorf("%s: %w", what, p.err)
	}
	if p.d.off != len(p.d.b) {
		return fmt.Errorf("%w: %s: %d trailing bytes", ErrCorrupt, what, len(p.d.b)-p.d.off)
	}
	return nil
}

// bool reads a 0/1 byte.
func (p *payload) bool() bool {
	b := p.fixed(1)
	if p.err != nil {
		return false
	}
	if b[0] > 1 {
		p.err = fmt.Errorf("%w: bool byte %d", ErrCorrupt, b[0])
		return false
	}
	return b[0] == 1
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// SpawnRequest asks the peer to start a defined actor.
//
// Append and Decode are safe from any goroutine on values not shared.
type SpawnRequest struct {
	Req   uint64 // correlates the reply
	From  PID    // requester, linked to the new process when Link is set
	Actor string
	Args  []any
	Link  bool
}

// Append appends the whole frame to dst.
func (x *SpawnRequest) Append(dst []byte) ([]byte, error) {
	start := len(dst)
	dst, at := beginFrame(dst, KindSpawnRequest)
	dst = appendUvarint(dst, x.Req)
	dst = appendPID(dst, x.From)
	dst = appendStr(dst, tagString, x.Actor)
	dst = appendBool(dst, x.Link)
	dst, err := appendTerm(dst, x.Args, 0)
	if err != nil {
		return dst[:start], err
	}
	return endFrame(dst, at), nil
}

// Decode reads a KindSpawnRequest payload.
func (x *SpawnRequest) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	x.Req = p.uvarint()
	x.From = p.pid()
	if t := p.fixed(1); p.err == nil && t[0] != tagString {
		p.err = fmt.Errorf("%w: actor name tag", ErrCorrupt)
	}
	x.Actor = p.str(maxNameBytes)
	x.Link = p.bool()
	args := p.term()
	if p.err == nil {
		var ok bool
		if x.Args, ok = args.([]any); !ok {
			p.err = fmt.Errorf("%w: spawn args are %T, not []any", ErrCorrupt, args)
		}
	}
	return p.end("spawn request")
}

// SpawnCode says how a spawn request ended.
type SpawnCode uint8

// Spawn outcomes.
const (
	SpawnOK           SpawnCode = 0
	SpawnUnknownActor SpawnCode = 1 // no such actor defined on the node
	SpawnFailed       SpawnCode = 2 // see Err
)

// SpawnReply answers a SpawnRequest.
//
// Append and Decode are safe from any goroutine on values not shared.
type SpawnReply struct {
	Req  uint64
	PID  PID // the new process, when Code is SpawnOK
	Code SpawnCode
	Err  string // human-readable detail, when Code is not SpawnOK
}

// Append appends the whole frame to dst.
func (x *SpawnReply) Append(dst []byte) ([]byte, error) {
	dst, at := beginFrame(dst, KindSpawnReply)
	dst = appendUvarint(dst, x.Req)
	dst = appendPID(dst, x.PID)
	dst = append(dst, byte(x.Code))
	dst = appendUvarint(dst, uint64(len(x.Err)))
	dst = append(dst, x.Err...)
	return endFrame(dst, at), nil
}

// Decode reads a KindSpawnReply payload.
func (x *SpawnReply) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	x.Req = p.uvarint()
	x.PID = p.pid()
	if c := p.fixed(1); p.err == nil {
		x.Code = SpawnCode(c[0])
	}
	x.Err = p.str(64 << 10)
	return p.end("spawn reply")
}

// Link asks the peer to link To with From (KindLink), or to remove that link
// (KindUnlink).
//
// Append and Decode are safe from any goroutine on values not shared.
type Link struct {
	From, To PID
}

// Append appends the whole frame of kind k (KindLink or KindUnlink).
func (x *Link) Append(dst []byte, k Kind) ([]byte, error) {
	dst, at := beginFrame(dst, k)
	dst = appendPID(dst, x.From)
	dst = appendPID(dst, x.To)
	return endFrame(dst, at), nil
}

// Decode reads a KindLink or KindUnlink payload.
func (x *Link) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	x.From = p.pid()
	x.To = p.pid()
	return p.end("link")
}

// Exit is an exit signal from From to To with a reason term.
//
// Append and Decode are safe from any goroutine on values not shared.
type Exit struct {
	From, To PID
	Reason   any
	// Link is true when the signal comes from a link (From ended), false
	// for an explicit exit sent by From.
	Link bool
}

// Append appends the whole frame to dst.
func (x *Exit) Append(dst []byte) ([]byte, error) {
	start := len(dst)
	dst, at := beginFrame(dst, KindExit)
	dst = appendPID(dst, x.From)
	dst = appendPID(dst, x.To)
	dst = appendBool(dst, x.Link)
	dst, err := appendTerm(dst, x.Reason, 0)
	if err != nil {
		return dst[:start], err
	}
	return endFrame(dst, at), nil
}

// Decode reads a KindExit payload.
func (x *Exit) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	x.From = p.pid()
	x.To = p.pid()
	x.Link = p.bool()
	x.Reason = p.term()
	return p.end("exit")
}

// Monitor asks the peer to let From watch To under Ref (KindMonitor), or to
// drop that monitor (KindDemonitor).
//
// Append and Decode are safe from any goroutine on values not shared.
type Monitor struct {
	From, To PID
	Ref      Ref
}

// Append appends the whole frame of kind k (KindMonitor or KindDemonitor).
func (x *Monitor) Append(dst []byte, k Kind) ([]byte, error) {
	dst, at := beginFrame(dst, k)
	dst = appendPID(dst, x.From)
	dst = appendPID(dst, x.To)
	dst = appendRef(dst, x.Ref)
	return endFrame(dst, at), nil
}

// Decode reads a KindMonitor or KindDemonitor payload.
func (x *Monitor) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	x.From = p.pid()
	x.To = p.pid()
	x.Ref = p.ref()
	return p.end("monitor")
}

// Down tells Watcher that the process PID it monitored under Ref is gone.
//
// Append and Decode are safe from any goroutine on values not shared.
type Down struct {
	Ref          Ref
	Watcher, PID PID
	Reason       any
}

// Append appends the whole frame to dst.
func (x *Down) Append(dst []byte) ([]byte, error) {
	start := len(dst)
	dst, at := beginFrame(dst, KindDown)
	dst = appendRef(dst, x.Ref)
	dst = appendPID(dst, x.Watcher)
	dst = appendPID(dst, x.PID)
	dst, err := appendTerm(dst, x.Reason, 0)
	if err != nil {
		return dst[:start], err
	}
	return endFrame(dst, at), nil
}

// Decode reads a KindDown payload.
func (x *Down) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	x.Ref = p.ref()
	x.Watcher = p.pid()
	x.PID = p.pid()
	x.Reason = p.term()
	return p.end("down")
}

// Registry carries an opaque registry operation encoded by package global
// (typically with AppendTerm).
//
// Append and Decode are safe from any goroutine on values not shared.
type Registry struct {
	Payload []byte
}

// Append appends the whole frame to dst.
func (x *Registry) Append(dst []byte) ([]byte, error) {
	dst, at := beginFrame(dst, KindRegistry)
	dst = append(dst, x.Payload...)
	return endFrame(dst, at), nil
}

// Decode copies a KindRegistry payload.
func (x *Registry) Decode(b []byte, _ *Limits) error {
	x.Payload = append([]byte(nil), b...)
	return nil
}

// Tick is a heartbeat: KindTick asks the peer to echo it back as KindTock
// with the same fields, so the sender measures the round trip from Time.
//
// Append and Decode are safe from any goroutine on values not shared.
type Tick struct {
	Seq  uint64
	Time int64 // sender's clock, e.g. Unix nanoseconds or a monotonic offset
}

// Append appends the whole frame of kind k (KindTick or KindTock).
func (x *Tick) Append(dst []byte, k Kind) ([]byte, error) {
	dst, at := beginFrame(dst, k)
	dst = appendUvarint(dst, x.Seq)
	dst = appendUvarint(dst, zigzag(x.Time))
	return endFrame(dst, at), nil
}

// Decode reads a KindTick or KindTock payload.
func (x *Tick) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	x.Seq = p.uvarint()
	t := p.uvarint()
	x.Time = int64(t>>1) ^ -int64(t&1)
	return p.end("tick")
}

// Nodes is node-list gossip: the names of the nodes the sender is connected
// to.
//
// Append and Decode are safe from any goroutine on values not shared.
type Nodes struct {
	Names []string
}

// Append appends the whole frame to dst.
func (x *Nodes) Append(dst []byte) ([]byte, error) {
	dst, at := beginFrame(dst, KindNodes)
	dst = appendUvarint(dst, uint64(len(x.Names)))
	for _, n := range x.Names {
		dst = appendUvarint(dst, uint64(len(n)))
		dst = append(dst, n...)
	}
	return endFrame(dst, at), nil
}

// Decode reads a KindNodes payload.
func (x *Nodes) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	n, err := p.d.count()
	if err != nil {
		return fmt.Errorf("nodes: %w", err)
	}
	x.Names = make([]string, 0, n)
	for range n {
		x.Names = append(x.Names, p.str(maxNameBytes))
	}
	return p.end("nodes")
}

// Hello opens the handshake: protocol version, the sender's name and
// incarnation, its feature flags and a fresh nonce.
//
// Append and Decode are safe from any goroutine on values not shared.
type Hello struct {
	Version     uint64
	Node        string
	Incarnation uint64
	Features    Features
	Nonce       [32]byte
}

// Append appends the whole frame to dst.
func (x *Hello) Append(dst []byte) ([]byte, error) {
	dst, at := beginFrame(dst, KindHello)
	dst = appendUvarint(dst, x.Version)
	dst = appendUvarint(dst, uint64(len(x.Node)))
	dst = append(dst, x.Node...)
	dst = appendUvarint(dst, x.Incarnation)
	dst = appendUvarint(dst, uint64(x.Features))
	dst = append(dst, x.Nonce[:]...)
	return endFrame(dst, at), nil
}

// Decode reads a KindHello payload.
func (x *Hello) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	x.Version = p.uvarint()
	x.Node = p.str(maxNameBytes)
	x.Incarnation = p.uvarint()
	x.Features = Features(p.uvarint())
	if n := p.fixed(32); p.err == nil {
		copy(x.Nonce[:], n)
	}
	return p.end("hello")
}

// Proof carries the handshake MAC (HMAC-SHA256).
//
// Append and Decode are safe from any goroutine on values not shared.
type Proof struct {
	MAC [32]byte
}

// Append appends the whole frame to dst.
func (x *Proof) Append(dst []byte) ([]byte, error) {
	dst, at := beginFrame(dst, KindProof)
	dst = append(dst, x.MAC[:]...)
	return endFrame(dst, at), nil
}

// Decode reads a KindProof payload.
func (x *Proof) Decode(b []byte, lim *Limits) error {
	p := newPayload(b, lim)
	if m := p.fixed(32); p.err == nil {
		copy(x.MAC[:], m)
	}
	return p.end("proof")
}

// DecodeControl decodes any non-message frame into its typed value (a
// pointer: *SpawnRequest, *Link, *Tick...). Batch and fragment frames are
// refused: feed those to a Reassembler.
func DecodeControl(f Frame, lim *Limits) (any, error) {
	var v interface {
		Decode([]byte, *Limits) error
	}
	switch f.Kind {
	case KindSpawnRequest:
		v = new(SpawnRequest)
	case KindSpawnReply:
		v = new(SpawnReply)
	case KindLink, KindUnlink:
		v = new(Link)
	case KindExit:
		v = new(Exit)
	case KindMonitor, KindDemonitor:
		v = new(Monitor)
	case KindDown:
		v = new(Down)
	case KindRegistry:
		v = new(Registry)
	case KindTick, KindTock:
		v = new(Tick)
	case KindNodes:
		v = new(Nodes)
	case KindHello:
		v = new(Hello)
	case KindProof:
		v = new(Proof)
	default:
		return nil, fmt.Errorf("%w: %v is not a control frame", ErrCorrupt, f.Kind)
	}
	if err := v.Decode(f.Payload, lim); err != nil {
		return nil, err
	}
	return v, nil
}
