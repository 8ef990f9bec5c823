package node

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
	"github.com/meshrt/mesh/internal/memlink"
	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
)

// Option configures a node at [Start].
type Option func(*options)

type options struct {
	listen           string
	tickTimeout      time.Duration
	handshakeTimeout time.Duration
	spawnTimeout     time.Duration
	compression      bool
	companions       bool // companion connections for bulk data (companion.go)
	maxMessage       int
	registerer       prometheus.Registerer
	logger           *slog.Logger
	membership       membershipOptions // redial.go
	registryNames    int               // per peer (global.WithMaxNamesPerPeer)
	registryFrame    int               // bytes of one registry frame joined from parts
	reassembly       wire.ReassemblyLimits
	network          *memlink.Network // links from an in-memory network, for tests (memnet.go)
	sockRecv         int              // SO_RCVBUF of peer sockets (0: the kernel's)
	sockNotSent      int              // TCP_NOTSENT_LOWAT of peer sockets (0: the kernel's)
	spawnedPerPeer   int              // processes a peer spawned here, alive (peerlimits.go)
	relationsPerPeer int              // links and monitors a peer's processes hold here
}

func defaultOptions() options {
	return options{
		tickTimeout:      15 * time.Second,
		handshakeTimeout: 5 * time.Second,
		spawnTimeout:     10 * time.Second,
		companions:       true,
		logger:           slog.Default(),
		membership:       defaultMembershipOptions(),
		registryNames:    DefaultRegistryNamesPerPeer,
		registryFrame:    DefaultRegistryFrameBytes,
		sockRecv:         loop.DefaultReceiveBuffer,
		sockNotSent:      loop.DefaultNotSentLowat,
		spawnedPerPeer:   DefaultSpawnedPerPeer,
		relationsPerPeer: DefaultRelationsPerPeer,
		reassembly: wire.ReassemblyLimits{
			Budget:     DefaultReassemblyBytes,
			MaxPending: DefaultReassemblyPending,
			MaxHeld:    DefaultReassemblyHeld,
		},
	}
}

// WithListen binds addr (host:port) instead of the address the node's name
// advertises: behind NAT, in a container, or "0.0.0.0:port". The name stays
// what peers dial.
func WithListen(addr string) Option { return func(o *options) { o.listen = addr } }

// WithTickTimeout sets how long a peer may stay silent before it is declared
// down. An idle link gets a tick every 5/12 of it, so that a healthy one is
// never silent for more than half of it. Silence is timed on the monotonic
// clock: a step of the wall clock is none, and neither is a suspend of the
// machine (a resumed node waits out the timeout before it cuts a peer
// that went quiet meanwhile). The default is 15 s; a value under
// [MinTickTimeout] makes [Start] fail with [ErrBadOption].
func WithTickTimeout(d time.Duration) Option {
	return func(o *options) { o.tickTimeout = d }
}

// MinTickTimeout is the smallest tick timeout [WithTickTimeout] takes: ticks
// go out at 5/12 of it, and a shorter one would declare healthy peers
// down whenever a machine is briefly busy.
const MinTickTimeout = 100 * time.Millisecond

// WithHandshakeTimeout bounds how long a peer connection may take from TCP
// accept or dial to a checked cookie proof. The default is 5 s; a value that
// is not positive makes [Start] fail with [ErrBadOption].
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.handshakeTimeout = d }
}

// WithSpawnTimeout bounds how long a remote Spawn waits for the other
// node's reply. The default is 10 s; a value that is not positive makes
// [Start] fail with [ErrBadOption].
func WithSpawnTimeout(d time.Duration) Option {
	return func(o *options) { o.spawnTimeout = d }
}

// WithCompression offers S2 compression of large batches to peers; a link
// compresses when both of its nodes offer it. Off by default: on a LAN or
// loopback link compression costs more CPU than the bytes it saves; turn it
// on for links where bandwidth, not CPU, is the limit.
func WithCompression(on bool) Option { return func(o *options) { o.compression = on } }

// WithMaxMessage bounds the encoded size of one message, sent or received
// (default 128 MiB; n <= 0 keeps the default). A Send of a larger message
// fails with an error for which errors.Is(err, codec.ErrLimit) is true, and
// the connection, which other processes share, is untouched; a peer that
// sends a larger one is cut. Give every node of a cluster the same limit:
// a node cannot know a smaller one its peer chose. Past 256 MiB, raise the
// reassembly budget with it ([WithReassemblyLimits]): [Start] refuses a
// budget that cannot hold the largest message.
func WithMaxMessage(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxMessage = n
		}
	}
}

// WithBulkConnections says whether the node sends its large messages to a
// peer on a second connection of their link, its "companion", so that
// small messages and signals on the link's own connection are not held up
// behind them in the kernel's socket queues (head-of-line blocking). On by
// default; a link uses it when both nodes offer it, and the node dials its
// companion when it first sends a peer a message large enough to go in
// fragments. Order between any two processes is kept either way. Turn it
// off where each link must be one TCP connection (a firewall that counts
// them, say): large messages then share the link's connection, on a lane
// that small ones overtake in the node's own queue.
func WithBulkConnections(on bool) Option { return func(o *options) { o.companions = on } }

