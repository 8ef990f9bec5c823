package loop

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/meshrt/mesh/tlsconn"
)

// fedConn returns a Conn whose read side is in loop-fed mode, as after
// Start, handing its input to h, and the peer's tls.Conn and adapter, whose
// output is the ciphertext the Conn's reads are fed. No engine, no loop:
// the test calls readTLS itself, as the loop or a holder would.
func fedConn(t *testing.T, h Handler) (c *Conn, peer *tls.Conn, peerAd *tlsconn.Adapter) {
	t.Helper()
	cert, err := tlsconn.NewCertificate(0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	cfg := tlsconn.ServerConfig(cert)
	cfg.DynamicRecordSizingDisabled = true // records of 16 KiB from the first
	srv, sa := tlsconn.Server(a, cfg)
	cli, ca := tlsconn.Client(b, tlsconn.ClientConfig())
	deadline := time.Now().Add(10 * time.Second)
	_ = sa.SetHandshakeDeadline(deadline)
	_ = ca.SetHandshakeDeadline(deadline)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = sa.SetHandshakeDeadline(time.Time{})
	_ = ca.SetHandshakeDeadline(time.Time{})
	sc, cc := sa.Detach(), ca.Detach() // loop-fed from here
	t.Cleanup(func() { _ = sc.Close(); _ = cc.Close() })
	// The handshake's last flight (the server's session tickets) is still
	// unread: the Conn's first Read takes it with the fed input.
	c = &Conn{e: &Engine{opts: defaultOptions()}, tc: cli, ad: ca, handler: h}
	return c, srv, sa
}

// seal returns the ciphertext of one tls.Conn Write of p: records of at
// most 16 KiB of p each, in order.
func seal(t *testing.T, tc *tls.Conn, ad *tlsconn.Adapter, p []byte) []byte {
	t.Helper()
	if _, err := tc.Write(p); err != nil {
		t.Fatal(err)
	}
	return ad.SwapOutput(nil)
}

// splitRecords cuts ciphertext after its first n TLS records.
func splitRecords(t *testing.T, b []byte, n int) (head, tail []byte) {
	t.Helper()
	off := 0
	for range n {
		if len(b)-off < 5 {
			t.Fatalf("fewer than %d records", n)
		}
		off += 5 + (int(b[off+3])<<8 | int(b[off+4]))
	}
	return b[:off], b[off:]
}

// A batch that the handler takes whole from the conn's own buffer (the
// frame it left incomplete last time, completed now) does not end the
// read: the rest of the input is read and offered too, even by a reader
// whose scratch buffer is still empty (a goroutine reading inline for the
// first time). Once, such a read stopped there and the rest of the input
// was dropped by the next one: the stream lost bytes and the conn failed
// with a bad record MAC.
func TestReadGoesOnAfterTheHandlerTakesTheConnsOwnBufferWhole(t *testing.T) {
	h := newFrameHandler(nil)
	c, peer, peerAd := fedConn(t, h)
	ls := &loopState{}

	// One frame of 40 004 bytes: three records; the first two arrive
	// alone, and the handler leaves them (incomplete) in the conn's buffer.
	first := seal(t, peer, peerAd, frame(nil, bytes.Repeat([]byte{1}, 40000)))
	head, tail := splitRecords(t, first, 2)
	loopBuf := make([]byte, 0, readBatch)
	c.readTLS(ls, &loopBuf, head, true)
	if frames, _, _ := h.count(); frames != 0 || len(c.leftover) != 32<<10 {
		t.Fatalf("after two records of the frame: %d frames, %d bytes left over; want 0 and %d", frames, len(c.leftover), 32<<10)
	}

	// Then, in one read: the frame's last record, a second frame that
	// takes the gathered plaintext past readBatch exactly at its end (the
	// handler takes all of it), and a third frame behind them.
	in := append([]byte(nil), tail...)
	in = append(in, seal(t, peer, peerAd, frame(nil, bytes.Repeat([]byte{2}, 30000)))...)
	in = append(in, seal(t, peer, peerAd, frame(nil, []byte("third")))...)
	var fresh []byte // a holder's scratch buffer before its first read
	c.readTLS(ls, &fresh, in, false)

	frames, closes, reason := h.count()
	if frames != 3 || closes != 0 {
		t.Fatalf("got %d frames and %d closes (%v); want all 3 frames and no close", frames, closes, reason)
	}
	if n := c.ad.Unread(); n != 0 {
		t.Fatalf("%d bytes of the fed ciphertext were left unread", n)
	}
	if len(c.leftover) != 0 {
		t.Fatalf("%d bytes left over; want none", len(c.leftover))
	}
}

// Records the server's tls.Conn read ahead in blocking mode, during its
// hook, all reach the handler in OnOpen's read pass, with no further input
// to prompt it: a pass over them must not stop as if the adapter were
// drained (tlsconn.Adapter.Drained is false until the first loop-fed Read).
func TestRecordsReadAheadByTheHookAreDeliveredAtStart(t *testing.T) {
	sent := make(chan struct{})
	srvHook := func(ctx context.Context, tc *tls.Conn, outbound bool, _ any) (any, error) {
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		select { // the client's name and its three frames are on their way
		case <-sent:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if _, err := tc.Write([]byte("srv\n")); err != nil {
			return nil, err
		}
		// The first Read pulls whatever the socket holds into tls.Conn:
		// the name's record and the frames' behind it.
		return readName(tc)
	}
	cliHook := func(ctx context.Context, tc *tls.Conn, outbound bool, _ any) (any, error) {
		if _, err := tc.Write([]byte("cli\n")); err != nil {
			return nil, err
		}
		for _, m := range []string{"a", "b", "c"} { // a record each
			if _, err := tc.Write(frame(nil, []byte(m))); err != nil {
				return nil, err
			}
		}
		close(sent)
		return readName(tc)
	}
	srv, cli := hookedEnginePair(t, srvHook, cliHook)
	h := newFrameHandler(nil)
	c := dialEngine(t, srv, cli, h)
	c.SetHandler(newFrameHandler(nil))
	c.Start()
	eventually(t, inlineBound, "the three frames read ahead by the hook", func() bool {
		f, _, _ := h.count()
		return f == 3
	})
}

// A Shutdown that comes while the peer's large message is arriving (a
// Disconnect, say) leaves the conn reading until the peer's close_notify:
// the handler is offered nothing more, but every fed byte still goes
// through tls.Conn in order. Once, the read pass that found the close
// asked for stopped and dropped the rest of its feed, and the next input
// was fed behind the hole: tls.Conn failed (bad record MAC, or a protocol
// version error where a record header should have been) and sent the
// peer an alert, which the peer read before the goodbye the conn had
// queued, so its link went down as lost, not disconnected.
func TestReadAfterShutdownKeepsTheRecordStream(t *testing.T) {
	var c *Conn
	offered := 0
	h := newFrameHandler(func(*Conn, []byte) {
		offered++
		if offered == 1 {
			// What Shutdown does before the loop runs its drain: the
			// reason, then the draining rung (drainOnLoop).
			c.setReason(errors.New("test: shutdown"))
			c.advance(draining)
			c.scheduled.Store(true) // and the loop takes the drain token
		}
	})
	c, peer, peerAd := fedConn(t, h)
	c.done, c.gone = make(chan struct{}), make(chan struct{})
	ls := &loopState{}

	// A frame read before the Shutdown, whose handling sees it come.
	buf := make([]byte, 0, readBatch)
	c.readTLS(ls, &buf, seal(t, peer, peerAd, frame(nil, []byte("before"))), false)

	// Then frames of 16 380 bytes, one record each (16 KiB with its
	// header), in one input: the pass gathers its first 64 KiB (readBatch)
	// with the fifth record still fed, unread by tls.Conn.
	var in []byte
	for range 5 {
		in = append(in, seal(t, peer, peerAd, frame(nil, bytes.Repeat([]byte{1}, 16380)))...)
	}
	c.readTLS(ls, &buf, in, false)

	// More of the stream, then the peer's close_notify: read in order,
	// offered to nobody, and the close_notify ends the read cleanly.
	more := seal(t, peer, peerAd, frame(nil, bytes.Repeat([]byte{2}, 30000)))
	c.readTLS(ls, &buf, more, false)
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.readTLS(ls, &buf, peerAd.SwapOutput(nil), false)

	frames, closes, reason := h.count()
	if closes != 0 || c.reached(closing) {
		t.Fatalf("the conn failed its reads (%d closes: %v); want the stream read to the peer's close_notify", closes, reason)
	}
	if offered != 1 || frames != 1 {
		t.Fatalf("the handler was offered %d frames (%d counted); want the 1 before the shutdown", offered, frames)
	}
	if c.ad.PendingOutput() {
		t.Fatal("tls.Conn has output pending (an alert for the peer)")
	}
}

// A read that stops for good in the middle of its input (the handler
// failed: the conn is closed, and the rest of the input dropped) feeds
// tls.Conn nothing more, even if input comes before the close reaches the
// loop (a holder's Close goes through the loop): fed behind the dropped
// bytes, it would be read out of place, and tls.Conn would queue an alert
// for the peer ahead of the close_notify.
func TestNoReadAfterAFeedWasDropped(t *testing.T) {
	failed := errors.New("test: the handler fails")
	h := &failingHandler{err: failed}
	c, peer, peerAd := fedConn(t, h)
	c.done, c.gone = make(chan struct{}), make(chan struct{})
	c.start = startOnLoop // Close hands the close to the loop, which has not run it yet
	c.scheduled.Store(true)
	ls := &loopState{}

	// Five records of 16 KiB in one input, read by a holder: the handler
	// fails at the first 64 KiB, with the fifth record unread.
	var in []byte
	for range 5 {
		in = append(in, seal(t, peer, peerAd, frame(nil, bytes.Repeat([]byte{1}, 16380)))...)
	}
	var buf []byte
	c.readTLS(ls, &buf, in, false)
	if !c.reached(closeRequested) || c.reached(closing) {
		t.Fatal("the handler's failure did not ask for the close, or the close ran")
	}
	c.readTLS(ls, &buf, seal(t, peer, peerAd, frame(nil, []byte("more"))), false)
	if c.ad.PendingOutput() {
		t.Fatal("tls.Conn read input fed behind the dropped bytes: it queued an alert for the peer")
	}
}

// failingHandler fails every OnData with err.
type failingHandler struct{ err error }

func (h *failingHandler) OnData(*Conn, []byte) (int, error) { return 0, h.err }
func (h *failingHandler) OnClose(*Conn, error)              {}
