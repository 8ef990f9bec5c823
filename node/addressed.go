package node

// Addressed records: messages sent to something other than a process ID —
// a registered name (SendNamed), a waiting call (Reply), a name to call
// (CallNamed) — carried in the message stream, so they keep their order
// with the sender's other messages, are batched, fragmented when large and
// slowed by backpressure like any message.
//
// An addressed record is a batch record whose target ID is 0 (no process
// has ID 0) and whose term bytes start with an address instead of a term:
//
//	kind byte, then by kind:
//	addrName      uvarint len, name, body term
//	addrReply     uvarint ref ID, flags byte, body term
//	addrCall      uvarint len, name, uvarint ref ID, body term (a Request)
//	addrUnmonitor uvarint len, name, uvarint ref ID
//
// A reference or PID an addressed record implies belongs to the node at
// the other end of the link (the sender's for the caller and its ref, the
// receiver's own for a reply's ref), so a peer can only speak for itself.
// A node that does not know addressed records drops them as messages to a
// process that does not exist.

import (
	"encoding/binary"
	"fmt"

	"github.com/meshrt/mesh/codec"
)

// Address kinds.
const (
	addrName      byte = 1
	addrReply     byte = 2
	addrCall      byte = 3
	addrUnmonitor byte = 4
)

// replyReleased: the replier dropped its end of the call's monitor.
const replyReleased byte = 1

var errAddress = fmt.Errorf("%w: malformed addressed record", codec.ErrCorrupt)

// appendAddressed appends an addressed record item (a batch frame of one
// record) from the process from. name is used by the kinds that carry one,
// ref and flags by those that carry a reference; body is encoded unless the
// kind has none. On error dst is returned with its original length.
func appendAddressed(dst []byte, from uint64, kind byte, name string, ref uint64, body any) ([]byte, error) {
	return appendAddressedFlags(dst, from, kind, name, ref, 0, body)
}

func appendAddressedFlags(dst []byte, from uint64, kind byte, name string, ref uint64, flags byte, body any) ([]byte, error) {
	start := len(dst)
	dst = codec.AppendHeader(dst, codec.KindBatch, 0, 0)
	dst = binary.AppendUvarint(dst, 0)
	dst = binary.AppendUvarint(dst, from)
	lenAt := len(dst)
	dst = append(dst, 0) // the term length, patched below
	dst = append(dst, kind)
	switch kind {
	case addrName:
		dst = appendName(dst, name)
	case addrReply:
		dst = binary.AppendUvarint(dst, ref)
		dst = append(dst, flags)
	case addrCall, addrUnmonitor:
		dst = appendName(dst, name)
		dst = binary.AppendUvarint(dst, ref)
	}
	if kind != addrUnmonitor {
		var err error
		if dst, err = codec.AppendTerm(dst, body); err != nil {
			return dst[:start], err
		}
	}
	dst = patchLen(dst, lenAt)
	binary.BigEndian.PutUint32(dst[start+4:], uint32(len(dst)-start-codec.HeaderSize))
	return dst, nil
}

func appendName(dst []byte, name string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	return append(dst, name...)
}

// patchLen writes the uvarint length of dst[at+1:] at dst[at], where one
// byte was reserved, moving the bytes when the length needs more.
func patchLen(dst []byte, at int) []byte {
	n := len(dst) - at - 1
	if n < 0x80 {
		dst[at] = byte(n)
		return dst
	}
	var tmp [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(tmp[:], uint64(n))
	dst = append(dst, tmp[:w-1]...)
	copy(dst[at+w:], dst[at+1:at+1+n])
	copy(dst[at:], tmp[:w])
	return dst
}

// address is a parsed addressed record.
type address struct {
	kind  byte
	name  []byte // aliases the record
	ref   uint64
	flags byte
	body  []byte // the body term; aliases the record
}

// parseAddress parses an addressed record's term bytes. It never panics on
// any input and allocates nothing.
func parseAddress(b []byte) (address, error) {
	var a address
	if len(b) == 0 {
		return a, errAddress
	}
	a.kind, b = b[0], b[1:]
	var ok bool
	switch a.kind {
	case addrName:
		if a.name, b, ok = readName(b); !ok {
			return a, errAddress
		}
	case addrReply:
		if a.ref, b, ok = readUvarint(b); !ok || len(b) == 0 {
			return a, errAddress
		}
		a.flags, b = b[0], b[1:]
	case addrCall, addrUnmonitor:
		if a.name, b, ok = readName(b); !ok {
			return a, errAddress
		}
		if a.ref, b, ok = readUvarint(b); !ok {
			return a, errAddress
		}
	default:
		return a, errAddress
	}
	if a.kind == addrUnmonitor {
		if len(b) != 0 {
			return a, errAddress
		}
		return a, nil
	}
	if len(b) == 0 {
		return a, errAddress
	}
	a.body = b
	return a, nil
}

func readUvarint(b []byte) (uint64, []byte, bool) {
	v, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, b, false
	}
	return v, b[k:], true
}

func readName(b []byte) ([]byte, []byte, bool) {
	l, b, ok := readUvarint(b)
	if !ok || l == 0 || l > maxLocalName || l > uint64(len(b)) {
		return nil, b, false
	}
	return b[:l], b[l:], true
}

// sendItem queues an encoded message item on pe, as fragments when it is
// large; it waits while pe's queue is full.
func (n *Node) sendItem(pe *peer, item []byte) error {
	if pe.features&codec.FeatureFragments != 0 && len(item) > n.fragmentAbove {
		if err := pe.sendFragmented(item, n.fragmentAbove); err != nil {
			return err
		}
		pe.stats.msgsOut.Add(1)
		pe.stats.bytesOut.Add(uint64(len(item)))
		return nil
	}
	return pe.sendMessage(item)
}

