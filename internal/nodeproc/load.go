package nodeproc

// The load workers. Each belongs to a run (an int64 the driver picks), works
// until a stop actor names its run, then sends the driver one report and
// ends. Arguments, in order:
//
//	lsink   run, replyTo PID, senders int[, group string]: counts what senders
//	        send it, until each has sent its {"done", sent int64}; one-way
//	        latency from the stamped messages ({"stamp", unix ns int64,
//	        payload}). Given a group, it joins it first.
//	lsend   run, replyTo PID, sinks []any (PIDs), payload int, stampEvery
//	        int[, group string]: sends the payload to every sink in turn,
//	        every stampEvery-th round stamped. Given a group (which the
//	        sinks join), it waits until this node sees every sink in it,
//	        tells replyTo {"ready", run}, then publishes each round to the
//	        group instead (Groups.Publish: encoded once, one frame per
//	        node), the end marker too.
//	lping   run, replyTo PID, echo PID, payload int: one {self, payload} in
//	        flight to an echo, timing each round trip
//	lcall   run, replyTo PID, server PID, payload int: Process.Call of the
//	        payload to a server, one call after the other, timing each
//	lspawn  run, replyTo PID, target node string: remote spawns of noop, one
//	        after the other, timing each
//	lreg    run, replyTo PID, prefix string: global Register then Unregister
//	        of fresh names, timing each operation
//
// A report is codec.Tuple{"report", run, role string, ops int64, errors
// int64, span ns int64, histogram []byte, extra int64}: ops are the
// operations done over span (the worker's own monotonic clock); the
// histogram (HdrHistogram, V2 encoding, nanoseconds; empty for none) holds
// one sample per timed operation; extra is role-specific (a sink's: what the
// senders said they sent).

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/node"
)

// Atoms of the load protocol.
const (
	AtomReport  = codec.Atom("report")
	AtomDone    = codec.Atom("done")
	AtomStamp   = codec.Atom("stamp")
	AtomRawAddr = codec.Atom("rawaddr")
	AtomAbort   = codec.Atom("abort")
	AtomReady   = codec.Atom("ready")
)

// Histogram bounds: 100 ns to 100 s, 3 significant digits.
const (
	histLow  = 100
	histHigh = int64(100 * time.Second)
	histSig  = 3
)

// NewHistogram returns an empty latency histogram (nanoseconds) with the
// bounds every worker uses, so that reports merge without loss.
func NewHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histLow, histHigh, histSig) }

// record adds one sample, clamped into the histogram's range: every sample
// is counted.
func record(h *hdrhistogram.Histogram, ns int64) {
	_ = h.RecordValue(min(max(ns, histLow), histHigh))
}

// Report is one worker's report, decoded.
type Report struct {
	Run    int64
	Role   string
	Ops    int64
	Errors int64
	Span   time.Duration
	Hist   *hdrhistogram.Histogram // nil: none
	Extra  int64
}

// ParseReport decodes a report message; ok is false for anything else.
func ParseReport(m any) (r Report, ok bool) {
	t, isT := m.(codec.Tuple)
	if !isT || len(t) != 8 || t[0] != AtomReport {
		return r, false
	}
	var ok1, ok2, ok3, ok4, ok5, ok6, ok7 bool
	var hb []byte
	var span int64
	r.Run, ok1 = t[1].(int64)
	r.Role, ok2 = t[2].(string)
	r.Ops, ok3 = t[3].(int64)
	r.Errors, ok4 = t[4].(int64)
	span, ok5 = t[5].(int64)
	hb, ok6 = t[6].([]byte)
	r.Extra, ok7 = t[7].(int64)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return r, false
	}
	r.Span = time.Duration(span)
	if len(hb) > 0 {
		h, err := hdrhistogram.Decode(hb)
		if err != nil {
			return r, false
		}
		r.Hist = h
	}
	return r, true
}

func report(p *node.Process, replyTo node.PID, run int64, role string, ops, errs int64, span time.Duration, h *hdrhistogram.Histogram, extra int64) error {
	hb := []byte{}
	if h != nil && h.TotalCount() > 0 {
		b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
		if err != nil {
			return err
		}
		hb = b
	}
	return p.Send(replyTo, codec.Tuple{AtomReport, run, role, ops, errs, int64(span), hb, extra})
}

// stopSet holds one context per run, cancelled when a stop actor names
// the run. An entry is made by whichever comes first, a worker or the stop;
// entries older than an hour are dropped (cancelled) when one is added, and
// it never holds more than maxRuns: a driver's run lasts minutes.
type stopSet struct {
	mu   sync.Mutex
	runs map[int64]*runEntry
}

type runEntry struct {
	ctx    context.Context
	cancel context.CancelFunc
	at     time.Time
}

const maxRuns = 4096

