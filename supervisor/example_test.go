package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshrt/mesh/node"
	"github.com/meshrt/mesh/supervisor"
)

// A supervised counter server: it crashes on "boom", and its supervisor
// restarts it under the same registered name.
func ExampleStart() {
	n, err := node.Start("example@127.0.0.1:0", "secret-cookie")
	if err != nil {
		panic(err)
	}
	defer n.Stop(context.Background())

	counter := func(p *node.Process) error {
		count := 0
		for {
			m, err := p.Receive(context.Background())
			if err != nil {
				return err
			}
			if req, ok := m.(node.Request); ok {
				if req.Body == "boom" {
					return fmt.Errorf("asked to crash")
				}
				count++
				_ = p.Reply(req, count)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = n.Run(ctx, func(p *node.Process) error {
		sup, err := supervisor.Start(p, supervisor.Spec{
			Strategy:  supervisor.OneForOne,
			Intensity: 3, Period: time.Minute,
			Children: []supervisor.Child{{ID: "counter", Name: "counter", Start: counter}},
		})
		if err != nil {
			return err
		}
		v, _ := p.CallNamed(ctx, n.Self(), "counter", "inc")
		fmt.Println("count", v)
		_, err = p.CallNamed(ctx, n.Self(), "counter", "boom")
		fmt.Println("crashed:", err != nil)
		// Until the supervisor has restarted it, the name is free: a call
		// ends at once with ErrNoProc.
		v, err = p.CallNamed(ctx, n.Self(), "counter", "inc")
		for errors.Is(err, node.ErrNoProc) {
			time.Sleep(time.Millisecond)
			v, err = p.CallNamed(ctx, n.Self(), "counter", "inc")
		}
		if err != nil {
			return err
		}
		fmt.Println("count", v)
		children, err := supervisor.Which(ctx, p, sup)
		if err != nil {
			return err
		}
		fmt.Println(children[0].ID, "restarts:", children[0].Restarts)
		return nil
	})
	if err != nil {
		panic(err)
	}
	// Output:
	// count 1
	// crashed: true
	// count 1
	// counter restarts: 1
}
