package loop

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// A lost wake-up hunt for the hand-offs of inline reading, shaped after
// node's test of a process that ping-pongs with three nodes while they
// stream to its node (a rare 60 s stall there under load). Two client
// conns share one loop; on each, a process ping-pongs in short inline
// waits, and the server streams to a mailbox nobody reads inline and to
// the other conn's process itself. So the loop, reading one conn,
// delivers to a process that holds the other conn's duty (a local wake
// ending a holder's wait while its own socket may have input), and each
// holder delivers its conn's stream to a mailbox whose owner parks as
// usual; the duty goes back and forth between the loop and two holders
// thousands of times, beside the loop's writes of both processes'
// requests. Every reply and every streamed message must arrive, in
// order; a lost wake-up or a stalled hand-back ends in inlineBound.
func TestInlineShortWaitsRaceLoopDeliveriesOnOneLoop(t *testing.T) {
	srv := newInlineServer(0)
	// The two client handlers share four mailboxes: 0 and 2 are the
	// processes reading conn 1 and conn 2 inline, 1 and 3 park as usual.
	ip := newInlinePair(t, srv, 4, WithLoops(1))
	cli2 := newInlineClient(0)
	cli2.boxes = ip.cli.boxes
	c2, s2 := ip.dial(t, cli2)
	if c2.ls.Load() != ip.cliConn.ls.Load() {
		t.Fatal("the two client conns are not on one loop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), inlineBound)
	defer cancel()
	rounds := 400
	if testing.Short() {
		rounds = 100
	}
	procs := []*inlineProc{ip.proc(0, false), newInlineProc(c2, cli2, 2, false)}
	var stop atomic.Bool
	var streams, procsWG sync.WaitGroup
	// On each conn: a stream to a parked mailbox (read by that conn's
	// holder or by the loop), and one to the other conn's process (it
	// wakes that process, most often while it holds its own conn's duty).
	parked := []struct {
		srv  *Conn
		tag  byte
		sent chan uint64
		got  chan uint64
	}{{ip.srvConn, 1, make(chan uint64, 1), make(chan uint64, 1)}, {s2, 3, make(chan uint64, 1), make(chan uint64, 1)}}
	for _, st := range parked {
		streams.Add(2)
		go func() { defer streams.Done(); serverStream(t, ctx, st.srv, st.tag, &stop, st.sent) }()
		go func() { defer streams.Done(); streamReceiver(t, ctx, ip.cli.boxes[st.tag], st.tag, st.got) }()
	}
	cross := []struct {
		srv  *Conn
		sent chan uint64
	}{{s2, make(chan uint64, 1)}, {ip.srvConn, make(chan uint64, 1)}} // to process 0 on conn 2, to process 1 on conn 1
	crossGot := make([]uint64, 2)
	for i, p := range procs {
		streams.Add(1)
		go func() { defer streams.Done(); serverStream(t, ctx, cross[i].srv, p.tag, &stop, cross[i].sent) }()
		procsWG.Add(1)
		go func() {
			defer procsWG.Done()
			n, err := p.pingPongBeside(ctx, rounds, &stop)
			crossGot[i] = n
			if err != nil {
				t.Error(err)
			}
		}()
	}
	waitGroup(t, &procsWG, "both processes finished their rounds and the streams to them")
	waitGroup(t, &streams, "the streams ended")
	for _, st := range parked {
		if s, g := <-st.sent, <-st.got; s != g {
			t.Errorf("parked mailbox %d got %d frames of %d", st.tag, g, s)
		}
	}
	for i, p := range procs {
		if s := <-cross[i].sent; crossGot[i] != s {
			t.Errorf("process %d got %d frames of the %d streamed to it", p.tag, crossGot[i], s)
		}
	}
	if procs[0].r.took.Load()+procs[1].r.took.Load() == 0 {
		t.Fatalf("no wait of 2 x %d rounds took a read duty", rounds)
	}
	ip.checkRules(t)
	checkClientRules(t, "second client conn", c2, cli2)
	if n := s2.inlineFailed.Load(); n != 0 {
		t.Errorf("second server conn: %d inline rule breaks", n)
	}
	t.Logf("waits read inline: %d and %d of %d", procs[0].r.took.Load(), procs[1].r.took.Load(), rounds)
}

// pingPongBeside runs rounds of request and reply (kindEcho) while a
// stream (serverStream's kindOther frames to p's tag) comes to p's
// mailbox too; it checks both in order, stops the streams after its last
// round (stop), reads its stream to the end and reports how many of its
// frames came in sequence.
func (p *inlineProc) pingPongBeside(ctx context.Context, rounds int, stop *atomic.Bool) (uint64, error) {
	var n uint64
	end := string(inlineMsg(p.tag, kindOther, []byte("end")))
	ended := false
	other := func(msg string) error {
		if msg == end {
			ended = true
			return nil
		}
		if want := string(inlineMsg(p.tag, kindOther, seqBody(n))); msg != want {
			return fmt.Errorf("process %d: stream frame %q, want %q", p.tag, msg, want)
		}
		n++
		return nil
	}
	for i := range rounds {
		body := seqBody(uint64(i))
		if err := p.send(ctx, kindEcho, body); err != nil {
			return n, fmt.Errorf("process %d round %d: send: %w", p.tag, i, err)
		}
		want := string(inlineMsg(p.tag, kindEcho, body))
		for {
			msg, err := p.recv(ctx)
			if err != nil {
				return n, fmt.Errorf("process %d round %d: receive: %w", p.tag, i, err)
			}
			if msg == want {
				break
			}
			if err := other(msg); err != nil {
				return n, err
			}
		}
	}
	stop.Store(true)
	for !ended {
		msg, err := p.recv(ctx)
		if err != nil {
			return n, fmt.Errorf("process %d: after its rounds, %d stream frames: %w", p.tag, n, err)
		}
		if err := other(msg); err != nil {
			return n, err
		}
	}
	return n, nil
}
