package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// handshakeCounts reads mesh_handshakes_total by result from reg.
func handshakeCounts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "mesh_handshakes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					got[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}

func TestEachHandshakeIsCountedOnceByHowItEnded(t *testing.T) {
	regA, regB := prometheus.NewPedanticRegistry(), prometheus.NewPedanticRegistry()
	a := startNamed(t, "a", "c", WithMetrics(regA))
	b := startNamed(t, "b", "c", WithMetrics(regB))
	w := startNamed(t, "w", "wrong")
	connect(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	_ = a.Connect(ctx, w.Self())
	eventually(t, "b counts its accepted handshake", func() bool { return handshakeCounts(t, regB)["ok"] == 1 })
	gotA := handshakeCounts(t, regA)
	if len(gotA) != 2 || gotA["ok"] != 1 || gotA["auth"] != 1 {
		t.Fatalf("a's handshake counts = %v, want ok 1 and auth 1", gotA)
	}
	if v := testutil.ToFloat64(a.metrics.peers); v != 1 {
		t.Fatalf("a's peers_connected = %v, want 1 (b; w refused)", v)
	}
}

// gatherValues sums the samples of each metric family in reg by name,
// counting a histogram by its sample count.
func gatherValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				got[mf.GetName()] += m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[mf.GetName()] += m.GetGauge().GetValue()
			case m.Histogram != nil:
				got[mf.GetName()] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return got
}

// streamTo sends count messages from a process of a to a sink on b and
// waits until the sink has them all.
func streamTo(t *testing.T, a, b *Node, count int) {
	t.Helper()
	got := make(chan struct{})
	sink := b.SpawnFunc(func(p *Process) error {
		for range count {
			if _, err := p.Receive(context.Background()); err != nil {
				return err
			}
		}
		close(got)
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := a.Run(ctx, func(p *Process) error {
		for range count {
			if err := p.Send(sink, "payload"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("the sink did not get every message")
	}
}

// The metric names and help texts pass Prometheus' linter, and a stream
// shows in the frame, batch and message counts of both ends.
func TestMetricsPassTheLinterAndCountFramesAndBatches(t *testing.T) {
	regA, regB := prometheus.NewPedanticRegistry(), prometheus.NewPedanticRegistry()
	a := startNamed(t, "a", "c", WithMetrics(regA))
	b := startNamed(t, "b", "c", WithMetrics(regB))
	connect(t, a, b)
	streamTo(t, a, b, 1000)
	member := b.SpawnFunc(func(p *Process) error { _, err := p.Receive(context.Background()); return err })
	defer func() { _ = b.Send(member, "done") }()
	if err := b.Groups().Join("g", member); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's replica shows b's member", func() bool { return len(a.Groups().Members("g")) == 1 })
	for name, reg := range map[string]*prometheus.Registry{"a": regA, "b": regB} {
		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: lint: %s: %s", name, p.Metric, p.Text)
		}
	}
	va, vb := gatherValues(t, regA), gatherValues(t, regB)
	for _, c := range []struct {
		what string
		got  float64
		ok   bool
	}{
		{"a's messages sent", va["mesh_messages_sent_total"], va["mesh_messages_sent_total"] >= 1000},
		{"a's frames sent", va["mesh_frames_sent_total"], va["mesh_frames_sent_total"] >= 1},
		{"a's batches observed", va["mesh_batch_messages"], va["mesh_batch_messages"] >= 1},
		{"b's messages received", vb["mesh_messages_received_total"], vb["mesh_messages_received_total"] >= 1000},
		{"b's frames received", vb["mesh_frames_received_total"], vb["mesh_frames_received_total"] >= 1},
		{"b's processes", vb["mesh_processes"], vb["mesh_processes"] >= 1},
		{"a's groups", va["mesh_groups"], va["mesh_groups"] == 1},
		{"a's group members", va["mesh_group_members"], va["mesh_group_members"] == 1},
	} {
		if !c.ok {
			t.Errorf("%s = %v after a 1000-message stream", c.what, c.got)
		}
	}
	if _, ok := va["mesh_send_stalls_total"]; !ok {
		t.Error("a exports no mesh_send_stalls_total for its peer")
	}
}

// Two nodes in one process can share one Registerer: each registers its
// own series, told apart by the node label.
func TestTwoNodesShareOneRegisterer(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := startNamed(t, "a", "c", WithMetrics(reg))
	b := startNamed(t, "b", "c", WithMetrics(reg))
	connect(t, a, b)
	byNode := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		nodes := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "mesh_peers_connected" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "node" {
						nodes[l.GetValue()] = m.GetGauge().GetValue()
					}
				}
			}
		}
		return nodes
	}
	// Connect returns once the dialer has its peer; the acceptor counts
	// its own a moment later.
	eventually(t, "mesh_peers_connected 1 for each node", func() bool {
		nodes := byNode()
		return len(nodes) == 2 && nodes[a.Self()] == 1 && nodes[b.Self()] == 1
	})
	// A node stopped unregisters its series; the other's stay.
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "mesh_peers_connected"); err != nil || n != 1 {
		t.Fatalf("mesh_peers_connected series after b stopped = %d, %v; want 1", n, err)
	}
}

