package wire_test

import (
	"fmt"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
)

// The sender encodes each message as an item; the link's event loop drains a
// run of items into one batch frame; the receiver parses frames and feeds
// them to a Reassembler, which delivers messages in order.
func ExampleBatcher() {
	var items [][]byte
	for i, msg := range []any{"hello", codec.Atom("ping"), 3.5} {
		item, err := wire.AppendMessage(nil, 100, uint64(i), msg, 0)
		if err != nil {
			panic(err)
		}
		items = append(items, item)
	}
	wireBytes := wire.NewBatcher(wire.BatcherOptions{}).Drain(nil, items)

	r := wire.NewFrameReader(0, 0)
	re := wire.NewReassembler(wire.ReassemblyLimits{})
	for len(wireBytes) > 0 {
		f, n, err := r.Next(wireBytes)
		if err != nil {
			panic(err)
		}
		wireBytes = wireBytes[n:]
		_ = re.Feed(f, func(m wire.Message) error {
			v, err := m.Decode(nil)
			fmt.Println(m.To, m.From, v)
			return err
		})
	}
	// Output:
	// 100 0 hello
	// 100 1 ping
	// 100 2 3.5
}

func ExampleFragmenter() {
	big := make([]byte, 200<<10)
	item, _ := wire.AppendMessage(nil, 1, 2, big, 0)
	var f wire.Fragmenter
	if err := f.Reset(1, item, wire.DefaultFragmentSize); err != nil {
		panic(err)
	}
	n := 0
	for f.More() {
		_ = f.Next(nil) // enqueue each as an item; others may go between them
		n++
	}
	fmt.Println(n, "fragments")
	// Output: 4 fragments
}

// A receiver decodes any control frame and dispatches with one type switch.
func ExampleDecodeControl() {
	from := codec.PID{Node: "a@h:1", Incarnation: 1, ID: 7}
	to := codec.PID{Node: "b@h:2", Incarnation: 2, ID: 9}
	var out []byte
	out = (&wire.Link{From: from, To: to}).Append(out)
	out = (&wire.Exit{From: from, To: to, Reason: codec.Atom("kill")}).Append(out)

	r := wire.NewFrameReader(0, 0)
	for len(out) > 0 {
		f, n, err := r.Next(out)
		if err != nil {
			panic(err)
		}
		out = out[n:]
		x, err := wire.DecodeControl(f, nil)
		if err != nil {
			panic(err)
		}
		switch x := x.(type) {
		case *wire.Link:
			fmt.Println("link", x.From, x.To)
		case *wire.Exit:
			fmt.Println("exit", x.To, x.Reason)
		}
	}
	// Output:
	// link <a@h:1.1.7> <b@h:2.2.9>
	// exit <b@h:2.2.9> kill
}
