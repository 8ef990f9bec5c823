package loop

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"
)

// Every option follows one rule: in range it is applied, out of range New
// fails with ErrOption. Each row is checked through buildOptions (no engine
// is started).
func TestOptionsOneRule(t *testing.T) {
	tls13 := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13}
	tls12 := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}
	tests := []struct {
		name  string
		opt   Option
		ok    bool
		check func(o options) bool // for a valid option: was it applied?
	}{
		{"loops 3", WithLoops(3), true, func(o options) bool { return o.loops == 3 }},
		{"loops 0", WithLoops(0), false, nil},
		{"loops -1", WithLoops(-1), false, nil},
		{"handshake timeout 1s", WithHandshakeTimeout(time.Second), true, func(o options) bool { return o.handshakeTimeout == time.Second }},
		{"handshake timeout 0", WithHandshakeTimeout(0), false, nil},
		{"handshake timeout negative", WithHandshakeTimeout(-time.Second), false, nil},
		{"pending handshakes 1", WithMaxPendingHandshakes(1), true, func(o options) bool { return o.maxPending == 1 }},
		{"pending handshakes 0", WithMaxPendingHandshakes(0), false, nil},
		{"silent connections 1", WithMaxSilentConnections(1), true, func(o options) bool { return o.maxSilent == 1 }},
		{"silent connections 0", WithMaxSilentConnections(0), false, nil},
		{"per source 2", WithMaxPendingPerSource(2), true, func(o options) bool { return o.perSource == 2 }},
		{"per source 0", WithMaxPendingPerSource(0), false, nil},
		{"first byte 1s", WithFirstByteTimeout(time.Second), true, func(o options) bool { return o.firstByte == time.Second }},
		{"first byte 0", WithFirstByteTimeout(0), false, nil},
		{"outcome nil", WithHandshakeOutcome(nil), true, func(o options) bool { return o.outcome == nil }},
		{"water marks 100, 10", WithWaterMarks(100, 10), true, func(o options) bool { return o.high == 100 && o.low == 10 }},
		{"water marks low 0", WithWaterMarks(100, 0), true, func(o options) bool { return o.high == 100 && o.low == 0 }},
		{"water marks low = high", WithWaterMarks(100, 100), true, func(o options) bool { return o.low == 100 }},
		{"water marks low > high", WithWaterMarks(100, 101), false, nil},
		{"water marks high 0", WithWaterMarks(0, 0), false, nil},
		{"water marks low negative", WithWaterMarks(100, -1), false, nil},
		{"max input 1", WithMaxInputPending(1), true, func(o options) bool { return o.maxInput == 1 }},
		{"max input 0", WithMaxInputPending(0), false, nil},
		{"socket buffers 96K, 24K", WithSocketBuffers(96<<10, 24<<10), true, func(o options) bool { return o.rcvBuf == 96<<10 && o.notSent == 24<<10 }},
		{"socket buffers 0, 0 (the kernel's)", WithSocketBuffers(0, 0), true, func(o options) bool { return o.rcvBuf == 0 && o.notSent == 0 }},
		{"socket buffers receive negative", WithSocketBuffers(-1, 0), false, nil},
		{"socket buffers not sent negative", WithSocketBuffers(0, -1), false, nil},
		{"tls 1.3 only", WithTLS(tls13, nil), true, func(o options) bool { return o.serverTLS == tls13 && o.clientTLS == nil }},
		{"tls nil keeps the defaults", WithTLS(nil, nil), true, func(o options) bool { return o.serverTLS == nil && o.clientTLS == nil }},
		{"tls 1.2 allowed", WithTLS(nil, tls12), false, nil},
		{"hook nil", WithHook(nil), true, func(o options) bool { return o.hook == nil }},
		{"logger nil", WithLogger(nil), true, func(o options) bool { return o.logger == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := buildOptions([]Option{tt.opt})
			if !tt.ok {
				if !errors.Is(err, ErrOption) {
					t.Fatalf("err = %v, want ErrOption", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want nil", err)
			}
			if !tt.check(o) {
				t.Fatalf("option not applied: %+v", o)
			}
		})
	}
}

func TestNewRefusesAnOptionOutOfRange(t *testing.T) {
	e, err := New(WithLoops(1), WithHandshakeTimeout(0))
	if e != nil || !errors.Is(err, ErrOption) {
		t.Fatalf("New = %v, %v; want nil, ErrOption", e, err)
	}
}
