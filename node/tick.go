package node

// Heartbeats: one sweep per node, not a timer per connection.
//
// Every sweepsPerTimeout-th of the tick timeout one goroutine of the node
// walks its peers: a peer silent for longer than the timeout is cut
// (net_tick_timeout); a peer this node sent no message to during the last
// idleSweeps sweeps gets a tick. Ticks are one-way: the receiver only notes
// that something arrived (OnData sets heard, and the next sweep dates it:
// an input reads no clock, which cost a round trip's two ends 0.1-0.3 µs
// of its user time on a VM's clock), and echoes one tick in
// tockEvery as a tock so that the round-trip metric keeps its samples.
//
// The rule bounds the silence of a healthy idle link, seen from its far
// end, at (idleSweeps+1) sweeps, half the timeout: a message that went out
// just after a sweep is counted by the next one, and idleSweeps empty
// sweeps later comes a tick. A tick every sweep (at a quarter of the
// timeout) gave the same bound at 4 frames per link end per timeout; this
// sends 12/5: 40% fewer, and an idle cluster's CPU is its ticks (each one
// a TLS record, a loopback or network write and a wake-up of the far
// end's event loop).
//
// Why one sweep: a tick timer per connection, each tick echoed, cost four
// frames and two loop wake-ups per link every quarter timeout, with
// nothing else to do; at 50 nodes (2 450 connection ends) that was most of
// an idle cluster's CPU. A busy link sends no ticks at all.
//
// Anti-entropy rides on the ticks: in each sweep, the first peer due a
// tick gets this node's list of connected nodes instead (it counts as
// one), so a pair that never connected (a gossiped dial that failed until
// it was given up, a join that raced another) learns of each other again
// within a few sweeps, at no extra frame.
//
// tickSeq, tickMark and idleFor are owned by the sweep goroutine.

import (
	"fmt"
	"time"

	"github.com/meshrt/mesh/internal/wire"
)

// tockEvery: one tick in this many is echoed, for the round-trip metric.
const tockEvery = 8

// The sweep period is the tick timeout / sweepsPerTimeout; an idle peer
// gets a tick every idleSweeps sweeps. (idleSweeps+1)/sweepsPerTimeout is
// the longest silence of a healthy idle link, as a fraction of the timeout.
const (
	sweepsPerTimeout = 12
	idleSweeps       = 5
)

// tickLoop runs the sweeps until the node stops. Started by Start.
func (n *Node) tickLoop() {
	defer n.bg.Done()
	d := n.opts.tickTimeout
	every := d / sweepsPerTimeout
	t := time.NewTimer(untilNextSweep(time.Now(), every))
	defer t.Stop()
	for {
		select {
		case <-n.life.Done():
			return
		case <-t.C:
			n.tickSweep(d)
			t.Reset(untilNextSweep(time.Now(), every))
		}
	}
}

// untilNextSweep is how long a node waits at now for its next sweep: sweeps
// fall on the multiples of every on the wall clock, so all nodes with the
// same tick timeout sweep at the same instants (to within their clocks'
// agreement), and the ticks a node receives arrive together: its event
// loops wake once for many of them, not once each. Measured on 50
// in-process nodes, idle: 6.5-6.9% of one core with free-running sweeps,
// 2.5-2.9% aligned (MeshScale, two runs each, same build otherwise). The
// wait is computed afresh each time, so a wall clock that steps moves one
// sweep at most, by at most every.
func untilNextSweep(now time.Time, every time.Duration) time.Duration {
	return max(now.Truncate(every).Add(every).Sub(now), time.Millisecond)
}

// tickSweep ticks the idle peers and cuts the silent ones.
func (n *Node) tickSweep(d time.Duration) {
	now, mono := time.Now().UnixNano(), monoNanos() // the ticks' stamp (a tock brings it back), the silence rule's clock
	listed := false
	for _, pe := range n.upPeers() { // in the map's random order
		if silent, cut := pe.sweepSilence(mono, d); cut {
			n.log.Warn("peer silent past the tick timeout", "peer", pe.name, "silent", silent)
			pe.setDownReason(NetTickTimeout)
			_ = pe.conn.Close(fmt.Errorf("%w: silent for %v", errTickTimeout, silent))
			continue
		}
		if !pe.tickDue(pe.linkMsgsOut.Load()) {
			continue
		}
		if !listed {
			listed = true
			pe.control(&wire.Nodes{Names: n.List()})
			continue
		}
		pe.tickSeq++
		seq := pe.tickSeq
		pe.control(&wire.Tick{Seq: seq, Time: now})
	}
}

// sweepSilence dates the input heard since the last sweep at mono, the
// sweep's clock, and applies the silence rule (tooSilent). The sweep's
// goroutine only.
func (pe *peer) sweepSilence(mono int64, timeout time.Duration) (silent time.Duration, cut bool) {
	if pe.heard.Swap(false) {
		pe.lastSeen.Store(mono)
	}
	return tooSilent(mono, pe.lastSeen.Load(), timeout)
}

// tickDue is the idle rule, applied once per sweep with the count of
// messages sent to the peer so far: it reports whether the peer is due a
// tick (the link carried no message during the last idleSweeps sweeps, and
// no tick either).
func (pe *peer) tickDue(msgsOut uint64) bool {
	if msgsOut != pe.tickMark {
		pe.tickMark = msgsOut // the link carried messages: they told the peer we live
		pe.idleFor = 0
		return false
	}
	if pe.idleFor++; pe.idleFor < idleSweeps {
		return false
	}
	pe.idleFor = 0
	return true
}
