package global_test

import (
	"errors"
	"fmt"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/global"
)

// exampleHost stands in for package node: it keeps every broadcast frame so
// the example can hand it to the peer, as the node does over the wire.
type exampleHost struct {
	name string
	live map[codec.PID]bool
	sent [][]byte
}

func (h *exampleHost) Self() string                { return h.name }
func (h *exampleHost) Broadcast(frame []byte)      { h.sent = append(h.sent, frame) }
func (h *exampleHost) Connected(node string) bool  { return true }
func (h *exampleHost) Alive(pid codec.PID) bool    { return h.live[pid] }
func (h *exampleHost) Notify(pid codec.PID, m any) { fmt.Println(pid, "told:", m) }

func Example() {
	a := &exampleHost{name: "a@127.0.0.1:7001", live: map[codec.PID]bool{}}
	b := &exampleHost{name: "b@127.0.0.1:7002", live: map[codec.PID]bool{}}
	ra, rb := global.New(a), global.New(b)

	// On connect, each side merges the other's snapshot.
	_ = rb.Merge(a.Self(), ra.Snapshot())
	_ = ra.Merge(b.Self(), rb.Snapshot())

	logger := codec.PID{Node: a.Self(), Incarnation: 1, ID: 42}
	a.live[logger] = true
	if err := ra.Register("logger", logger); err != nil {
		fmt.Println(err)
	}
	// The node sends each broadcast frame to every peer, which handles it.
	for _, f := range a.sent {
		_ = rb.Handle(a.Self(), f)
	}
	a.sent = nil

	pid, ok := rb.Whereis("logger") // local read on b: no network, no lock
	fmt.Println(pid, ok)

	worker := codec.PID{Node: b.Self(), Incarnation: 1, ID: 7}
	b.live[worker] = true
	err := rb.Register("logger", worker) // known anywhere b has heard of
	fmt.Println(errors.Is(err, global.ErrNameTaken))

	// The process exits: its name goes everywhere.
	delete(a.live, logger)
	ra.ProcessExited(logger)
	for _, f := range a.sent {
		_ = rb.Handle(a.Self(), f)
	}
	_, ok = rb.Whereis("logger")
	fmt.Println(ok)
	// Output:
	// <a@127.0.0.1:7001.1.42> true
	// true
	// false
}
