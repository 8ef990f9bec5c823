package nodeproc

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

// Atoms of the actors' protocol.
const (
	AtomCount   = codec.Atom("count")
	AtomStats   = codec.Atom("stats")
	AtomWhereis = codec.Atom("whereis")
	AtomUndef   = codec.Atom("undefined")
)

// ErrCrash is the exit reason of the crash actor.
var ErrCrash = errors.New("crash actor crashed as asked")

// State is what the actors of one node share: message counts and the runs
// told to stop. Its methods are safe from any goroutine.
type State struct {
	msgs atomic.Int64
	runs stopSet
}

// Define defines every actor of this package on n, sharing st (a fresh
// State per node). It may be called from any goroutine.
func Define(n *node.Node, st *State) {
	bg := context.Background()
	n.Define("echo", func(p *node.Process, _ []any) error {
		for {
			m, err := p.Receive(bg)
			if err != nil {
				return err
			}
			st.msgs.Add(1)
			if t, ok := m.(codec.Tuple); ok && len(t) > 0 {
				if from, ok := t[0].(node.PID); ok {
					if err := p.Send(from, m); err != nil {
						return err
					}
				}
			}
		}
	})
	n.Define("sink", func(p *node.Process, _ []any) error {
		var count int64
		for {
			m, err := p.Receive(bg)
			if err != nil {
				return err
			}
			if t, ok := m.(codec.Tuple); ok && len(t) == 2 && t[0] == AtomCount {
				if from, ok := t[1].(node.PID); ok {
					if err := p.Send(from, codec.Tuple{AtomCount, count}); err != nil {
						return err
					}
					continue
				}
			}
			count++
			st.msgs.Add(1)
		}
	})
	n.Define("crash", func(p *node.Process, args []any) error {
		if len(args) > 0 && args[0] == "now" {
			return ErrCrash
		}
		if _, err := p.Receive(bg); err != nil {
			return err
		}
		return ErrCrash
	})
	n.Define("noop", func(*node.Process, []any) error { return nil })
	n.Define("server", func(p *node.Process, _ []any) error {
		for {
			m, err := p.Receive(bg)
			if err != nil {
				return err
			}
			if req, ok := m.(node.Request); ok {
				st.msgs.Add(1)
				if err := p.Reply(req, req.Body); err != nil {
					return err
				}
			}
		}
	})
	n.Define("stats", func(p *node.Process, args []any) error {
		replyTo, ok := argPID(args, 0)
		if !ok {
			return errors.New("stats wants a reply-to PID")
		}
		peers := []any{}
		for _, name := range p.Node().List() {
			peers = append(peers, name)
		}
		return p.Send(replyTo, codec.Tuple{AtomStats, p.Node().Self(), st.msgs.Load(), peers})
	})
	n.Define("whereis", func(p *node.Process, args []any) error {
		replyTo, ok := argPID(args, 0)
		if !ok {
			return errors.New("whereis wants args (replyTo PID, names ...string)")
		}
		found := make([]any, 0, len(args)-1)
		for _, a := range args[1:] {
			name, _ := a.(string)
			if pid, ok := p.Node().Global().Whereis(name); ok {
				found = append(found, pid)
			} else {
				found = append(found, AtomUndef)
			}
		}
		return p.Send(replyTo, codec.Tuple{AtomWhereis, p.Node().Self(), found})
	})
	defineLoad(n, st)
}

func argPID(args []any, i int) (node.PID, bool) {
	if len(args) <= i {
		return node.PID{}, false
	}
	pid, ok := args[i].(node.PID)
	return pid, ok
}
