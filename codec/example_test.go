package codec_test

import (
	"errors"
	"fmt"
	"time"

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

// Everyday values need no registration. An error arrives as a codec.Error
// with the same text; a registered type the receiver does not know arrives
// as a codec.Unknown.
func ExampleMarshal_everydayValues() {
	b, err := codec.Marshal(codec.Tuple{
		[]string{"a", "b"}, map[string]int{"n": 1}, 1500 * time.Millisecond, errors.New("disk full"),
	})
	if err != nil {
		panic(err)
	}
	v, _ := codec.Unmarshal(b)
	for _, x := range v.(codec.Tuple) {
		fmt.Printf("%T %v\n", x, x)
	}
	// Output:
	// []string [a b]
	// map[string]int map[n:1]
	// time.Duration 1.5s
	// codec.Error disk full
}
