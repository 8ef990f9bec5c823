package node

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