// docs/grafana/mesh.json is valid JSON, and every query of every panel
// names only metrics that a node (with the Go and process collectors
// meshbench node adds) exports.
func TestGrafanaDashboardQueriesNameExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "mesh.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("mesh.json is not valid JSON: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("mesh.json has no panels")
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := startNamed(t, "a", "c", WithMetrics(reg))
	b := startNamed(t, "b", "c")
	connect(t, a, b)
	streamTo(t, a, b, 100)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exists := map[string]bool{}
	for _, mf := range mfs {
		exists[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exists[mf.GetName()+s] = true
			}
		}
	}
	// Vectors with no series yet (nothing cut, say) still exist: their
	// descriptors name them.
	descs := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range a.metrics.collectors() {
			c.Describe(descs)
		}
		close(descs)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			exists[m[1]] = true
		}
	}
	metricName := regexp.MustCompile(`\b(?:mesh|go|process)_[a-z0-9_]+\b`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
			for _, name := range names {
				if !exists[name] {
					t.Errorf("panel %q: query %q names %s, which no node exports", p.Title, tg.Expr, name)
				}
			}
		}
	}
}

// counterBy reads a counter vector named name from reg by its one label.
func counterBy(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					got[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}

// The hardening review: 5 000 TLS failures and the whole slot attack left
// no trace in the metrics. Handshakes that end before the cookie proof are
// counted too: garbage instead of TLS (tls), silence past the first-byte
// deadline (timeout).
func TestHandshakesEndingBeforeTheProofAreCounted(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	n := startNamed(t, "n", "c", WithMetrics(reg))
	garbage, err := net.Dial("tcp", n.name.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	if _, err := garbage.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	idle, err := net.Dial("tcp", n.name.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	eventually(t, "tls and timeout counted", func() bool {
		got := handshakeCounts(t, reg)
		return got["tls"] == 1 && got["timeout"] == 1
	})
}

func TestAPeerOverTheRegistryNamesLimitIsCutAndCounted(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := startNamed(t, "a", "c")
	b := startNamed(t, "b", "c", WithMetrics(reg), WithRegistryLimits(5, 0))
	holder := a.SpawnFunc(func(p *Process) error { _, err := recv(p); return err })
	for i := range 6 {
		if err := a.Global().Register(fmt.Sprintf("name%d", i), holder); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	_ = b.Connect(ctx, a.Self()) // up, then cut when a's snapshot arrives
	eventually(t, "b cuts a at its names limit", func() bool {
		return counterBy(t, reg, "mesh_peers_cut_total", "limit")["registry_names"] >= 1
	})
	if got := b.Global().Len(); got != 0 {
		t.Fatalf("b holds %d of a's names after refusing its snapshot", got)
	}
}

// A process whose sends of small values (encoded straight into the link's
// queue, send_direct.go) wait for room in the queue of a peer that stopped
// reading is counted in mesh_send_stalls_total, as a send of any other
// value is.
func TestDirectSendsThatWaitForRoomAreCountedAsStalls(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a := startNamed(t, "a", "c", WithMetrics(reg))
	b := startNamed(t, "b", "c")
	relay := connectViaFreezer(t, b, a)
	var toB *peer
	eventually(t, "a connected to b", func() bool { toB = a.peerIfUp(b.Self()); return toB != nil })
	sink := b.SpawnFunc(func(p *Process) error { _, err := p.Receive(context.Background()); return err })
	relay.stall()
	// Near the direct path's largest value: the kernel's autotuned send
	// buffer and gnet's output take megabytes before the queue fills, and
	// under the race detector a send takes tens of microseconds.
	msg := strings.Repeat("x", 900)
	if directBound(msg) < 0 {
		t.Fatal("the message does not take the direct path")
	}
	a.SpawnFunc(func(p *Process) error {
		for p.Send(sink, msg) == nil {
		}
		return nil // the link closed under a waiting send (the test's end)
	})
	eventually(t, "a send to b waits for room and is counted", func() bool {
		return gatherValues(t, reg)["mesh_send_stalls_total"] >= 1
	})
}

// mesh_batch_messages counts as a Prometheus histogram with the same
// bounds (powers of 4 from 1 to 65536) would: every bucket, the count and
// the sum, for drains of any size, the bounds themselves and past the
// largest included.
func TestBatchHistogramCountsAsPrometheusWould(t *testing.T) {
	want := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "want", Buckets: prometheus.ExponentialBuckets(1, 4, batchBounds)})
	var h batchHist
	sizes := []uint64{1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 1000, 1024, 1025, 65535, 65536, 65537, 1 << 20}
	for i := range uint64(300) {
		sizes = append(sizes, 1+i*i*7)
	}
	for _, n := range sizes {
		h.observe(n)
		want.Observe(float64(n))
	}
	var got, exp dto.Metric
	if err := h.metric().Write(&got); err != nil {
		t.Fatal(err)
	}
	if err := want.Write(&exp); err != nil {
		t.Fatal(err)
	}
	g, e := got.GetHistogram(), exp.GetHistogram()
	if g.GetSampleCount() != e.GetSampleCount() || g.GetSampleSum() != e.GetSampleSum() {
		t.Errorf("count, sum = %d, %v; want %d, %v", g.GetSampleCount(), g.GetSampleSum(), e.GetSampleCount(), e.GetSampleSum())
	}
	if len(g.GetBucket()) != len(e.GetBucket()) {
		t.Fatalf("%d buckets, want %d", len(g.GetBucket()), len(e.GetBucket()))
	}
	for i, b := range g.GetBucket() {
		if w := e.GetBucket()[i]; b.GetUpperBound() != w.GetUpperBound() || b.GetCumulativeCount() != w.GetCumulativeCount() {
			t.Errorf("bucket %d: <= %v: %d; want <= %v: %d", i, b.GetUpperBound(), b.GetCumulativeCount(), w.GetUpperBound(), w.GetCumulativeCount())
		}
	}
}
