package node

// Addressed records (internal/wire/addressed.go) carry what is sent to a
// name or to a waiting call: SendNamed, Reply to another node, CallNamed and
// the end of its monitor. This file sends them and handles them on arrival.
// The reference or PID a record implies belongs to the node at the other
// end of the link (the sender's for a caller and its ref, the receiver's own
// for a reply's ref), so a peer can only speak for itself.

import (
	"bytes"
	"fmt"

	"github.com/meshrt/mesh/internal/wire"
)

// sendItem queues an encoded message item of the local process from on pe,
// as fragments when it is large; it waits while pe's queue is full.
func (n *Node) sendItem(pe *peer, from uint64, item []byte) error {
	if pe.features&wire.FeatureFragments != 0 && len(item) > n.fragmentAbove {
		if err := pe.sendFragmented(from, item, n.fragmentAbove); err != nil {
			return err
		}
		pe.stats.msgsOut.Add(1)
		pe.stats.bytesOut.Add(uint64(len(item)))
		return nil
	}
	return pe.sendMessage(from, item)
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
	var flags uint8
	if released {
		flags = wire.ReplyReleased
	}
	bp := getBuf()
	item, err := wire.AppendAddressed((*bp)[:0], p.pid.ID, wire.AddrReply, "", req.Ref.ID, flags, v)
	if err == nil {
		err = n.sendItem(pe, p.pid.ID, item)
	}
	putBuf(bp, item)
	if err != nil {
		return fmt.Errorf("reply to %v: %w", req.From, err)
	}
	// As after a remote Send (Process.Send): the next request comes from
	// the link's loop, which readies this process and then runs it, so
	// the yields before a park only take a core from the loops. With 8
	// remote callers this raised calls/s over one caller's from 2.6x to
	// 2.9x (median of 12 alternating runs, docs/services.md).
	p.parkNextOn(pe)
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

// monitorForCall starts the caller's half of a call's monitor on the remote
// process to: the other half is set by the request's record where it
// arrives (deliverAddressed, AddrCallPID). It returns the peer to send the
// request on, or nil when the call is over already: its Down (noconnection,
// or noproc for a PID of another incarnation of that node) is queued.
func (n *Node) monitorForCall(p *Process, to PID) (Ref, *peer) {
	ref := n.makeRef()
	if !p.addWatching(ref, to) {
		return ref, nil // p has exited: call ends with ErrExited
	}
	pe, err := n.peerFor(to.Node)
	reason := any(nil)
	switch {
	case err != nil:
		reason = NoConnection
	case to.Incarnation != pe.incarnation:
		reason = NoProc
	default:
		return ref, pe
	}
	p.mu.Lock()
	if p.rel != nil {
		delete(p.rel.watching, ref)
	}
	p.mb.Push(Down{Ref: ref, PID: to, Reason: reason})
	p.mu.Unlock()
	return ref, nil
}

// sendPIDRequest sends a call's request to the process to on pe's node, in
// one record that also sets the call's monitor there. A nil pe: nothing to
// send (see monitorForCall).
func (n *Node) sendPIDRequest(p *Process, pe *peer, to PID, ref Ref, req any) error {
	if pe == nil {
		return nil
	}
	bp := getBuf()
	item, err := wire.AppendCallPID((*bp)[:0], p.pid.ID, to.ID, ref.ID, Request{From: p.pid, Ref: ref, Body: req})
	if err == nil {
		err = n.sendItem(pe, p.pid.ID, item)
	}
	putBuf(bp, item)
	if err == nil {
		p.parkNextOn(pe) // the reply comes on pe's link, as after a remote Send
	}
	return err
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
	item, err := wire.AppendAddressed((*bp)[:0], p.pid.ID, wire.AddrCall, name, ref.ID, 0, Request{From: p.pid, Ref: ref, Body: req})
	if err == nil {
		err = n.sendItem(pe, p.pid.ID, item)
	}
	putBuf(bp, item)
	if err == nil {
		p.parkNextOn(pe) // the reply comes on pe's link, as after a remote Send
	}
	return err
}

// demonitorName ends a named call's monitor on the node that holds it.
func (n *Node) demonitorName(p *Process, node, name string, ref Ref) {
	pe := n.peerIfUp(node)
	if pe == nil {
		return
	}
	bp := getBuf()
	item, err := wire.AppendAddressed((*bp)[:0], p.pid.ID, wire.AddrUnmonitor, name, ref.ID, 0, nil)
	if err == nil {
		pe.sendControl(p.pid.ID, true, item) // never waits: it may run while the link is backed up
	}
	putBuf(bp, item)
}

// deliverAddressed handles an addressed record from pe. Runs on the loop,
// in the link's message order (see deliver).
func (r *rx) deliverAddressed(m wire.Message) error {
	pe, n := r.pe, r.pe.n
	a, err := wire.ParseAddress(m.Term)
	if err != nil {
		return err
	}
	switch a.Kind {
	case wire.AddrName:
		if t := n.svc.names.lookup(string(a.Name)); t != nil {
			r.deliverTo(t, a.Body)
		} else {
			n.metrics.droppedNoProc.Add(1)
		}
	case wire.AddrCall:
		ref := Ref{Node: pe.name, Incarnation: pe.incarnation, ID: a.Ref}
		from := PID{Node: pe.name, Incarnation: pe.incarnation, ID: m.From}
		t := n.svc.names.lookup(string(a.Name))
		if t != nil && t.addMonitor(ref, from) {
			r.deliverTo(t, a.Body)
			return pe.relationAdded()
		}
		pe.control(&wire.Down{Ref: ref, Watcher: from, PID: PID{Node: n.self, Incarnation: n.incarnation}, Reason: NoProc})
	case wire.AddrCallPID:
		ref := Ref{Node: pe.name, Incarnation: pe.incarnation, ID: a.Ref}
		from := PID{Node: pe.name, Incarnation: pe.incarnation, ID: m.From}
		to := PID{Node: n.self, Incarnation: n.incarnation, ID: a.To}
		if t := n.local(to); t != nil && t.addMonitor(ref, from) {
			r.deliverTo(t, a.Body)
			return pe.relationAdded()
		}
		pe.control(&wire.Down{Ref: ref, Watcher: from, PID: to, Reason: NoProc})
	case wire.AddrUnmonitor:
		if t := n.svc.names.lookup(string(a.Name)); t != nil {
			t.removeMonitor(Ref{Node: pe.name, Incarnation: pe.incarnation, ID: a.Ref})
		}
	case wire.AddrReply:
		if !n.svc.aliases.waiting(a.Ref) {
			return nil // a late reply: dropped here, never queued
		}
		r.flushRun() // what the replier sent before goes first
		ref := Ref{Node: n.self, Incarnation: n.incarnation, ID: a.Ref}
		cr := newCallReply(ref, nil, a.Flags&wire.ReplyReleased != 0)
		if len(a.Body) > maxEncodedDelivery {
			cr.enc = a.Body // the caller decodes it (see pushLarge)
			if !r.reasm.Owned() {
				cr.enc = bytes.Clone(a.Body)
			}
		} else {
			// Small: decoded here, within 16 KiB times the decode budget.
			cr.value, cr.err = n.decodeOnLoop(a.Body)
		}
		n.svc.aliases.deliverRef(a.Ref, cr)
	}
	return nil
}

// deliverTo hands the encoded message body to t like deliver does.
func (r *rx) deliverTo(t *Process, body []byte) {
	r.msgsIn++
	if len(body) <= maxEncodedDelivery {
		if t != r.runTo {
			r.flushRun()
			r.runTo = t
		}
		r.run = append(r.run, body)
		if len(r.run) == maxRun {
			r.flushRun()
		}
		return
	}
	r.pushLarge(t, body, r.reasm.Owned())
}
