package bench

import (
	"math/bits"
	"testing"
	"time"
)

// latencyHist is a log-linear histogram of durations: values below
// 2^histSubBits ns are exact, larger ones fall in one of 2^histSubBits
// buckets per power of two (relative error below 1/64, about 1.6%). Its size
// is fixed (about 24 KiB) whatever the number of samples, and Record does
// not allocate.
type latencyHist struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

const (
	histSubBits = 6 // 64 buckets per power of two
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

// histIndex returns the bucket of v (ns, >= 0).
func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	exp := bits.Len64(v) - histSubBits // >= 1
	return exp*histSub + int(v>>(exp-1)) - histSub
}

// histLower returns the smallest value of bucket i.
func histLower(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	exp := i / histSub
	return uint64(i%histSub+histSub) << (exp - 1)
}

// Record adds one sample.
func (h *latencyHist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

// Quantile returns the value at quantile q (0..1): the middle of the bucket
// that holds the sample of rank ceil(q*n).
func (h *latencyHist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLower(i), histLower(i+1)
			return min(time.Duration(lo+(hi-lo)/2), h.max)
		}
	}
	return h.max
}

// Report adds p50, p90, p99 and p99.9 (µs) to b's metrics.
func (h *latencyHist) Report(b *testing.B) {
	us := func(q float64) float64 { return float64(h.Quantile(q).Nanoseconds()) / 1e3 }
	b.ReportMetric(us(0.50), "p50-us")
	b.ReportMetric(us(0.90), "p90-us")
	b.ReportMetric(us(0.99), "p99-us")
	b.ReportMetric(us(0.999), "p99.9-us")
}

func TestLatencyHistQuantiles(t *testing.T) {
	var h latencyHist
	for i := 1; i <= 100_000; i++ {
		h.Record(time.Duration(i) * time.Microsecond / 10) // 0.1 µs .. 10 ms, uniform
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.9, 9 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if diff := got - tc.want; diff > tc.want/50 || -diff > tc.want/50 {
			t.Errorf("Quantile(%v) = %v, want %v within 2%%", tc.q, got, tc.want)
		}
	}
	// Small values are exact.
	var s latencyHist
	for _, v := range []time.Duration{3, 3, 7, 40} {
		s.Record(v)
	}
	if got := s.Quantile(0.5); got != 3 {
		t.Errorf("Quantile(0.5) of {3,3,7,40} = %v, want 3ns", got)
	}
	if got := s.Quantile(1); got != 40 {
		t.Errorf("Quantile(1) of {3,3,7,40} = %v, want 40ns", got)
	}
	// Every bucket's bounds are increasing and an index maps back into its bucket.
	for _, v := range []uint64{0, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1} {
		i := histIndex(v)
		if v < histLower(i) || (i+1 < histBuckets && v >= histLower(i+1)) {
			t.Errorf("value %d in bucket %d [%d, %d)", v, i, histLower(i), histLower(i+1))
		}
	}
}
