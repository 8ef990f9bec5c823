package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/meshrt/mesh/node"
)

// upper is a server process: it answers each Request with the upper-case
// form of its body.
func upper(p *node.Process) error {
	for {
		m, err := p.Receive(context.Background())
		if err != nil {
			return err
		}
		if req, ok := m.(node.Request); ok {
			if err := p.Reply(req, strings.ToUpper(req.Body.(string))); err != nil {
				return err
			}
		}
	}
}

// A server on one node, called from another by PID and by registered
// name; a call to a name nobody holds ends at once with ErrNoProc.
func ExampleProcess_Call() {
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

	srv := b.SpawnFunc(upper)
	if err := b.Register("upper", srv); err != nil {
		panic(err)
	}
	err = a.Run(ctx, func(p *node.Process) error {
		v, err := p.Call(ctx, srv, "by pid")
		if err != nil {
			return err
		}
		fmt.Println(v)
		v, err = p.CallNamed(ctx, b.Self(), "upper", "by name")
		if err != nil {
			return err
		}
		fmt.Println(v)
		_, err = p.CallNamed(ctx, b.Self(), "nobody", "hello?")
		fmt.Println(errors.Is(err, node.ErrNoProc))
		return nil
	})
	if err != nil {
		panic(err)
	}
	// Output:
	// BY PID
	// BY NAME
	// true
}

// Node.Call calls a server from outside any process — here from plain
// goroutines, as an HTTP handler would — many at once.
func ExampleNode_Call() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := node.Start("example@127.0.0.1:0", "secret-cookie")
	if err != nil {
		panic(err)
	}
	defer n.Stop(ctx)

	srv := n.SpawnFunc(upper)
	replies := make([]any, 3)
	var wg sync.WaitGroup
	for i, word := range []string{"one", "two", "three"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := n.Call(ctx, srv, word)
			if err != nil {
				v = err
			}
			replies[i] = v
		}()
	}
	wg.Wait()
	fmt.Println(replies...)
	// Output: ONE TWO THREE
}

// SendNamed sends to a name on another node without looking it up first.
func ExampleProcess_SendNamed() {
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

	got := make(chan any)
	logger := b.SpawnFunc(func(q *node.Process) error {
		m, err := q.Receive(context.Background())
		got <- m
		return err
	})
	if err := b.Register("logger", logger); err != nil {
		panic(err)
	}
	err = a.Run(ctx, func(p *node.Process) error {
		return p.SendNamed(b.Self(), "logger", "hello, logger")
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(<-got)
	// Output: hello, logger
}

// SendAfter schedules a message; Stop cancels it.
func ExampleProcess_SendAfter() {
	n, err := node.Start("example@127.0.0.1:0", "secret-cookie")
	if err != nil {
		panic(err)
	}
	defer n.Stop(context.Background())
	err = n.Run(context.Background(), func(p *node.Process) error {
		cancelled := p.SendAfter(time.Hour, p.Self(), "never")
		fmt.Println(cancelled.Stop())
		p.SendAfter(time.Millisecond, p.Self(), "tick")
		m, err := p.Receive(context.Background())
		fmt.Println(m)
		return err
	})
	if err != nil {
		panic(err)
	}
	// Output:
	// true
	// tick
}
