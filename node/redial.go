package node

// Self-healing membership: seeds, discovery, and the one dial worker that
// makes every background connection of the node (to seeds, to discovered
// names, to gossiped names, and back to peers it lost).
//
// Invariants.
//
//  1. Every background dial goes through n.dials: at most one target per
//     name (deduplicated), at most maxDialTargets targets (bounded), at most
//     maxConcurrentDials dials in flight (so redials never take all of the
//     engine's handshake slots, which inbound connections share), and one
//     goroutine that schedules them, idle (no timer) when nothing is due.
//  2. A target stays until its node is connected, or it is given up: a
//     gossiped name after maxGossipAttempts failures, a discovered name when
//     discovery stops returning it. Seeds and lost peers are redialled for as
//     long as the node runs, at most every backoff cap.
//  3. Lock order: dialer.mu is a leaf; no I/O and no other lock under it.

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Discovery is a source of node names the node should be connected to (see
// [WithDiscovery]); package discovery ships a static list and DNS sources.
// Discover is called from one goroutine of the node at a time, with a
// context that ends when the poll times out or the node stops.
type Discovery interface {
	Discover(ctx context.Context) ([]string, error)
}

// membershipOptions are the options of this file.
type membershipOptions struct {
	seeds        []string
	discovery    Discovery
	discoverySet bool // WithDiscovery was given (a nil source is an error)
	pollEvery    time.Duration
	backoffBase  time.Duration
	backoffLimit time.Duration
	// maxPeerMembers bounds one peer's group memberships (groups.go).
	maxPeerMembers int
}

// MinDiscoveryInterval is the shortest poll interval [WithDiscoveryInterval]
// takes: a source is a DNS server or an API that other nodes poll too.
const MinDiscoveryInterval = 100 * time.Millisecond

func defaultMembershipOptions() membershipOptions {
	return membershipOptions{
		pollEvery:      5 * time.Second,
		backoffBase:    100 * time.Millisecond,
		backoffLimit:   5 * time.Second,
		maxPeerMembers: DefaultMaxPeerGroupMembers,
	}
}

// validate checks the membership options by the rule of every node option
// (options.validate): a value out of range is an error naming the option.
func (o *membershipOptions) validate() error {
	for _, s := range o.seeds {
		nn, err := parseName(s)
		if err == nil && nn.port == 0 {
			err = fmt.Errorf("%w: %q: a seed needs a port", ErrBadName, s)
		}
		if err != nil {
			return fmt.Errorf("%w: WithSeeds(%q): %w", ErrBadOption, s, err)
		}
	}
	switch {
	case o.discoverySet && o.discovery == nil:
		return fmt.Errorf("%w: WithDiscovery(nil)", ErrBadOption)
	case o.pollEvery < MinDiscoveryInterval:
		return fmt.Errorf("%w: WithDiscoveryInterval(%v): under the minimum of %v", ErrBadOption, o.pollEvery, MinDiscoveryInterval)
	case o.backoffBase <= 0:
		return fmt.Errorf("%w: WithRedialBackoff(%v, %v): the base must be positive", ErrBadOption, o.backoffBase, o.backoffLimit)
	case o.backoffLimit < o.backoffBase:
		return fmt.Errorf("%w: WithRedialBackoff(%v, %v): the limit is under the base", ErrBadOption, o.backoffBase, o.backoffLimit)
	case o.maxPeerMembers < 1:
		return fmt.Errorf("%w: WithMaxPeerGroupMembers(%d): must be at least 1", ErrBadOption, o.maxPeerMembers)
	}
	return nil
}

// WithSeeds names nodes to connect to at start, and to keep reconnecting to
// whenever the connection is lost, for the node's whole life: a partition
// heals, and a restarted seed is rejoined, with no application code. The
// node's own name may be among them (every node of a cluster can be given
// the same list). Redials back off exponentially with jitter, from 100 ms to
// 5 s by default (see [WithRedialBackoff]). A malformed name, or one without
// a port, makes [Start] fail with [ErrBadOption].
func WithSeeds(names ...string) Option {
	return func(o *options) { o.membership.seeds = append(o.membership.seeds, names...) }
}

// WithDiscovery makes the node poll d (every 5 s by default, see
// [WithDiscoveryInterval]) and connect to every name it returns, redialling
// them like seeds while d keeps returning them. A failed poll is logged and
// changes nothing. A nil d makes [Start] fail with [ErrBadOption].
func WithDiscovery(d Discovery) Option {
	return func(o *options) { o.membership.discovery, o.membership.discoverySet = d, true }
}

// WithDiscoveryInterval sets how often the [WithDiscovery] source is
// polled. The default is 5 s; a value under [MinDiscoveryInterval] makes
// [Start] fail with [ErrBadOption].
func WithDiscoveryInterval(d time.Duration) Option {
	return func(o *options) { o.membership.pollEvery = d }
}

// WithRedialBackoff sets the backoff between redials of a seed, a
// discovered node or a lost peer: the n-th retry waits between half and all
// of min(base·2ⁿ, limit). Defaults: 100 ms and 5 s. A base that is not
// positive, or a limit under the base, makes [Start] fail with
// [ErrBadOption].
func WithRedialBackoff(base, limit time.Duration) Option {
	return func(o *options) { o.membership.backoffBase, o.membership.backoffLimit = base, limit }
}

// backoffDelay is the redial policy: the wait before retry number attempt
// (0 for the first retry) is drawn between half and all of
// min(base·2^attempt, limit), by r in [0, 1). The lower half keeps a storm of
// redials from being instant; the random half spreads nodes that lost each
// other at the same moment.
func backoffDelay(attempt int, base, limit time.Duration, r float64) time.Duration {
	if base <= 0 {
		return 0
	}
	limit = max(limit, base)
	d := base
	for i := 0; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	r = min(max(r, 0), 1)
	return d/2 + time.Duration(r*float64(d-d/2))
}

// Bounds of the dial worker.
const (
	maxConcurrentDials = 4    // background dials in flight at once
	maxDialTargets     = 4096 // names waiting to be dialled
	maxGossipAttempts  = 4    // failed dials before a gossiped name is dropped
	// gossipDefer is how long the end of a gossiped pair that dialsFirst
	// does not name waits for the other's dial before dialling itself
	// (plus up to as much again, random).
	gossipDefer = time.Second
	// introDefer is how long a node introduced to a newcomer waits for the
	// newcomer's dial, plus introPerPeer for each peer it has (the
	// newcomer dials that many, maxConcurrentDials at a time), plus up to
	// as much again, random. It is only a fallback: a newcomer whose dial
	// failed redials (maxGossipAttempts), and later learns the name again
	// from the node lists that ride on heartbeats. Under load, forming 50
	// nodes took 20-30 s here, and a wait of 5 s plus 0.1 s per peer made
	// crossing dials again (hs-dup 338-345, against 442-470 with no wait).
	introDefer   = 30 * time.Second
	introPerPeer = 100 * time.Millisecond
)

// gossipHow is how a gossiped name is dialled (see learnNodes).
type gossipHow uint8

const (
	gossipPair  gossipHow = iota // the end dialsFirst names at once, the other after gossipDefer
	gossipJoin                   // at once: this node joined, it dials the cluster
	gossipIntro                  // after introDefer: the newcomer named dials this node
)

// dialWhy is why a name is a dial target; a target may have several.
type dialWhy uint8

const (
	whySeed       dialWhy = 1 << iota // named by WithSeeds
	whyDiscovered                     // returned by the last discovery poll
	whyLost                           // a peer lost other than by its graceful stop
	whyGossip                         // named by a peer's node list
)

type dialTarget struct {
	addr    string
	why     dialWhy
	attempt int       // failed dials so far
	due     time.Time // when the next dial may start
	dialing bool
	relost  bool // its node was lost while this dial was in flight (lost)
}

// dialer is the node's dial worker (see the invariants above).
type dialer struct {
	n    *Node
	wake chan struct{} // capacity 1: a target was added or a dial ended

	mu      sync.Mutex
	targets map[string]*dialTarget // guarded by mu
	seeds   map[string]bool        // guarded by mu; fixed after start
	found   map[string]bool        // guarded by mu: the last discovery answer
	dialing int                    // guarded by mu
	peak    int                    // guarded by mu: most dials ever in flight at once
	full    bool                   // guarded by mu: the target bound was hit (logged once)
}

// startMembership starts the dial worker, the seeds' first dials and the
// discovery poller. Called once by Start.
func (n *Node) startMembership() {
	d := &dialer{
		n:       n,
		wake:    make(chan struct{}, 1),
		targets: make(map[string]*dialTarget),
		seeds:   make(map[string]bool),
		found:   make(map[string]bool),
	}
	n.dials = d
	for _, s := range n.opts.membership.seeds {
		nn, _ := parseName(s) // checked by validate
		name := nn.String()
		if name == n.self {
			continue
		}
		d.seeds[name] = true
		d.add(name, nn.addr(), whySeed)
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		d.run()
	}()
	if disc := n.opts.membership.discovery; disc != nil {
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			d.poll(disc)
		}()
	}
}

