package node_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

// A node runs processes; Run makes the calling goroutine one of them.
func ExampleNode_Run() {
	n, err := node.Start("example@127.0.0.1:0", "secret-cookie")
	if err != nil {
		panic(err)
	}
	defer n.Stop(context.Background())

	err = n.Run(context.Background(), func(p *node.Process) error {
		echo := n.SpawnFunc(func(q *node.Process) error {
			m, err := q.Receive(context.Background())
			if err != nil {
				return err
			}
			t := m.(codec.Tuple)
			return q.Send(t[0].(node.PID), t[1])
		})
		if err := p.Send(echo, codec.Tuple{p.Self(), "hello"}); err != nil {
			return err
		}
		m, err := p.Receive(context.Background())
		fmt.Println(m)
		return err
	})
	if err != nil {
		panic(err)
	}
	// Output: hello
}

// Two nodes with the same cookie connect; a process on one spawns a defined
// actor on the other, linked, and hears of its exit.
func ExampleProcess_SpawnLink() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := node.Start("a@127.0.0.1:0", "secret-cookie")
	if err != nil {
		panic(err)
	}
	defer a.Stop(ctx)
	b, err := node.Start("b@127.0.0.1:0", "secret-cookie")
	if err != nil {
		panic(err)
	}
	defer b.Stop(ctx)
	b.Define("worker", func(p *node.Process, args []any) error {
		return fmt.Errorf("gave up after %d tries", args[0].(int))
	})
	if err := a.Connect(ctx, b.Self()); err != nil {
		panic(err)
	}

	err = a.Run(ctx, func(p *node.Process) error {
		p.TrapExit(true) // the worker's exit arrives as a message
		if _, err := p.SpawnLink(b.Self(), "worker", 3); err != nil {
			return err
		}
		m, err := p.Receive(ctx)
		if err != nil {
			return err
		}
		fmt.Println("worker exited:", m.(node.Exit).Reason)
		_, err = p.Spawn(b.Self(), "no-such-actor")
		fmt.Println(errors.Is(err, node.ErrUnknownActor))
		return nil
	})
	if err != nil {
		panic(err)
	}
	// Output:
	// worker exited: gave up after 3 tries
	// true
}

// A name registered on one node is found on every connected node, without
// touching the network.
func ExampleNode_Global() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _ := node.Start("a@127.0.0.1:0", "secret-cookie")
	defer a.Stop(ctx)
	b, _ := node.Start("b@127.0.0.1:0", "secret-cookie")
	defer b.Stop(ctx)
	if err := a.Connect(ctx, b.Self()); err != nil {
		panic(err)
	}
	boss := a.SpawnFunc(func(p *node.Process) error { _, err := p.Receive(ctx); return err })
	if err := a.Global().Register("boss", boss); err != nil {
		panic(err)
	}
	for {
		if pid, ok := b.Global().Whereis("boss"); ok {
			fmt.Println(pid == boss)
			return
		}
		time.Sleep(time.Millisecond) // the registration is on its way to b
	}
	// Output: true
}

// Connect reports a wrong cookie as ErrAuth.
func ExampleNode_Connect() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _ := node.Start("a@127.0.0.1:0", "one-cookie")
	defer a.Stop(ctx)
	b, _ := node.Start("b@127.0.0.1:0", "another-cookie")
	defer b.Stop(ctx)
	err := a.Connect(ctx, b.Self())
	fmt.Println(errors.Is(err, node.ErrAuth))
	// Output: true
}
