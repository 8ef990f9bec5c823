package node

import (
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrt/mesh/loop"
)

// metrics are the node's Prometheus metrics. Counters on hot paths are plain
// atomics (per peer, on the peer) read at scrape time by a collector, so the
// send path pays one uncontended atomic add and no label lookup; the batch
// histogram is observed once per drain of a peer's queue, not per message,
// into plain atomics too (batchHist).
//
// Every metric carries a constant label node="<the node's name>", so that
// several nodes in one process can share one Registerer: each registers its
// own series.
type metrics struct {
	reg prometheus.Registerer // nil: nothing registered

	handshakes    *prometheus.CounterVec
	peers         prometheus.Gauge
	nodeDowns     prometheus.Counter
	peersCut      *prometheus.CounterVec
	tickRTT       prometheus.Histogram
	batchMsgs     batchHist
	droppedNoProc atomic.Uint64
	decodeErrors  atomic.Uint64

	collector *nodeCollector
}

func newMetrics(reg prometheus.Registerer, n *Node) (*metrics, error) {
	m := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mesh", Name: "handshakes_total",
			Help: "Peer handshakes by outcome (ok, auth, version, unexpected_peer, bad_hello, timeout, io, duplicate, refused, tls, limit).",
		}, []string{"result"}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mesh", Name: "peers_connected", Help: "Nodes connected now.",
		}),
		nodeDowns: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mesh", Name: "node_downs_total", Help: "Connections to peers that ended.",
		}),
		peersCut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mesh", Name: "peers_cut_total",
			Help: "Connections this node cut because the peer went over a limit, by limit.",
		}, []string{"limit"}),
		tickRTT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mesh", Name: "tick_rtt_seconds", Help: "Heartbeat round-trip time.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16),
		}),
	}
	m.batchMsgs.created = time.Now()
	m.collector = &nodeCollector{n: n, m: m}
	if reg == nil {
		return m, nil
	}
	m.reg = prometheus.WrapRegistererWith(prometheus.Labels{"node": n.self}, reg)
	for _, c := range m.collectors() {
		if err := m.reg.Register(c); err != nil {
			m.unregister()
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.handshakes, m.peers, m.nodeDowns, m.peersCut, m.tickRTT, m.collector}
}

func (m *metrics) unregister() {
	if m == nil || m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}

// peerCut counts a connection cut because the peer went over limit.
func (m *metrics) peerCut(limit string) {
	if m != nil {
		m.peersCut.WithLabelValues(limit).Inc()
	}
}

