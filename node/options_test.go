package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/wire"
)

// Every node option follows one rule: an invalid value makes Start fail with
// an error wrapping ErrBadOption that names the option; a valid one starts.
func TestStartValidatesEveryOptionOneWay(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		bad  string // the option named in the error; "" for a valid value
	}{
		{"tick at the minimum", WithTickTimeout(MinTickTimeout), ""},
		{"tick under the minimum", WithTickTimeout(MinTickTimeout - 1), "WithTickTimeout"},
		{"tick zero", WithTickTimeout(0), "WithTickTimeout"},
		{"handshake positive", WithHandshakeTimeout(time.Millisecond), ""},
		{"handshake zero", WithHandshakeTimeout(0), "WithHandshakeTimeout"},
		{"handshake negative", WithHandshakeTimeout(-time.Second), "WithHandshakeTimeout"},
		{"spawn positive", WithSpawnTimeout(time.Second), ""},
		{"spawn zero", WithSpawnTimeout(0), "WithSpawnTimeout"},
		{"logger", WithLogger(slog.New(slog.DiscardHandler)), ""},
		{"logger nil", WithLogger(nil), "WithLogger"},
		{"listen host:port", WithListen("127.0.0.1:0"), ""},
		{"listen without port", WithListen("127.0.0.1"), "WithListen"},
		{"metrics nil (none)", WithMetrics(nil), ""},
		{"compression", WithCompression(true), ""},
		{"socket buffers", WithSocketBuffers(256<<10, 32<<10), ""},
		{"socket buffers of the kernel", WithSocketBuffers(0, 0), ""},
		{"socket buffers negative", WithSocketBuffers(-1, 0), "WithSocketBuffers"},
		{"reassembly limits", WithReassemblyLimits(512<<20, 10, 10), ""},
		{"reassembly defaults", WithReassemblyLimits(0, 0, 0), ""},
		{"reassembly budget under the largest message", WithReassemblyLimits(1<<20, 0, 0), "WithReassemblyLimits"},
		{"seeds", WithSeeds("s@127.0.0.1:1", "t@[::1]:2"), ""},
		{"seed malformed", WithSeeds("s@127.0.0.1:1", "no-at-sign"), "WithSeeds"},
		{"seed without a port", WithSeeds("s@127.0.0.1:0"), "WithSeeds"},
		{"discovery", WithDiscovery(discoveryFunc(func(context.Context) ([]string, error) { return nil, nil })), ""},
		{"discovery nil", WithDiscovery(nil), "WithDiscovery"},
		{"discovery interval at the minimum", WithDiscoveryInterval(MinDiscoveryInterval), ""},
		{"discovery interval under the minimum", WithDiscoveryInterval(MinDiscoveryInterval - 1), "WithDiscoveryInterval"},
		{"discovery interval zero", WithDiscoveryInterval(0), "WithDiscoveryInterval"},
		{"redial backoff", WithRedialBackoff(time.Millisecond, time.Millisecond), ""},
		{"redial backoff base zero", WithRedialBackoff(0, time.Second), "WithRedialBackoff"},
		{"redial backoff base negative", WithRedialBackoff(-time.Second, time.Second), "WithRedialBackoff"},
		{"redial backoff limit under base", WithRedialBackoff(time.Second, time.Second-1), "WithRedialBackoff"},
		{"group members bound", WithMaxPeerGroupMembers(1), ""},
		{"group members bound zero", WithMaxPeerGroupMembers(0), "WithMaxPeerGroupMembers"},
		{"group members bound negative", WithMaxPeerGroupMembers(-1), "WithMaxPeerGroupMembers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Start("opt@127.0.0.1:0", "c", tt.opt)
			if tt.bad == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				stopNode(t, n)
				return
			}
			if err == nil {
				stopNode(t, n)
				t.Fatal("Start accepted the value")
			}
			if !errors.Is(err, ErrBadOption) || !strings.Contains(err.Error(), tt.bad) {
				t.Fatalf("Start: %v; want ErrBadOption naming %s", err, tt.bad)
			}
		})
	}
}

func TestTooSilent(t *testing.T) {
	const timeout = time.Second
	const now = int64(100 * time.Second)
	tests := []struct {
		name     string
		lastSeen int64
		silent   time.Duration
		cut      bool
	}{
		{"just heard", now, 0, false},
		{"under the timeout", now - int64(timeout/2), timeout / 2, false},
		{"exactly the timeout", now - int64(timeout), timeout, false},
		{"past the timeout", now - int64(timeout) - 1, timeout + 1, true},
		{"long gone", 0, 100 * time.Second, true},
		{"clock stepped back", now + int64(time.Hour), 0, false},
	}
	for _, tt := range tests {
		silent, cut := tooSilent(now, tt.lastSeen, timeout)
		if silent != tt.silent || cut != tt.cut {
			t.Errorf("%s: tooSilent = %v, %v; want %v, %v", tt.name, silent, cut, tt.silent, tt.cut)
		}
	}
}

// WithSpawnTimeout bounds a remote Spawn whose reply never comes (the link
// is frozen: up, but silent).
func TestSpawnTimeoutBoundsARemoteSpawn(t *testing.T) {
	a, b, relay := spawnOverARelay(t, 200*time.Millisecond)
	relay.freeze()
	if _, err := b.Spawn(a.Self(), "idle"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Spawn over a frozen link: %v; want the spawn timeout", err)
	}
}

// WithLogger: the node's routine events reach the logger given.
func TestLoggerReceivesTheNodesLogs(t *testing.T) {
	var buf syncBuffer
	a := startNamed(t, "a", "c", WithLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	b := startNamed(t, "b", "c")
	connect(t, b, a)
	eventually(t, "a logging the peer coming up", func() bool {
		s := buf.String()
		return strings.Contains(s, "peer up") && strings.Contains(s, b.Self())
	})
}

// The reassembly limits reach every link's reassembler, and a byte budget
// only has to hold the largest message the node accepts.
func TestReassemblyLimitsReachEveryLink(t *testing.T) {
	a := startNamed(t, "a", "c")
	b := startNamed(t, "b", "c", WithMaxMessage(1<<20), WithReassemblyLimits(2<<20, 7, 9))
	connect(t, a, b)
	b.peersMu.Lock()
	pe := b.peers[a.Self()]
	b.peersMu.Unlock()
	if pe == nil {
		t.Fatal("b has no peer for a")
	}
	want := wire.ReassemblyLimits{Budget: 2 << 20, MaxPending: 7, MaxHeld: 9, MaxMessage: 1 << 20}
	if got := pe.reasm.Limits(); got != want {
		t.Fatalf("b's reassembler for a: %+v, want %+v", got, want)
	}
}

// spawnOverARelay starts a, which defines the actor "idle", and b, with
// the spawn timeout given, connected to a through a freezer relay.
func spawnOverARelay(t *testing.T, spawnTimeout time.Duration) (a, b *Node, relay *freezer) {
	t.Helper()
	a = startNamed(t, "a", "c")
	b = startNamed(t, "b", "c", WithSpawnTimeout(spawnTimeout))
	a.Define("idle", func(p *Process, _ []any) error { return nil })
	relay = connectViaFreezer(t, b, a)
	return a, b, relay
}