// WithMetrics registers the node's Prometheus metrics on r. Without it no
// metrics are registered anywhere (never on the global registry by default).
func WithMetrics(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithLogger sends the node's logs to l. Without it they go to
// slog.Default() as it is when the node starts. A nil l makes [Start] fail
// with [ErrBadOption].
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// validate checks the option values once all options are applied: every
// node option follows this one rule, an invalid value is an error from
// Start (wrapping ErrBadOption) that names the option; none is silently
// raised or clamped. (A value an option documents as keeping its default,
// such as 0 for a limit, is not invalid.)
func (o *options) validate() error {
	switch {
	case o.tickTimeout < MinTickTimeout:
		return fmt.Errorf("%w: WithTickTimeout(%v): under the minimum of %v", ErrBadOption, o.tickTimeout, MinTickTimeout)
	case o.handshakeTimeout <= 0:
		return fmt.Errorf("%w: WithHandshakeTimeout(%v): must be positive", ErrBadOption, o.handshakeTimeout)
	case o.spawnTimeout <= 0:
		return fmt.Errorf("%w: WithSpawnTimeout(%v): must be positive", ErrBadOption, o.spawnTimeout)
	case o.logger == nil:
		return fmt.Errorf("%w: WithLogger(nil)", ErrBadOption)
	}
	maxMessage := codec.DefaultMaxMessage
	if o.maxMessage > 0 {
		maxMessage = o.maxMessage
	}
	if o.reassembly.Budget < maxMessage+wire.ReassemblyOverhead {
		return fmt.Errorf("%w: WithReassemblyLimits(%d bytes): under the largest message (WithMaxMessage, %d bytes) plus %d of bookkeeping: such a message could never arrive",
			ErrBadOption, o.reassembly.Budget, maxMessage, wire.ReassemblyOverhead)
	}
	if err := o.membership.validate(); err != nil {
		return err
	}
	if o.sockRecv < 0 || o.sockNotSent < 0 {
		return fmt.Errorf("%w: WithSocketBuffers(%d, %d): want both >= 0", ErrBadOption, o.sockRecv, o.sockNotSent)
	}
	if o.listen != "" {
		if _, _, err := net.SplitHostPort(o.listen); err != nil {
			return fmt.Errorf("%w: WithListen(%q): %w", ErrBadOption, o.listen, err)
		}
	}
	return nil
}

// Defaults of [WithRegistryLimits].
const (
	DefaultRegistryNamesPerPeer = global.DefaultMaxNamesPerPeer
	DefaultRegistryFrameBytes   = 64 << 20
)

// WithRegistryLimits bounds what one peer can make this node hold in its
// registry replica: names (default 1 Mi) and the bytes of one registry
// frame joined from parts, a snapshot in flight (default 64 MiB). A peer
// past either limit is cut, counted in mesh_peers_cut_total (limit
// "registry_names" or "registry_frame") and logged at Warn. Values below 1
// keep the default.
func WithRegistryLimits(namesPerPeer, frameBytes int) Option {
	return func(o *options) {
		if namesPerPeer >= 1 {
			o.registryNames = namesPerPeer
		}
		if frameBytes >= 1 {
			o.registryFrame = frameBytes
		}
	}
}

// Defaults of [WithReassemblyLimits].
const (
	DefaultReassemblyBytes   = wire.DefaultReassemblyBudget
	DefaultReassemblyPending = wire.DefaultMaxPending
	DefaultReassemblyHeld    = wire.DefaultMaxHeld
)

// WithReassemblyLimits bounds what one peer can make this node hold while
// it reassembles the peer's messages sent in fragments (those over 64 KiB):
// bytes (reassembly buffers, the messages held behind them to keep each
// pair's order, and the bookkeeping of both; default 256 MiB), unfinished
// fragmented messages (default 4096) and messages held behind them
// (default 64 Ki). A peer past any of them is cut, counted in
// mesh_peers_cut_total (limit "reassembly_budget", "fragments_pending" or
// "records_held") and logged at Warn. The limits hold per link (a
// reconnection starts afresh): the link's companion connection
// ([WithBulkConnections]) draws on the same ones.
// Values below 1 keep the default; a
// byte budget under the largest message ([WithMaxMessage]) plus its
// bookkeeping makes [Start] fail with [ErrBadOption].
func WithReassemblyLimits(bytes, pending, held int) Option {
	return func(o *options) {
		if bytes >= 1 {
			o.reassembly.Budget = bytes
		}
		if pending >= 1 {
			o.reassembly.MaxPending = pending
		}
		if held >= 1 {
			o.reassembly.MaxHeld = held
		}
	}
}

// WithSocketBuffers sets the kernel buffers a peer socket gets while the
// link carries a large message's fragments (its bulk lane): receive is the
// receive buffer (SO_RCVBUF, default 64 KiB), set on the receiving side
// from the first fragment on, and notSent the most the sending side keeps
// unsent (TCP_NOTSENT_LOWAT on Linux, default 16 KiB) while it has
// fragments queued; 0 keeps the kernel's own setting throughout. Short
// kernel queues let small messages and control frames overtake a large
// message's fragments: with the kernel's autotuned buffers a round trip
// waited behind megabytes of a stream. Until a link carries fragments it
// keeps the kernel's settings, which a stream of small messages needs. A
// link with a large bandwidth-delay product (across regions or a WAN)
// needs a receive buffer of about bandwidth x round trip to keep its
// throughput (64 KiB over a 10 ms round trip is 6.4 MB/s): give such a
// node WithSocketBuffers(0, 0), or a receive buffer of that size. Negative
// values make [Start] fail with [ErrBadOption].
func WithSocketBuffers(receive, notSent int) Option {
	return func(o *options) { o.sockRecv, o.sockNotSent = receive, notSent }
}
