package mailbox_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/meshrt/mesh/mailbox"
)

func ExampleMailbox() {
	m := mailbox.New()

	// Any number of goroutines may send; Push never blocks.
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { m.Push(i * 10) })
	}
	wg.Wait()

	// One goroutine, the owner, receives.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum := 0
	for range 3 {
		v, err := m.Receive(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		sum += v.(int)
	}
	fmt.Println("sum:", sum)

	// Close wakes the owner; receiving then reports ErrClosed.
	m.Close()
	_, err := m.Receive(ctx)
	fmt.Println(err, m.Push(1))
	// Output:
	// sum: 30
	// mailbox: closed false
}

func ExampleMailbox_PushEncoded() {
	// The decoder runs on the owner's goroutine, when it receives; a node
	// has one for all its mailboxes.
	dec := &mailbox.Decoder{
		Decode:  func(b []byte) (any, error) { return strings.ToUpper(string(b)), nil },
		Dropped: func(err error) { fmt.Println("dropped:", err) },
	}
	m := mailbox.New()
	m.Push("plain")
	m.PushEncoded(dec, []byte("encoded")) // the bytes are copied; the caller may reuse them
	m.PushEncodedRun(dec, [][]byte{[]byte("a"), []byte("run")})
	for range 4 {
		v, _ := m.TryReceive()
		fmt.Println(v)
	}
	// Output:
	// plain
	// ENCODED
	// A
	// RUN
}

func ExampleMailbox_ReceiveMatch() {
	m := mailbox.New()
	m.Push("hello")
	m.Push(42)
	m.Push("world")

	ctx := context.Background()
	// Take the first int; the strings stay queued, in order.
	v, _ := m.ReceiveMatch(ctx, func(msg any) bool { _, ok := msg.(int); return ok })
	fmt.Println(v)
	for range 2 {
		v, _ := m.Receive(ctx)
		fmt.Println(v)
	}
	// Output:
	// 42
	// hello
	// world
}

func ExampleQueue() {
	var q mailbox.Queue[string] // the zero value is ready
	q.Push("a")
	q.Push("b")
	for {
		v, ok := q.Pop()
		if !ok {
			break
		}
		fmt.Println(v)
	}
	// Output:
	// a
	// b
}
