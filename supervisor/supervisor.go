// Package supervisor runs supervision trees on Mesh: a supervisor process
// starts its children in order, restarts them by a strategy when they exit,
// gives up when they restart too often, and stops them in reverse order.
// A child is a function run on the supervisor's node, or a defined actor
// placed on the first reachable node of a list; when that node is lost the
// child is restarted on the next one (failover).
//
// It is built only on the public node API: links, exit signals, trapped
// exits, spawn and calls.
//
//	sup, err := supervisor.Start(p, supervisor.Spec{
//		Strategy:  supervisor.OneForOne,
//		Intensity: 5, Period: 10 * time.Second,
//		Children: []supervisor.Child{
//			{ID: "kv", Start: kvServer, Restart: supervisor.Permanent},
//			{ID: "worker", Actor: "worker", Args: []any{42}, Nodes: []string{"b@10.0.0.2:4369", "c@10.0.0.3:4369"}},
//		},
//	})
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

// Strategy says which children restart when one exits.
type Strategy int

const (
	// OneForOne restarts only the child that exited.
	OneForOne Strategy = iota
	// OneForAll stops every other child (in reverse start order) and
	// restarts them all (in start order).
	OneForAll
	// RestForOne stops the children started after the one that exited and
	// restarts it and them.
	RestForOne
)

// Restart says when a child that exited is restarted.
type Restart int

const (
	// Permanent children are always restarted.
	Permanent Restart = iota
	// Transient children are restarted only after an abnormal exit (any
	// reason but normal and shutdown).
	Transient
	// Temporary children are never restarted; once they exit they are
	// removed.
	Temporary
)

// DefaultShutdown is a child's grace period when Child.Shutdown is 0.
const DefaultShutdown = 5 * time.Second

// Child describes one child of a supervisor.
type Child struct {
	// ID names the child within its supervisor; IDs are unique.
	ID string
	// Start, if set, is the child's body, run as a process on the
	// supervisor's node.
	Start func(p *node.Process) error
	// Actor, used when Start is nil, is a defined actor (see
	// node.Node.Define) spawned with Args on the first reachable node of
	// Nodes (the supervisor's node when Nodes is empty).
	Actor string
	Args  []any
	Nodes []string
	// Name, if set, registers the child under this local name (see
	// node.Node.Register) from the moment it starts, before Start or
	// StartChild returns and again at each restart. Only for children that
	// run on the supervisor's node.
	Name string
	// Restart is when the child is restarted (Permanent by default).
	Restart Restart
	// Shutdown is how long the child is given to exit after the shutdown
	// exit signal before it is killed; 0 means DefaultShutdown.
	Shutdown time.Duration
}

// Spec describes a supervisor.
type Spec struct {
	Strategy Strategy
	// Intensity and Period bound restarts: more than Intensity restarts
	// within Period and the supervisor stops its children and exits with
	// an error wrapping ErrIntensity. Both zero means 1 restart in 5 s.
	Intensity int
	Period    time.Duration
	// Children are started in this order and stopped in the reverse one.
	Children []Child
}

// ChildInfo describes a running supervisor's child (see Which).
type ChildInfo struct {
	ID       string
	PID      node.PID // zero when the child is not running
	Node     string   // where it runs (or ran last)
	Restarts int      // how many times it was restarted
}

// Errors.
var (
	// ErrIntensity is the reason of a supervisor that gave up because its
	// children restarted more often than its Spec allows.
	ErrIntensity = errors.New("supervisor: restart intensity exceeded")
	// ErrNoChild reports a child ID the supervisor does not have.
	ErrNoChild = errors.New("supervisor: no such child")
	// ErrChildExists reports a StartChild with an ID already in use.
	ErrChildExists = errors.New("supervisor: child ID already in use")
	// ErrBadSpec reports an invalid Spec or Child.
	ErrBadSpec = errors.New("supervisor: invalid spec")
)

// Requests a running supervisor answers (node.Request bodies). The ones
// that can cross nodes are registered with the codec.
type (
	startChildReq struct{ child Child }
	terminateReq  struct{ ID string }
	whichReq      struct{ Supervisor bool }
	whichReply    struct{ Children []ChildInfo }
	opReply       struct {
		PID node.PID
		Err string
	}
)

