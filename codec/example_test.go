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
