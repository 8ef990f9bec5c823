package node

// Heartbeats: one sweep per node, not a timer per connection.
//
// Every quarter of the tick timeout one goroutine of the node walks its
// peers: a peer silent for longer than the timeout is cut
// (net_tick_timeout); a peer this node sent no message to since the last
// sweep gets a tick. Ticks are one-way: the receiver only notes that
// something arrived (OnData sets lastSeen), and echoes one tick in
// tockEvery as a tock so that the round-trip metric keeps its samples.
//
// Why: a tick timer per connection, each tick echoed, cost four frames and
// two loop wake-ups per link every quarter timeout, with nothing else to
// do; at 50 nodes (2 450 connection ends) that was most of an idle
// cluster's CPU. A busy link now sends no ticks at all, and an idle one
// half as many frames, sent in one burst per node (the enqueues to one
// event loop share its wake-up).
//
// tickSeq and tickMark are owned by the sweep goroutine.

import (
	"fmt"
	"time"

	"github.com/meshrt/mesh/internal/wire"
)

// tockEvery: one tick in this many is echoed, for the round-trip metric.
const tockEvery = 8

// tickLoop runs the sweeps until the node stops. Started by Start.
func (n *Node) tickLoop() {
	defer n.bg.Done()
	d := n.opts.tickTimeout
	t := time.NewTicker(d / 4)
	defer t.Stop()
	for {
		select {
		case <-n.life.Done():
			return
		case <-t.C:
			n.tickSweep(d)
		}
	}
}

// tickSweep ticks the idle peers and cuts the silent ones.
func (n *Node) tickSweep(d time.Duration) {
	now := time.Now().UnixNano()
	for _, pe := range n.upPeers() {
		if silent, cut := tooSilent(now, pe.lastSeen.Load(), d); cut {
			n.log.Warn("peer silent past the tick timeout", "peer", pe.name, "silent", silent)
			pe.setDownReason(NetTickTimeout)
			_ = pe.conn.Close(fmt.Errorf("%w: silent for %v", errTickTimeout, silent))
			continue
		}
		if out := pe.stats.msgsOut.Load(); out != pe.tickMark {
			pe.tickMark = out // the link carried messages: they told the peer we live
			continue
		}
		pe.tickSeq++
		seq := pe.tickSeq
		pe.control(&wire.Tick{Seq: seq, Time: now})
	}
}