func init() {
	codec.MustRegister("mesh.supervisor.terminate", terminateReq{})
	codec.MustRegister("mesh.supervisor.which", whichReq{})
	codec.MustRegister("mesh.supervisor.children", whichReply{})
	codec.MustRegister("mesh.supervisor.reply", opReply{})
	codec.MustRegister("mesh.supervisor.info", ChildInfo{})
}

// Start starts a supervisor process linked to p, starts spec's children in
// order and returns the supervisor's PID once they have all started. If a
// child fails to start, the ones started are stopped, the supervisor exits
// normally, and Start returns the error. Call it from p's own goroutine.
func Start(p *node.Process, spec Spec) (node.PID, error) {
	if err := spec.check(); err != nil {
		return node.PID{}, err
	}
	if spec.Intensity == 0 && spec.Period == 0 {
		spec.Intensity, spec.Period = 1, 5*time.Second
	}
	parent := p.Self()
	started := make(chan error, 1)
	pid, err := p.SpawnLinkFunc(func(sp *node.Process) error {
		s := &sup{p: sp, parent: parent, spec: spec}
		return s.run(started)
	})
	if err != nil {
		return node.PID{}, err
	}
	if err := <-started; err != nil {
		return node.PID{}, err
	}
	return pid, nil
}

func (s Spec) check() error {
	if s.Strategy < OneForOne || s.Strategy > RestForOne || s.Intensity < 0 || s.Period < 0 {
		return fmt.Errorf("%w: strategy %d, intensity %d, period %v", ErrBadSpec, s.Strategy, s.Intensity, s.Period)
	}
	seen := make(map[string]bool, len(s.Children))
	for _, c := range s.Children {
		if err := c.check(); err != nil {
			return err
		}
		if seen[c.ID] {
			return fmt.Errorf("%w: child ID %q twice", ErrBadSpec, c.ID)
		}
		seen[c.ID] = true
	}
	return nil
}

func (c Child) check() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: a child without an ID", ErrBadSpec)
	case c.Start == nil && c.Actor == "":
		return fmt.Errorf("%w: child %q has neither Start nor Actor", ErrBadSpec, c.ID)
	case c.Restart < Permanent || c.Restart > Temporary || c.Shutdown < 0:
		return fmt.Errorf("%w: child %q: restart %d, shutdown %v", ErrBadSpec, c.ID, c.Restart, c.Shutdown)
	}
	return nil
}

// StartChild adds child to the running supervisor sup and starts it. Call
// it from p's own goroutine. A child with a Start function can only be
// given to a supervisor on p's node.
func StartChild(ctx context.Context, p *node.Process, sup node.PID, child Child) (node.PID, error) {
	if err := child.check(); err != nil {
		return node.PID{}, err
	}
	v, err := p.Call(ctx, sup, startChildReq{child: child})
	if err != nil {
		return node.PID{}, fmt.Errorf("supervisor: start child %q: %w", child.ID, err)
	}
	r := v.(opReply)
	if r.Err != "" {
		return node.PID{}, replyErr(r.Err)
	}
	return r.PID, nil
}

// TerminateChild stops the child id of sup (with its grace period) and
// removes it. Call it from p's own goroutine.
func TerminateChild(ctx context.Context, p *node.Process, sup node.PID, id string) error {
	v, err := p.Call(ctx, sup, terminateReq{ID: id})
	if err != nil {
		return fmt.Errorf("supervisor: terminate child %q: %w", id, err)
	}
	if r, _ := v.(opReply); r.Err != "" {
		return replyErr(r.Err)
	}
	return nil
}

// Which returns sup's children in start order. Call it from p's own
// goroutine.
func Which(ctx context.Context, p *node.Process, sup node.PID) ([]ChildInfo, error) {
	v, err := p.Call(ctx, sup, whichReq{})
	if err != nil {
		return nil, fmt.Errorf("supervisor: which: %w", err)
	}
	r, ok := v.(whichReply)
	if !ok {
		return nil, fmt.Errorf("supervisor: which: unexpected reply %T", v)
	}
	return r.Children, nil
}

// replyErr maps an error's text from a supervisor back to its sentinel.
func replyErr(s string) error {
	for _, e := range []error{ErrNoChild, ErrChildExists, ErrBadSpec} {
		if len(s) >= len(e.Error()) && s[:len(e.Error())] == e.Error() {
			return fmt.Errorf("%w%s", e, s[len(e.Error()):])
		}
	}
	return errors.New(s)
}

