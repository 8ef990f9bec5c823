package codec_test

import (
	"fmt"

	"github.com/meshrt/mesh/codec"
)

func ExampleMarshal() {
	b, err := codec.Marshal(codec.Tuple{codec.Atom("ok"), 42, []byte("raw")})
	if err != nil {
		panic(err)
	}
	v, err := codec.Unmarshal(b)
	if err != nil {
		panic(err)
	}
	t := v.(codec.Tuple)
	fmt.Printf("%T %v, %T %v, %T %q\n", t[0], t[0], t[1], t[1], t[2], t[2])
	// Output: codec.Atom ok, int 42, []uint8 "raw"
}

type Order struct {
	ID    int
	Items []string
	Note  *string
}

func ExampleRegister() {
	if err := codec.Register("example.Order", Order{}); err != nil {
		panic(err)
	}
	b, _ := codec.Marshal(Order{ID: 7, Items: []string{"tea"}})
	v, _ := codec.Unmarshal(b)
	fmt.Printf("%+v\n", v.(Order))
	// Output: {ID:7 Items:[tea] Note:<nil>}
}

// The sender encodes each message as an item; the link's event loop drains a
// run of items into one batch frame; the receiver parses frames and feeds
// them to a Reassembler, which delivers messages in order.
func ExampleBatcher() {
	var items [][]byte
	for i, msg := range []any{"hello", codec.Atom("ping"), 3.5} {
		item, err := codec.AppendMessage(nil, 100, uint64(i), msg)
		if err != nil {
			panic(err)
		}
		items = append(items, item)
	}
	wire := codec.NewBatcher(codec.BatcherOptions{}).Drain(nil, items)

	r := codec.NewFrameReader(nil, 0)
	re := codec.NewReassembler(0, nil)
	for len(wire) > 0 {
		f, n, err := r.Next(wire)
		if err != nil {
			panic(err)
		}
		wire = wire[n:]
		_ = re.Feed(f, func(m codec.Message) error {
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
	item, _ := codec.AppendMessage(nil, 1, 2, big)
	var f codec.Fragmenter
	if err := f.Reset(1, item, codec.DefaultFragmentSize); err != nil {
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
