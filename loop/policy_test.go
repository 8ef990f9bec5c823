package loop

import (
	"testing"
	"time"
)

func TestFlushPlan(t *testing.T) {
	const high = 1000
	tests := []struct {
		name    string
		backlog int
		in      socketWaits
		want    flushAction
		wantOut socketWaits
	}{
		{"empty socket: write now and forget the streak", 0, socketWaits{3, 500}, flushNow, socketWaits{}},
		{"at the high mark: back off, streak kept", high, socketWaits{2, 400}, backOff, socketWaits{2, 400}},
		{"over the high mark: back off", high + 1, socketWaits{}, backOff, socketWaits{}},
		{"first full socket: wait", 300, socketWaits{}, waitSocket, socketWaits{1, 300}},
		{"not draining, streak left: wait", 300, socketWaits{2, 300}, waitSocket, socketWaits{3, 300}},
		{"not draining, streak spent: back off", 300, socketWaits{maxSocketWaits, 300}, backOff, socketWaits{maxSocketWaits, 300}},
		{"growing, streak spent: back off", 400, socketWaits{maxSocketWaits, 300}, backOff, socketWaits{maxSocketWaits, 400}},
		{"draining again: the streak restarts", 200, socketWaits{maxSocketWaits, 300}, waitSocket, socketWaits{1, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, out := flushPlan(tt.backlog, high, tt.in)
			if got != tt.want || out != tt.wantOut {
				t.Fatalf("flushPlan(%d, %d, %+v) = %v, %+v; want %v, %+v", tt.backlog, high, tt.in, got, out, tt.want, tt.wantOut)
			}
		})
	}
}

func TestRecheckDelay(t *testing.T) {
	tests := []struct {
		prev   time.Duration
		shrank bool
		want   time.Duration
	}{
		{0, false, minRecheck},
		{0, true, minRecheck},
		{minRecheck, false, 2 * minRecheck},
		{8 * time.Millisecond, false, 16 * time.Millisecond},
		{8 * time.Millisecond, true, minRecheck},
		{maxRecheck / 2, false, maxRecheck},
		{maxRecheck, false, maxRecheck},
		{maxRecheck, true, minRecheck},
	}
	for _, tt := range tests {
		if got := recheckDelay(tt.prev, tt.shrank); got != tt.want {
			t.Errorf("recheckDelay(%v, %v) = %v, want %v", tt.prev, tt.shrank, got, tt.want)
		}
	}
}

func TestDirectDue(t *testing.T) {
	const now = int64(time.Second)
	gap, spacing := int64(directIdleGap), int64(directSpacing)
	tests := []struct {
		name                  string
		idleSince, lastDirect int64
		want                  bool
	}{
		{"idle long, no recent direct write", now - time.Millisecond.Nanoseconds(), 0, true},
		{"drain ended exactly the gap ago", now - gap, now - spacing, true},
		{"drain ended just now: a stream stays on the loop", now - gap + 1, 0, false},
		{"another conn of the loop wrote directly just now", 0, now - spacing + 1, false},
		{"both recent", now, now, false},
	}
	for _, tt := range tests {
		if got := directDue(now, tt.idleSince, tt.lastDirect); got != tt.want {
			t.Errorf("%s: directDue = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestDirectSpacingCoversIdleGap is the argument for directFlush storing
// no idleSince: once a direct write starting at start set its loop's
// lastDirect to start, idleSince = start (or any idleSince before it)
// changes no later decision of directDue, and lastDirect never moves
// back (a sender whose clock read comes before the lastDirect it loads
// is refused, so it does not store its earlier time).
func TestDirectSpacingCoversIdleGap(t *testing.T) {
	const start = int64(time.Second)
	gap, spacing := int64(directIdleGap), int64(directSpacing)
	step := max(gap/8, 1)
	for _, before := range []int64{0, start - spacing - gap, start - gap, start - 1, start} {
		for now := start - 2*spacing; now <= start+3*spacing; now += step {
			stored := directDue(now, start, start)
			skipped := directDue(now, before, start)
			if stored != skipped {
				t.Fatalf("now-start %v, idleSince start-%v: with the store %v, without %v",
					time.Duration(now-start), time.Duration(start-before), stored, skipped)
			}
		}
	}
	for _, now := range []int64{start - 1, start - spacing, 0} {
		if directDue(now, 0, start) {
			t.Errorf("directDue at %v before lastDirect = true: lastDirect could move back", time.Duration(start-now))
		}
	}
}

func TestBulkShare(t *testing.T) {
	tests := []struct{ urgent, want int }{
		{0, bulkQuantum},
		{1000, bulkQuantum - 1000},
		{bulkQuantum / 2, bulkQuantum / 2},
		{bulkQuantum * 3 / 4, bulkQuantum / 4},
		{bulkQuantum, bulkQuantum / 4}, // a flood of small items: bulk keeps a quarter
		{8 << 20, bulkQuantum / 4},
	}
	for _, tt := range tests {
		if got := bulkShare(tt.urgent); got != tt.want {
			t.Errorf("bulkShare(%d) = %d, want %d", tt.urgent, got, tt.want)
		}
	}
}

func TestUrgentLimit(t *testing.T) {
	tests := []struct {
		name      string
		bulkTaken bool
		want      int
	}{
		{"no bulk items taken: one quantum", false, drainQuantum},
		{"bulk items taken: all of it, ahead of them", true, 0},
	}
	for _, tt := range tests {
		if got := urgentLimit(tt.bulkTaken); got != tt.want {
			t.Errorf("%s: urgentLimit(%v) = %d, want %d", tt.name, tt.bulkTaken, got, tt.want)
		}
	}
}

func TestCanShortenReceive(t *testing.T) {
	tests := []struct {
		name         string
		unread, size int
		want         bool
	}{
		{"nothing unread", 0, 64 << 10, true},
		{"a little unread", 1 << 10, 64 << 10, true},
		{"just under half", 32<<10 - 1, 64 << 10, true},
		{"half", 32 << 10, 64 << 10, false},
		{"more than the new size", 1 << 20, 64 << 10, false},
	}
	for _, tt := range tests {
		if got := canShortenReceive(tt.unread, tt.size); got != tt.want {
			t.Errorf("%s: canShortenReceive(%d, %d) = %v, want %v", tt.name, tt.unread, tt.size, got, tt.want)
		}
	}
}