// child is a child as the supervisor tracks it.
type child struct {
	spec     Child
	pid      node.PID // zero while not running
	node     string   // where it runs or ran last
	nodeIdx  int      // index in spec.Nodes of that node
	restarts int
}

// sup is the state of a supervisor process; its own goroutine only.
type sup struct {
	p        *node.Process
	parent   node.PID
	spec     Spec
	children []*child
	restarts []time.Time // recent restarts, for the intensity
}

// run is the supervisor process's body.
func (s *sup) run(started chan<- error) error {
	s.p.TrapExit(true)
	for _, c := range s.spec.Children {
		ch := &child{spec: c}
		if err := s.start(ch, 0); err != nil {
			s.stopAll()
			started <- err
			return nil
		}
		s.children = append(s.children, ch)
	}
	started <- nil
	for {
		m, err := s.p.Receive(context.Background())
		if err != nil {
			s.stopAll()
			return err
		}
		switch m := m.(type) {
		case node.Exit:
			if m.From == s.parent {
				s.stopAll()
				return exitErr(m.Reason)
			}
			if err := s.exited(m.From, m.Reason); err != nil {
				s.stopAll()
				return err
			}
		case node.Request:
			s.handle(m)
		}
	}
}

// exitErr turns an exit reason into the supervisor's own return value.
func exitErr(reason any) error {
	switch r := reason.(type) {
	case error:
		return r
	case codec.Atom:
		if r == node.Normal {
			return nil
		}
	}
	return fmt.Errorf("supervisor: parent exited: %v", reason)
}

// start starts c, trying its nodes from index from on (wrapping around),
// and registers its name.
func (s *sup) start(c *child, from int) error {
	if err := s.spawn(c, from); err != nil {
		return err
	}
	if c.spec.Name == "" {
		return nil
	}
	n := s.p.Node()
	if c.pid.Node != n.Self() {
		s.stop(c)
		return fmt.Errorf("%w: child %q runs on %s: a Name is for children on the supervisor's node", ErrBadSpec, c.spec.ID, c.node)
	}
	if err := n.Register(c.spec.Name, c.pid); err != nil {
		if errors.Is(err, node.ErrNoProc) {
			return nil // it has exited already: its exit is on its way
		}
		s.stop(c)
		return fmt.Errorf("supervisor: start child %q: %w", c.spec.ID, err)
	}
	return nil
}

