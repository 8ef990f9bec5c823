package loop

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/meshrt/mesh/internal/testutil"
)

// frameHandler parses 4-byte big-endian length-prefixed frames and hands
// each frame to onFrame (on the loop). It records the close reason.
type frameHandler struct {
	onFrame func(c *Conn, f []byte)

	mu      sync.Mutex
	closes  int
	reason  error
	closedC chan struct{}
	frames  int
	bytes   int
}

func newFrameHandler(onFrame func(c *Conn, f []byte)) *frameHandler {
	return &frameHandler{onFrame: onFrame, closedC: make(chan struct{})}
}

func (h *frameHandler) OnData(c *Conn, b []byte) (int, error) {
	used := 0
	for len(b)-used >= 4 {
		n := int(binary.BigEndian.Uint32(b[used:]))
		if n > 1<<24 {
			return used, errors.New("frame too large")
		}
		if len(b)-used-4 < n {
			break
		}
		f := b[used+4 : used+4+n]
		if h.onFrame != nil {
			h.onFrame(c, f)
		}
		used += 4 + n
		h.mu.Lock()
		h.frames++
		h.bytes += n
		h.mu.Unlock()
	}
	return used, nil
}

func (h *frameHandler) OnClose(c *Conn, reason error) {
	h.mu.Lock()
	h.closes++
	h.reason = reason
	first := h.closes == 1
	h.mu.Unlock()
	if first {
		close(h.closedC)
	}
}

func (h *frameHandler) count() (frames, closes int, reason error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.frames, h.closes, h.reason
}

func frame(dst []byte, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// eventually polls cond until it holds or the bound passes.
func eventually(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, bound, what, cond)
}

// nameHook is a trivial post-TLS hook: each side writes its name (one line)
// and reads the peer's; Info is the peer's name.
func nameHook(name string) Hook {
	return func(ctx context.Context, tc *tls.Conn, outbound bool, dialArg any) (any, error) {
		msg := []byte(name + "\n")
		if _, err := tc.Write(msg); err != nil {
			return nil, err
		}
		return readName(tc)
	}
}

// readName reads tc one byte at a time up to a newline (at most 64 bytes
// before it) and returns what came before the newline.
func readName(tc *tls.Conn) (string, error) {
	var got []byte
	one := make([]byte, 1)
	for {
		if _, err := tc.Read(one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(got), nil
		}
		if len(got) > 64 {
			return "", errors.New("name too long")
		}
		got = append(got, one[0])
	}
}

type pair struct {
	server, client       *Engine
	srvConn, cliConn     *Conn
	srvHandler, cliHandl *frameHandler
}

// newPair starts two engines, dials from client to server and starts both
// ends with the given frame callbacks.
func newPair(t *testing.T, srvFrame, cliFrame func(*Conn, []byte), opts ...Option) *pair {
	t.Helper()
	srv, err := New(append([]Option{WithLoops(2), WithHook(nameHook("srv"))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := New(append([]Option{WithLoops(2), WithHook(nameHook("cli"))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	p := &pair{server: srv, client: cli}
	p.srvHandler = newFrameHandler(srvFrame)
	p.cliHandl = newFrameHandler(cliFrame)
	accepted := make(chan *Conn, 1)
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) {
		c.SetHandler(p.srvHandler)
		c.Start()
		accepted <- c
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cli.Dial(ctx, addr.String(), "srv")
	if err != nil {
		t.Fatal(err)
	}
	c.SetHandler(p.cliHandl)
	c.Start()
	p.cliConn = c
	select {
	case p.srvConn = <-accepted:
	case <-ctx.Done():
		t.Fatal("server did not accept")
	}
	return p
}

// orderCheck checks frames that start with a big-endian sender number and
// sequence number: each sender's frames must arrive in sequence. Its frame
// method is a frame handler.
type orderCheck struct {
	mu   sync.Mutex
	next []uint32 // per sender, the sequence number expected next
	bad  int      // frames that broke their sender's sequence
}

func newOrderCheck(senders int) *orderCheck { return &orderCheck{next: make([]uint32, senders)} }

func (o *orderCheck) frame(_ *Conn, f []byte) {
	s, seq := binary.BigEndian.Uint32(f), binary.BigEndian.Uint32(f[4:])
	o.mu.Lock()
	if seq != o.next[s] {
		o.bad++
	}
	o.next[s] = seq + 1
	o.mu.Unlock()
}

// result returns how many frames broke their sequence and, per sender,
// how many arrived in sequence.
func (o *orderCheck) result() (bad int, next []uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bad, append([]uint32(nil), o.next...)
}

// namedEnginePair starts two engines of one loop each, with opts besides,
// whose loop threads are named srv and cli (nameHook), closed at the
// test's end.
func namedEnginePair(t *testing.T, opts ...Option) (srv, cli *Engine) {
	t.Helper()
	return hookedEnginePair(t, nameHook("srv"), nameHook("cli"), opts...)
}

// hookedEnginePair starts two engines of one loop each, the server's
// running srvHook after TLS and the client's cliHook, with opts besides,
// closed at the test's end.
func hookedEnginePair(t *testing.T, srvHook, cliHook Hook, opts ...Option) (srv, cli *Engine) {
	t.Helper()
	srv, err := New(append([]Option{WithLoops(1), WithHook(srvHook)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	cli, err = New(append([]Option{WithLoops(1), WithHook(cliHook)}, opts...)...)
	if err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	return srv, cli
}

// dialNamed starts a namedEnginePair whose server runs h on every conn it
// accepts, and returns the client's conn to it, not started.
func dialNamed(t *testing.T, h Handler) *Conn {
	t.Helper()
	srv, cli := namedEnginePair(t)
	return dialEngine(t, srv, cli, h)
}

// dialEngine has srv run h on every conn it accepts and returns cli's conn
// to it, not started.
func dialEngine(t *testing.T, srv, cli *Engine, h Handler) *Conn {
	t.Helper()
	addr, err := srv.Listen("127.0.0.1:0", func(c *Conn) { c.SetHandler(h); c.Start() })
	if err != nil {
		t.Fatal(err)
	}
	c, err := cli.Dial(context.Background(), addr.String(), "srv")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitClosed waits for h's OnClose, failing with what after 10 s.
func waitClosed(t *testing.T, h *frameHandler, what string) {
	t.Helper()
	select {
	case <-h.closedC:
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

// secondConn opens a second conn between p's engines: the server side
// handles frames with srvFrame, the client side (returned, started, with
// its handler) with cliFrame.
func secondConn(t *testing.T, p *pair, srvFrame, cliFrame func(*Conn, []byte)) (*Conn, *frameHandler) {
	t.Helper()
	addr, err := p.server.Listen("127.0.0.1:0", func(c *Conn) {
		c.SetHandler(newFrameHandler(srvFrame))
		c.Start()
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := p.client.Dial(ctx, addr.String(), "srv")
	if err != nil {
		t.Fatal(err)
	}
	h := newFrameHandler(cliFrame)
	c2.SetHandler(h)
	c2.Start()
	return c2, h
}

// repeatUntil calls f until stop is closed, then marks wg done. On its own
// goroutine.
func repeatUntil(stop <-chan struct{}, wg *sync.WaitGroup, f func()) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
			f()
		}
	}
}