// ctx returns run's context, made on first use.
func (s *stopSet) ctx(run int64) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.runs[run]; ok {
		return e.ctx
	}
	if s.runs == nil {
		s.runs = make(map[int64]*runEntry)
	}
	now := time.Now()
	for r, e := range s.runs {
		if now.Sub(e.at) > time.Hour || len(s.runs) >= maxRuns {
			e.cancel()
			delete(s.runs, r)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.runs[run] = &runEntry{ctx: ctx, cancel: cancel, at: now}
	return ctx
}

// stop cancels run's context.
func (s *stopSet) stop(run int64) {
	s.ctx(run)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.runs[run]; ok {
		e.cancel()
	}
}

// args reads a worker's arguments into dst pointers by type; it returns an
// error naming the actor when one is missing or of another type.
func args(actor string, got []any, dst ...any) error {
	if len(got) != len(dst) {
		return fmt.Errorf("%s wants %d arguments, got %d", actor, len(dst), len(got))
	}
	for i, d := range dst {
		ok := false
		switch d := d.(type) {
		case *int64:
			*d, ok = got[i].(int64)
		case *int:
			*d, ok = got[i].(int)
		case *string:
			*d, ok = got[i].(string)
		case *node.PID:
			*d, ok = got[i].(node.PID)
		case *[]any:
			*d, ok = got[i].([]any)
		}
		if !ok {
			return fmt.Errorf("%s: argument %d is %T", actor, i, got[i])
		}
	}
	return nil
}

// optGroup splits an optional trailing group name off a worker's
// arguments, which are want long without it.
func optGroup(actor string, got []any, want int) ([]any, string, error) {
	if len(got) != want+1 {
		return got, "", nil
	}
	group, ok := got[want].(string)
	if !ok {
		return got, "", fmt.Errorf("%s: argument %d (the group) is %T", actor, want, got[want])
	}
	return got[:want], group, nil
}

// membersBound bounds a publisher's wait for its sinks to show up in its
// group (each sink's Join reaches this node through the membership
// replication).
const membersBound = 30 * time.Second

// awaitMembers waits until g's group has every one of pids as a member on
// this node, and reports whether it did before stop ended or membersBound.
func awaitMembers(stop context.Context, g *node.Groups, group string, pids []node.PID) bool {
	deadline := time.Now().Add(membersBound)
	for {
		have := make(map[node.PID]bool)
		for _, m := range g.Members(group) {
			have[m] = true
		}
		all := true
		for _, pid := range pids {
			all = all && have[pid]
		}
		if all {
			return true
		}
		if stop.Err() != nil || time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkEvery is how many operations a worker does between two looks at its
// run's stop flag.
const checkEvery = 64

func defineLoad(n *node.Node, st *State) {
	n.Define("stop", func(_ *node.Process, a []any) error {
		var run int64
		if err := args("stop", a, &run); err != nil {
			return err
		}
		st.runs.stop(run)
		return nil
	})
	n.Define("lsink", func(p *node.Process, a []any) error {
		var run int64
		var replyTo node.PID
		var senders int
		a, group, err := optGroup("lsink", a, 3)
		if err != nil {
			return err
		}
		if err := args("lsink", a, &run, &replyTo, &senders); err != nil {
			return err
		}
		if group != "" {
			if err := p.Node().Groups().Join(group, p.Self()); err != nil {
				return fmt.Errorf("lsink: %w", err)
			}
		}
		// The clock is read at the first message, at stamped ones and at
		// each sender's end marker (which follows its last message), not
		// at every message: the sink must not be the bottleneck.
		h := NewHistogram()
		var got, sent int64
		var first, last time.Time
	receive:
		for ends := 0; ends < senders; {
			m, err := p.Receive(context.Background())
			if err != nil {
				return err
			}
			if t, ok := m.(codec.Tuple); ok && len(t) >= 1 {
				switch t[0] {
				case AtomAbort: // a sender is gone: report what arrived
					last = time.Now()
					break receive
				case AtomDone:
					ends++
					c, _ := t[len(t)-1].(int64)
					sent += c
					last = time.Now()
					continue
				case AtomStamp:
					if ns, ok := t[1].(int64); ok && len(t) == 3 {
						record(h, time.Now().UnixNano()-ns)
					}
				}
			}
			if got == 0 {
				first = time.Now()
			}
			got++
		}
		st.msgs.Add(got)
		span := time.Duration(0)
		if got > 0 {
			span = last.Sub(first)
		}
		return report(p, replyTo, run, "sink", got, 0, span, h, sent)
	})
	n.Define("lsend", func(p *node.Process, a []any) error {
		var run int64
		var replyTo node.PID
		var sinkArgs []any
		var size, stampEvery int
		a, group, err := optGroup("lsend", a, 5)
		if err != nil {
			return err
		}
		if err := args("lsend", a, &run, &replyTo, &sinkArgs, &size, &stampEvery); err != nil {
			return err
		}
		sinks := make([]node.PID, 0, len(sinkArgs))
		for _, s := range sinkArgs {
			pid, ok := s.(node.PID)
			if !ok {
				return fmt.Errorf("lsend: a sink is %T", s)
			}
			sinks = append(sinks, pid)
		}
		var payload any = strings.Repeat("m", size) // boxed once
		raw := payload.(string)
		var rounds, errs int64
		stop := st.runs.ctx(run)
		g := p.Node().Groups()
		// send sends msg to every sink: one by one, or one Publish.
		send := func(msg any) {
			if group != "" {
				if err := g.Publish(group, msg); err != nil {
					errs += int64(len(sinks))
				}
				return
			}
			for _, s := range sinks {
				if err := p.Send(s, msg); err != nil {
					errs++
				}
			}
		}
		if group != "" && !awaitMembers(stop, g, group, sinks) {
			// The sinks never showed up in the group here (or the run
			// was stopped first): each is told so directly, and none
			// of their deliveries happened.
			for _, s := range sinks {
				_ = p.Send(s, codec.Tuple{AtomDone, int64(0)})
			}
			return report(p, replyTo, run, "send", 0, int64(len(sinks)), 0, nil, 0)
		}
		if group != "" {
			if err := p.Send(replyTo, codec.Tuple{AtomReady, run}); err != nil {
				return err
			}
		}
		start := time.Now()
		for stop.Err() == nil {
			for range checkEvery {
				msg := payload
				if stampEvery > 0 && rounds%int64(stampEvery) == 0 {
					msg = codec.Tuple{AtomStamp, time.Now().UnixNano(), raw}
				}
				send(msg)
				rounds++
			}
		}
		span := time.Since(start)
		send(codec.Tuple{AtomDone, rounds})
		return report(p, replyTo, run, "send", rounds*int64(len(sinks)), errs, span, nil, 0)
	})
	n.Define("lping", func(p *node.Process, a []any) error {
		var run int64
		var replyTo, echo node.PID
		var size int
		if err := args("lping", a, &run, &replyTo, &echo, &size); err != nil {
			return err
		}
		msg := codec.Tuple{p.Self(), strings.Repeat("m", size)}
		h := NewHistogram()
		var ops, errs int64
		stop := st.runs.ctx(run)
		start := time.Now()
		for stop.Err() == nil {
			t0 := time.Now()
			if err := p.Send(echo, msg); err != nil {
				errs++
				break
			}
			if _, err := p.Receive(stop); err != nil {
				if stop.Err() == nil {
					errs++
				}
				break // stopped with a round trip in flight: not counted
			}
			record(h, int64(time.Since(t0)))
			ops++
		}
		return report(p, replyTo, run, "ping", ops, errs, time.Since(start), h, 0)
	})
	n.Define("lcall", func(p *node.Process, a []any) error {
		var run int64
		var replyTo, server node.PID
		var size int
		if err := args("lcall", a, &run, &replyTo, &server, &size); err != nil {
			return err
		}
		req := strings.Repeat("m", size)
		h := NewHistogram()
		var ops, errs int64
		stop := st.runs.ctx(run)
		start := time.Now()
		for stop.Err() == nil {
			t0 := time.Now()
			r, err := p.Call(stop, server, req)
			if err != nil {
				if stop.Err() == nil {
					errs++ // the server is gone or its node lost: no call can succeed
				}
				break // stopped with a call in flight: not counted
			}
			record(h, int64(time.Since(t0)))
			if s, _ := r.(string); s != req {
				errs++ // not the request's echo
				continue
			}
			ops++
		}
		return report(p, replyTo, run, "call", ops, errs, time.Since(start), h, 0)
	})
	n.Define("lspawn", func(p *node.Process, a []any) error {
		var run int64
		var replyTo node.PID
		var target string
		if err := args("lspawn", a, &run, &replyTo, &target); err != nil {
			return err
		}
		h := NewHistogram()
		var ops, errs int64
		start := time.Now()
		stop := st.runs.ctx(run)
		for stop.Err() == nil {
			for range checkEvery / 4 {
				t0 := time.Now()
				if _, err := p.Spawn(target, "noop"); err != nil {
					errs++
					continue
				}
				record(h, int64(time.Since(t0)))
				ops++
			}
			if errs > 0 && ops == 0 {
				break
			}
		}
		return report(p, replyTo, run, "spawn", ops, errs, time.Since(start), h, 0)
	})
	n.Define("lreg", func(p *node.Process, a []any) error {
		var run int64
		var replyTo node.PID
		var prefix string
		if err := args("lreg", a, &run, &replyTo, &prefix); err != nil {
			return err
		}
		g := p.Node().Global()
		h := NewHistogram()
		var ops, errs int64
		start := time.Now()
		stop := st.runs.ctx(run)
		// One Register and Unregister per look at the stop flag: each may
		// wait on the network.
		for i := 0; stop.Err() == nil; i++ {
			name := prefix + strconv.Itoa(i)
			t0 := time.Now()
			if err := g.Register(name, p.Self()); err != nil {
				errs++
				continue
			}
			t1 := time.Now()
			record(h, int64(t1.Sub(t0)))
			if err := g.Unregister(name); err != nil {
				errs++
			} else {
				record(h, int64(time.Since(t1)))
			}
			ops += 2
		}
		return report(p, replyTo, run, "registry", ops, errs, time.Since(start), h, 0)
	})
	defineRaw(n, st)
}