// spawn starts c's process.
func (s *sup) spawn(c *child, from int) error {
	if c.spec.Start != nil {
		pid, err := s.p.SpawnLinkFunc(c.spec.Start)
		if err != nil {
			return fmt.Errorf("supervisor: start child %q: %w", c.spec.ID, err)
		}
		c.pid, c.node = pid, s.p.Node().Self()
		return nil
	}
	nodes := c.spec.Nodes
	if len(nodes) == 0 {
		nodes = []string{s.p.Node().Self()}
	}
	var errs []error
	for i := range nodes {
		k := (from + i) % len(nodes)
		pid, err := s.p.SpawnLink(nodes[k], c.spec.Actor, c.spec.Args...)
		if err == nil {
			c.pid, c.node, c.nodeIdx = pid, nodes[k], k
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("supervisor: start child %q: %w", c.spec.ID, errors.Join(errs...))
}

// exited handles the exit of a linked process; an error ends the
// supervisor.
func (s *sup) exited(pid node.PID, reason any) error {
	i := s.indexOf(pid)
	if i < 0 {
		return nil // a child already stopped or replaced
	}
	c := s.children[i]
	c.pid = node.PID{}
	switch {
	case c.spec.Restart == Temporary:
		s.children = slices.Delete(s.children, i, i+1)
		return nil
	case c.spec.Restart == Transient && !abnormal(reason):
		return nil
	}
	if !s.allowRestart(time.Now()) {
		return fmt.Errorf("%w: %d restarts in %v, last child %q: %v", ErrIntensity, s.spec.Intensity+1, s.spec.Period, c.spec.ID, reason)
	}
	// The node lost: the next one on the list first (failover).
	from := c.nodeIdx
	if reason == any(node.NoConnection) {
		from++
	}
	var group []*child // the children restarted together, in start order
	switch s.spec.Strategy {
	case OneForOne:
		group = []*child{c}
	case OneForAll:
		group = s.children
	case RestForOne:
		group = s.children[i:]
	}
	for j := len(group) - 1; j >= 0; j-- {
		if group[j] != c {
			s.stop(group[j])
		}
	}
	for _, g := range group {
		start := g.nodeIdx
		if g == c {
			start = from
		}
		if g.spec.Restart == Temporary && g != c {
			continue // stopped with the others; never restarted
		}
		if err := s.start(g, start); err != nil {
			return err
		}
		g.restarts++
	}
	s.children = slices.DeleteFunc(s.children, func(g *child) bool { return g.pid.IsZero() && g.spec.Restart == Temporary })
	return nil
}

// allowRestart records a restart at now and reports whether the intensity
// allows it: at most Intensity restarts within Period. The restarts are
// kept in time order, so those out of the window go from the front: each
// restart costs O(1) amortised, whatever the intensity.
func (s *sup) allowRestart(now time.Time) bool {
	i := 0
	for i < len(s.restarts) && now.Sub(s.restarts[i]) >= s.spec.Period {
		i++
	}
	s.restarts = append(s.restarts[i:], now)
	return len(s.restarts) <= s.spec.Intensity
}

// abnormal reports whether a child's exit reason calls for a Transient
// restart.
func abnormal(reason any) bool {
	return reason != any(node.Normal) && reason != any(node.Shutdown)
}

func (s *sup) indexOf(pid node.PID) int {
	for i, c := range s.children {
		if c.pid == pid && !pid.IsZero() {
			return i
		}
	}
	return -1
}

// stopAll stops every child, in reverse start order.
func (s *sup) stopAll() {
	for i := len(s.children) - 1; i >= 0; i-- {
		s.stop(s.children[i])
	}
}

// stop ends c: the shutdown exit signal, its grace period, then kill. It
// returns once c's exit has arrived (linked and trapping exits, the
// supervisor always hears of it, noconnection included).
func (s *sup) stop(c *child) {
	if c.pid.IsZero() {
		return
	}
	pid := c.pid
	c.pid = node.PID{}
	grace := c.spec.Shutdown
	if grace == 0 {
		grace = DefaultShutdown
	}
	isExit := func(m any) bool { x, ok := m.(node.Exit); return ok && x.From == pid }
	_ = s.p.Exit(pid, node.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	_, err := s.p.ReceiveMatch(ctx, isExit)
	cancel()
	if err == nil || errors.Is(err, node.ErrExited) {
		return
	}
	_ = s.p.Exit(pid, node.Kill)
	// A killed process's exit always comes (or noconnection).
	_, _ = s.p.ReceiveMatch(context.Background(), isExit)
}

// handle answers a request from StartChild, TerminateChild or Which.
func (s *sup) handle(r node.Request) {
	var reply any
	switch b := r.Body.(type) {
	case startChildReq:
		reply = s.startChild(b.child)
	case terminateReq:
		reply = s.terminateChild(b.ID)
	case whichReq:
		out := make([]ChildInfo, len(s.children))
		for i, c := range s.children {
			out[i] = ChildInfo{ID: c.spec.ID, PID: c.pid, Node: c.node, Restarts: c.restarts}
		}
		reply = whichReply{Children: out}
	default:
		reply = opReply{Err: fmt.Sprintf("supervisor: unknown request %T", r.Body)}
	}
	_ = s.p.Reply(r, reply)
}

func (s *sup) startChild(c Child) opReply {
	for _, have := range s.children {
		if have.spec.ID == c.ID {
			return opReply{Err: fmt.Sprintf("%v: %q", ErrChildExists, c.ID)}
		}
	}
	ch := &child{spec: c}
	if err := s.start(ch, 0); err != nil {
		return opReply{Err: err.Error()}
	}
	s.children = append(s.children, ch)
	return opReply{PID: ch.pid}
}

func (s *sup) terminateChild(id string) opReply {
	for i, c := range s.children {
		if c.spec.ID == id {
			s.stop(c)
			s.children = slices.Delete(s.children, i, i+1)
			return opReply{}
		}
	}
	return opReply{Err: fmt.Sprintf("%v: %q", ErrNoChild, id)}
}