// add makes name a dial target for why, due now if it is new. It reports
// false if the target bound is reached.
func (d *dialer) add(name, addr string, why dialWhy) bool { return d.addAfter(name, addr, why, 0) }

// addAfter is add with a new target due after delay.
func (d *dialer) addAfter(name, addr string, why dialWhy, delay time.Duration) bool {
	d.mu.Lock()
	t := d.targets[name]
	if t == nil {
		if len(d.targets) >= maxDialTargets {
			warn := !d.full
			d.full = true
			d.mu.Unlock()
			if warn {
				d.n.log.Warn("dial targets at their bound; further names wait for later gossip or discovery", "bound", maxDialTargets)
			}
			return false
		}
		t = &dialTarget{addr: addr, due: time.Now().Add(delay)}
		d.targets[name] = t
	}
	t.why |= why
	d.mu.Unlock()
	d.signal()
	return true
}

func (d *dialer) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run is the worker: it starts every due dial, up to maxConcurrentDials at
// once, and sleeps until the next is due or something changes.
func (d *dialer) run() {
	n := d.n
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		next := d.startDue()
		var tc <-chan time.Time
		if !next.IsZero() {
			wait := max(time.Until(next), time.Millisecond)
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tc = timer.C
		}
		select {
		case <-n.life.Done():
			return
		case <-d.wake:
		case <-tc:
		}
	}
}