func (m *metrics) handshake(reason string) {
	if m != nil {
		m.handshakes.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) peerUp() { m.peers.Inc() }

func (m *metrics) peerDown() {
	m.peers.Dec()
	m.nodeDowns.Inc()
}

func (m *metrics) tickRTTObserve(d time.Duration) { m.tickRTT.Observe(d.Seconds()) }

// drained records one drain of a peer's queue: msgs messages in frames
// frames. Runs on the peer's loop.
func (m *metrics) drained(s *peerStats, msgs, frames uint64) {
	s.framesOut.Add(frames)
	if msgs > 0 {
		m.batchMsgs.observe(msgs)
	}
}

// batchBounds is the number of mesh_batch_messages's bucket bounds: 1, 4,
// 16, ... 65536, powers of 4.
const batchBounds = 9

// batchHist is mesh_batch_messages, observed on every drain of every
// peer's queue (both ends of a remote round trip, once each): a bucket's
// count and the sum, two atomic adds, where a prometheus.Histogram took
// four and a search of its bounds. The collector reports it as a
// histogram at scrape time.
type batchHist struct {
	counts  [batchBounds + 1]atomic.Uint64 // per bucket, not cumulative; the last is over the largest bound
	sum     atomic.Uint64
	created time.Time // the histogram's created timestamp, as prometheus.Histogram sets it
}

// observe counts a drain of msgs messages (msgs > 0): in the bucket of the
// least power of 4 at or over it. Any goroutine.
func (h *batchHist) observe(msgs uint64) {
	h.counts[min((bits.Len64(msgs-1)+1)/2, batchBounds)].Add(1)
	h.sum.Add(msgs)
}

// metric is h as a Prometheus histogram.
func (h *batchHist) metric() prometheus.Metric {
	buckets := make(map[float64]uint64, batchBounds)
	var count uint64
	for i := range h.counts {
		count += h.counts[i].Load()
		if i < batchBounds {
			buckets[float64(uint64(1)<<(2*i))] = count
		}
	}
	// Not one snapshot: a drain observed meanwhile may be in the sum and
	// not yet in a count, harmless for rates.
	return prometheus.MustNewConstHistogramWithCreatedTimestamp(descBatch, count, float64(h.sum.Load()), buckets, h.created)
}

// peerStats are one peer's traffic counters.
type peerStats struct {
	msgsOut, bytesOut atomic.Uint64 // written by senders
	framesOut         atomic.Uint64 // written on the peer's loop
	msgsIn, bytesIn   atomic.Uint64 // written on the peer's loop
	framesIn          atomic.Uint64 // written on the peer's loop
}

// sendWaiter is a link that counts the sends that waited for room in its
// queue (loop.Conn.SendWaits): mesh_send_stalls_total.
type sendWaiter interface{ SendWaits() uint64 }

var _ sendWaiter = (*loop.Conn)(nil)

// nodeCollector reads the per-peer counters and node gauges at scrape time.
type nodeCollector struct {
	n *Node
	m *metrics
}

var (
	descMsgsOut   = prometheus.NewDesc("mesh_messages_sent_total", "Messages sent to a peer.", []string{"peer"}, nil)
	descBytesOut  = prometheus.NewDesc("mesh_message_bytes_sent_total", "Encoded message bytes sent to a peer.", []string{"peer"}, nil)
	descFramesOut = prometheus.NewDesc("mesh_frames_sent_total", "Frames (message batches and fragments) written to a peer.", []string{"peer"}, nil)
	descStalls    = prometheus.NewDesc("mesh_send_stalls_total", "Enqueues that waited for room in a peer's full send queue (backpressure; each fragment of a large message counts).", []string{"peer"}, nil)
	descMsgsIn    = prometheus.NewDesc("mesh_messages_received_total", "Messages received from a peer.", []string{"peer"}, nil)
	descBytesIn   = prometheus.NewDesc("mesh_bytes_received_total", "Plaintext bytes received from a peer.", []string{"peer"}, nil)
	descFramesIn  = prometheus.NewDesc("mesh_frames_received_total", "Frames received from a peer.", []string{"peer"}, nil)
	descQueue     = prometheus.NewDesc("mesh_send_queue_bytes", "Bytes queued for a peer and not yet taken by its loop.", []string{"peer"}, nil)
	descDropped   = prometheus.NewDesc("mesh_messages_dropped_total", "Received messages not delivered, by reason.", []string{"reason"}, nil)
	descProcesses = prometheus.NewDesc("mesh_processes", "Live processes on this node.", nil, nil)
	descRegistry  = prometheus.NewDesc("mesh_registry_names", "Names in this node's global registry replica.", nil, nil)
	descConflicts = prometheus.NewDesc("mesh_registry_conflicts_total", "Registrations of this node's processes that lost a conflict.", nil, nil)
	descGroups    = prometheus.NewDesc("mesh_groups", "Process groups with members, in this node's replica.", nil, nil)
	descMembers   = prometheus.NewDesc("mesh_group_members", "Group memberships (a process in a group) in this node's replica, all groups.", nil, nil)
	descBatch     = prometheus.NewDesc("mesh_batch_messages", "Messages written per drain of a peer's send queue (one write, one or more frames).", nil, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMsgsOut, descBytesOut, descFramesOut, descStalls, descMsgsIn, descBytesIn,
		descFramesIn, descQueue, descDropped, descProcesses, descRegistry, descConflicts, descGroups, descMembers, descBatch} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	for _, pe := range n.upPeers() {
		s := &pe.stats
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), pe.name)
		}
		counter(descMsgsOut, s.msgsOut.Load())
		counter(descBytesOut, s.bytesOut.Load())
		counter(descFramesOut, s.framesOut.Load())
		// Counted where the wait happens: the link's queues, its
		// companion's included (companion.go).
		var stalls uint64
		queued := pe.conn.Queued()
		if w, ok := pe.conn.(sendWaiter); ok {
			stalls = w.SendWaits()
		}
		if c := pe.out.Load(); c != nil {
			if w, ok := c.conn.(sendWaiter); ok {
				stalls += w.SendWaits()
			}
			queued += c.conn.Queued()
		}
		counter(descStalls, stalls)
		counter(descMsgsIn, s.msgsIn.Load())
		counter(descBytesIn, s.bytesIn.Load())
		counter(descFramesIn, s.framesIn.Load())
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(queued), pe.name)
	}
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(c.m.droppedNoProc.Load()), "noproc")
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(c.m.decodeErrors.Load()), "decode")
	ch <- prometheus.MustNewConstMetric(descProcesses, prometheus.GaugeValue, float64(n.procs.len()))
	ch <- c.m.batchMsgs.metric()
	if n.global != nil {
		ch <- prometheus.MustNewConstMetric(descRegistry, prometheus.GaugeValue, float64(n.global.Len()))
		ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.CounterValue, float64(n.global.Conflicts()))
	}
	if n.groups != nil {
		groups, members := n.groups.Counts() // no copy or sort of every group per scrape
		ch <- prometheus.MustNewConstMetric(descGroups, prometheus.GaugeValue, float64(groups))
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(members))
	}
}