// sendReply sends a reply to a caller on another node.
func (n *Node) sendReply(p *Process, req Request, v any, released bool) error {
	if req.Ref.Node != req.From.Node || req.Ref.Incarnation != req.From.Incarnation {
		return nil // not a reference of the caller's node: no call waits on it
	}
	pe, err := n.peerFor(req.From.Node)
	if err != nil {
		return fmt.Errorf("reply to %v: %w", req.From, err)
	}
	if pe.incarnation != req.From.Incarnation {
		return nil // the caller's node has restarted: the call is gone
	}
	var flags byte
	if released {
		flags = replyReleased
	}
	bp := getBuf()
	item, err := appendAddressedFlags((*bp)[:0], p.pid.ID, addrReply, "", req.Ref.ID, flags, v)
	if err == nil {
		err = n.sendItem(pe, item)
	}
	putBuf(bp, item)
	if err != nil {
		return fmt.Errorf("reply to %v: %w", req.From, err)
	}
	return nil
}

// monitorName starts the monitor of a call to a name on another node: the
// target is unknown until that node resolves the name, so the watching
// entry holds a stand-in PID with ID 0 for "the process the name names".
func (n *Node) monitorName(p *Process, node string) (Ref, PID) {
	ref := n.makeRef()
	pe, err := n.peerFor(node)
	if err != nil {
		target := PID{Node: node}
		if p.addWatching(ref, target) {
			p.mu.Lock()
			delete(p.rel.watching, ref)
			p.mb.Push(Down{Ref: ref, PID: target, Reason: NoConnection})
			p.mu.Unlock()
		}
		return ref, target
	}
	target := PID{Node: node, Incarnation: pe.incarnation}
	p.addWatching(ref, target)
	return ref, target
}

// sendNamedRequest sends a call's request to name on target's node.
func (n *Node) sendNamedRequest(p *Process, target PID, name string, ref Ref, req any) error {
	if target.Incarnation == 0 {
		return nil // not connected: the call's Down is queued already
	}
	pe, err := n.peerFor(target.Node)
	if err != nil {
		return err
	}
	if pe.incarnation != target.Incarnation {
		return nil // the connection the monitor was set on is gone: so is the monitor, with a Down
	}
	bp := getBuf()
	item, err := appendAddressed((*bp)[:0], p.pid.ID, addrCall, name, ref.ID, Request{From: p.pid, Ref: ref, Body: req})
	if err == nil {
		err = n.sendItem(pe, item)
	}
	putBuf(bp, item)
	return err
}

// demonitorName ends a named call's monitor on the node that holds it.
func (n *Node) demonitorName(p *Process, node, name string, ref Ref) {
	pe := n.peerIfUp(node)
	if pe == nil {
		return
	}
	bp := getBuf()
	item, err := appendAddressed((*bp)[:0], p.pid.ID, addrUnmonitor, name, ref.ID, nil)
	if err == nil {
		pe.sendControl(item) // never waits: it may run while the link is backed up
	}
	putBuf(bp, item)
}

// deliverAddressed handles an addressed record from pe. Runs on the loop,
// in the link's message order (see deliver).
func (pe *peer) deliverAddressed(m codec.Message) error {
	n := pe.n
	a, err := parseAddress(m.Term)
	if err != nil {
		return err
	}
	switch a.kind {
	case addrName:
		if t := n.svc.names.lookup(string(a.name)); t != nil {
			pe.deliverTo(t, a.body)
		} else {
			n.metrics.droppedNoProc.Add(1)
		}
	case addrCall:
		ref := Ref{Node: pe.name, Incarnation: pe.incarnation, ID: a.ref}
		from := PID{Node: pe.name, Incarnation: pe.incarnation, ID: m.From}
		t := n.svc.names.lookup(string(a.name))
		if t != nil && t.addMonitor(ref, from) {
			pe.deliverTo(t, a.body)
			return nil
		}
		pe.control(func(b []byte) ([]byte, error) {
			d := codec.Down{Ref: ref, Watcher: from, PID: PID{Node: n.self, Incarnation: n.incarnation}, Reason: NoProc}
			return d.Append(b)
		})
	case addrUnmonitor:
		if t := n.svc.names.lookup(string(a.name)); t != nil {
			t.removeMonitor(Ref{Node: pe.name, Incarnation: pe.incarnation, ID: a.ref})
		}
	case addrReply:
		if !n.svc.aliases.waiting(a.ref) {
			return nil // a late reply: dropped here, never queued
		}
		pe.flushRun() // what the replier sent before goes first
		v, err := codec.Message{Term: a.body}.Decode(&n.limits)
		if err != nil {
			n.undecodable(err)
			return nil
		}
		ref := Ref{Node: n.self, Incarnation: n.incarnation, ID: a.ref}
		n.svc.aliases.deliverRef(a.ref, &callReply{ref: ref, value: v, released: a.flags&replyReleased != 0})
	}
	return nil
}

// deliverTo hands the encoded message body to t like deliver does.
func (pe *peer) deliverTo(t *Process, body []byte) {
	n := pe.n
	pe.msgsIn++
	if len(body) <= maxEncodedDelivery {
		if t != pe.runTo {
			pe.flushRun()
			pe.runTo = t
		}
		pe.run = append(pe.run, body)
		if len(pe.run) == maxRun {
			pe.flushRun()
		}
		return
	}
	pe.flushRun()
	v, err := codec.Message{Term: body}.Decode(&n.limits)
	if err != nil {
		n.undecodable(err)
		return
	}
	if !t.mb.Push(v) {
		n.metrics.droppedNoProc.Add(1)
	}
}