// startDue starts the dials that are due and returns when the next waiting
// one is (zero if none waits on time).
func (d *dialer) startDue() time.Time {
	n := d.n
	now := time.Now()
	var next time.Time
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, t := range d.targets {
		if t.dialing {
			continue
		}
		if n.upNow(name) {
			delete(d.targets, name)
			continue
		}
		if t.due.After(now) {
			if next.IsZero() || t.due.Before(next) {
				next = t.due
			}
			continue
		}
		if d.dialing >= maxConcurrentDials {
			continue // started when a dial ends (it wakes the worker)
		}
		t.dialing = true
		d.dialing++
		d.peak = max(d.peak, d.dialing)
		n.bg.Add(1)
		go d.dial(name, t.addr)
	}
	d.full = d.full && len(d.targets) >= maxDialTargets
	return next
}

// dial makes one background connection attempt and reschedules or drops
// the target.
func (d *dialer) dial(name, addr string) {
	n := d.n
	defer n.bg.Done()
	ctx, cancel := context.WithTimeout(n.life, n.opts.handshakeTimeout)
	_, err := n.connect(ctx, name, addr)
	cancel()
	d.dialed(name, err)
}

// dialed takes the result of a dial to name: the target is dropped, or
// rescheduled after its backoff step.
func (d *dialer) dialed(name string, err error) {
	n := d.n
	o := &n.opts.membership
	d.mu.Lock()
	d.dialing--
	t := d.targets[name]
	switch {
	case t == nil:
	case err == nil && !t.relost:
		delete(d.targets, name)
	case err == nil:
		// Connected, and lost again before this result was taken: lost
		// found this target still dialling and left it to be redialled,
		// after the first backoff step.
		t.dialing, t.relost, t.attempt = false, false, 0
		t.due = time.Now().Add(backoffDelay(0, o.backoffBase, o.backoffLimit, rand.Float64()))
	default:
		t.dialing = false
		t.attempt++
		if t.why == whyGossip && t.attempt >= maxGossipAttempts {
			delete(d.targets, name)
			break
		}
		t.due = time.Now().Add(backoffDelay(t.attempt-1, o.backoffBase, o.backoffLimit, rand.Float64()))
	}
	d.mu.Unlock()
	if err != nil {
		n.log.Debug("dial failed", "peer", name, "err", err)
	}
	d.signal()
}

// forget drops name's target unless it is a seed or discovered (used by
// Disconnect: the application asked for the link to go).
func (d *dialer) forget(name string) {
	d.mu.Lock()
	if t := d.targets[name]; t != nil && !d.seeds[name] && !d.found[name] && !t.dialing {
		delete(d.targets, name)
	}
	d.mu.Unlock()
}

