package node

import (
	"context"

	"github.com/meshrt/mesh/internal/memlink"
	"github.com/meshrt/mesh/loop"
)

// The link seam: what a peer needs of its connection (link), and where a
// node gets its connections (linker). In production both are the loop
// engine's: *loop.Conn over TLS. Tests of what runs above a connection
// (partitions, links and monitors across nodes, the registry's
// convergence) run over internal/memlink instead, with no TLS and no
// socket; the tests that prove the real thing (TLS, the cookie handshake,
// admission limits, sockets that stall) stay on the engine. doc.go says
// why the seam has this shape.

// link is a peer's connection. *loop.Conn is one; so is *memlink.Conn.
// Every method is safe from any goroutine, with loop.Conn's semantics:
// SetHandler, SetDrain and Start are called once each by attach, in that
// order; Enqueue may wait on backpressure, EnqueueNoWait never does.
type link interface {
	Enqueue(ctx context.Context, item []byte) error
	EnqueueNoWait(item []byte) error
	AllowBacklog(n int)
	EnqueueBulk(ctx context.Context, item []byte) (loop.BulkTicket, error)
	EnqueueBulkNoWait(item []byte) (loop.BulkTicket, error)
	BulkPassed(t loop.BulkTicket) bool
	Queued() int
	Close(reason error) error
	Shutdown(ctx context.Context, reason error) error
	SetHandler(h loop.Handler)
	SetDrain(fn func(dst []byte, items [][]byte) []byte)
	Start()
}

// afterFlusher is a link that can defer work until its loop has written
// what the current callback queued (loop.Conn.AfterFlush).
type afterFlusher interface{ AfterFlush(fn func()) }

// afterFlush runs fn once the link's loop has written what this callback
// queued, where the link can tell (a loop.Conn); else at once. On the
// peer's loop, in a frame handler.
func (pe *peer) afterFlush(fn func()) {
	if af, ok := pe.conn.(afterFlusher); ok {
		af.AfterFlush(fn)
		return
	}
	fn()
}

var (
	_ afterFlusher = (*loop.Conn)(nil)
	_ link         = (*loop.Conn)(nil)
	_ link         = (*memlink.Conn)(nil)
)

// linker is where a node's links come from: dial makes an authenticated,
// admitted link to the node name at addr (not started) with what the
// node knows of the peer's hello; close ends every link and stops
// accepting (inbound links reach the node through accept). Both are the
// engine's (engineLinker) unless a test gave the node an in-memory network
// (withNetwork, memnet.go).
type linker interface {
	dial(ctx context.Context, addr, name string) (link, *peerInfo, error)
	dialCompanion(ctx context.Context, addr, name string) (link, *peerInfo, error)
	close() error
}

// engineLinker is the production linker: the loop engine, whose handshake
// hook (admit.go) runs the cookie handshake and admission.
type engineLinker struct{ e *loop.Engine }

func (l engineLinker) dial(ctx context.Context, addr, name string) (link, *peerInfo, error) {
	c, err := l.e.Dial(ctx, addr, name)
	if err != nil {
		return nil, nil, err
	}
	return c, c.Info().(*peerInfo), nil
}

// dialCompanion dials a companion connection of the link with name
// (companion.go): the handshake says so in the hello (admit.go's hook).
func (l engineLinker) dialCompanion(ctx context.Context, addr, name string) (link, *peerInfo, error) {
	c, err := l.e.Dial(ctx, addr, companionDial(name))
	if err != nil {
		return nil, nil, err
	}
	return c, c.Info().(*peerInfo), nil
}

func (l engineLinker) close() error { return l.e.Close() }
