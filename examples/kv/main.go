// Command kv runs a supervised key-value service on one node and calls it
// from another: a server process answering node.Request values, kept alive
// by a supervisor under a local name, and a client that reaches it by that
// name with CallNamed — no lookup, no request IDs, no polling.
//
//	go run ./examples/kv    # starts its partner node as a child process
//
// or, in two terminals:
//
//	go run ./examples/kv -serve -name b@127.0.0.1:7001 -cookie secret
//	go run ./examples/kv -peer b@127.0.0.1:7001 -cookie secret
//
// The serving node runs the service; the other one puts a key, gets it back,
// crashes the server on purpose and calls it again once its supervisor has
// restarted it. The crash report is logged on the serving node's stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/examples/internal/pair"
	"github.com/meshrt/mesh/node"
	"github.com/meshrt/mesh/supervisor"
)

// The service's requests. Registered once, they cross nodes as themselves.
type (
	Put   struct{ Key, Value string }
	Get   struct{ Key string }
	Crash struct{} // for the demonstration: the server fails on purpose
)

func init() {
	codec.MustRegister("kv.Put", Put{})
	codec.MustRegister("kv.Get", Get{})
	codec.MustRegister("kv.Crash", Crash{})
}

// server is the key-value service: a process that answers each call. Its
// state is its own; a restarted server starts empty.
func server(p *node.Process) error {
	data := map[string]string{}
	for {
		m, err := p.Receive(context.Background())
		if err != nil {
			return err // stopped by its supervisor or the node
		}
		req, ok := m.(node.Request)
		if !ok {
			continue // not a call
		}
		var reply any
		switch r := req.Body.(type) {
		case Put:
			data[r.Key] = r.Value
			reply = "ok"
		case Get:
			reply = data[r.Key]
		case Crash:
			return errors.New("asked to crash")
		default:
			reply = fmt.Errorf("unknown request %T", r)
		}
		if err := p.Reply(req, reply); err != nil {
			return err
		}
	}
}

func main() {
	if err := run(pair.Parse()); err != nil {
		fmt.Fprintln(os.Stderr, "kv:", err)
		os.Exit(1)
	}
}

func run(cfg *pair.Config) error {
	n, err := node.Start(cfg.Name, cfg.Cookie)
	if err != nil {
		return err
	}
	if cfg.Serve {
		// The supervisor is linked to the process that starts it: this one
		// lives until the node stops serving.
		return n.Run(context.Background(), func(p *node.Process) error {
			_, err := supervisor.Start(p, supervisor.Spec{
				Strategy:  supervisor.OneForOne,
				Intensity: 3, Period: 10 * time.Second,
				Children: []supervisor.Child{{ID: "kv", Name: "kv", Start: server}},
			})
			if err != nil {
				return err
			}
			return pair.Serve(context.Background(), n, cfg)
		})
	}
	return pair.Drive(context.Background(), n, cfg, func(ctx context.Context, peer string) error {
		return n.Run(ctx, func(p *node.Process) error {
			// CallNamed connects to peer if it is not connected yet.
			v, err := p.CallNamed(ctx, peer, "kv", Put{Key: "lang", Value: "go"})
			if err != nil {
				return err
			}
			fmt.Println("put lang:", v)
			if v, err = p.CallNamed(ctx, peer, "kv", Get{Key: "lang"}); err != nil {
				return err
			}
			fmt.Printf("get lang: %q\n", v)

			// A server that exits ends the call at once, with the reason.
			_, err = p.CallNamed(ctx, peer, "kv", Crash{})
			var exit *node.ExitError
			if !errors.As(err, &exit) {
				return fmt.Errorf("the crash call returned %v", err)
			}
			fmt.Println("the server crashed:", exit.Reason)

			// Its supervisor restarts it under the same name. Until then
			// the name is free, and a call ends with ErrNoProc: retry.
			v, err = p.CallNamed(ctx, peer, "kv", Get{Key: "lang"})
			for errors.Is(err, node.ErrNoProc) {
				time.Sleep(10 * time.Millisecond)
				v, err = p.CallNamed(ctx, peer, "kv", Get{Key: "lang"})
			}
			if err != nil {
				return err
			}
			fmt.Printf("get lang from the restarted server: %q\n", v)
			return nil
		})
	})
}