// lost schedules the redial of a peer whose connection ended. graceful
// means the peer said it was stopping (or this node disconnected it): then
// only a seed or a discovered name is redialled.
func (d *dialer) lost(name string, graceful bool) {
	if d == nil || d.n.stopped.Load() {
		return
	}
	nn, err := parseName(name)
	if err != nil {
		return
	}
	d.mu.Lock()
	why := whyLost
	switch {
	case d.seeds[name]:
		why = whySeed
	case d.found[name]:
		why = whyDiscovered
	case graceful:
		d.mu.Unlock()
		return
	}
	t := d.targets[name]
	if t == nil && len(d.targets) < maxDialTargets {
		// The first redial waits one backoff step: a peer that just
		// crashed is seldom back at once, and both ends redial.
		o := &d.n.opts.membership
		t = &dialTarget{addr: nn.addr(), due: time.Now().Add(backoffDelay(0, o.backoffBase, o.backoffLimit, rand.Float64()))}
		d.targets[name] = t
	}
	switch {
	case t != nil && t.dialing:
		// The dial that made the connection now lost has not reported
		// yet: without this mark its success would drop the target.
		t.why, t.relost = why, true
	case t != nil:
		t.why |= why
	}
	d.mu.Unlock()
	d.signal()
}

// gossip schedules dials to the names a peer's node list gave, as how
// says (learnNodes). A name already waiting keeps its time.
func (d *dialer) gossip(names []string, how gossipHow) {
	n := d.n
	peers := 0
	if how == gossipIntro {
		peers = len(n.upPeers())
	}
	for _, name := range names {
		// Most names of a list are peers already: skip them first, with
		// no lock and no parse (each link that comes up brings a list of
		// the whole cluster, N² lists of N names while a mesh forms).
		if name == n.self || n.upNow(name) {
			continue
		}
		nn, err := parseName(name)
		if err != nil || nn.String() != name || nn.port == 0 {
			continue
		}
		if !d.addAfter(name, nn.addr(), whyGossip, gossipDelay(how, dialsFirst(n.self, name), peers, rand.Float64())) {
			return
		}
	}
}

// gossipDelay is the wait before dialling a gossiped name, given how it
// was learnt, whether this end dialsFirst, this node's number of peers (for
// an introduction), and r in [0, 1) for the jitter.
func gossipDelay(how gossipHow, first bool, peers int, r float64) time.Duration {
	jitter := func(d time.Duration) time.Duration { return d + time.Duration(r*float64(d)) }
	intro := introDefer + time.Duration(peers)*introPerPeer
	switch {
	case how == gossipJoin:
		return 0
	case how == gossipIntro && first:
		return jitter(intro)
	case how == gossipIntro:
		// Should the newcomer not dial, and this end not be the one that
		// dialsFirst, let the other introduced end try first.
		return intro + jitter(intro)
	case first:
		return 0
	default:
		return jitter(gossipDefer)
	}
}

// dialsFirst reports whether self, rather than peer, should dial first when
// both learn of each other: the same answer at both ends, and each node
// dials first about half of its peers (by a hash of the pair), not all the
// larger names as "the smaller name dials" had it: at 50 nodes the node
// with the smallest name had 49 dials to make, 4 at a time, and under load
// its queue outlasted the others' gossipDefer, which then dialled too.
func dialsFirst(self, peer string) bool {
	lo, hi := min(self, peer), max(self, peer)
	h := fnv.New32a()
	h.Write([]byte(lo))
	h.Write([]byte{0})
	h.Write([]byte(hi))
	return (self == lo) == (h.Sum32()>>31 == 0) // the top bit: FNV-1a's low bits hardly mix
}

// poll asks the discovery source for names every poll interval, and makes
// them the discovered targets.
func (d *dialer) poll(disc Discovery) {
	n := d.n
	every := n.opts.membership.pollEvery
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-n.life.Done():
			return
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(n.life, max(every, n.opts.handshakeTimeout))
		names, err := disc.Discover(ctx)
		cancel()
		if err != nil {
			if n.life.Err() == nil {
				n.log.Warn("discovery failed", "err", err)
			}
		} else {
			d.discovered(names)
		}
		timer.Reset(every)
	}
}

// discovered replaces the discovered set with names and dials the new ones.
func (d *dialer) discovered(names []string) {
	n := d.n
	found := make(map[string]bool, len(names))
	for _, s := range names {
		nn, err := parseName(s)
		if err != nil || nn.port == 0 {
			n.log.Debug("discovered name ignored", "name", s, "err", err)
			continue
		}
		if name := nn.String(); name != n.self {
			found[name] = true
		}
	}
	d.mu.Lock()
	old := d.found
	d.found = found
	for name := range old {
		if t := d.targets[name]; t != nil && !found[name] {
			t.why &^= whyDiscovered
			if t.why == 0 && !t.dialing {
				delete(d.targets, name)
			}
		}
	}
	d.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(found)) {
		if n.peerIfUp(name) == nil {
			nn, _ := parseName(name)
			d.add(name, nn.addr(), whyDiscovered)
		}
	}
}
