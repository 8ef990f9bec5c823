//go:build meshdebug

package loop

// Stream checks (build tag meshdebug: go test -tags meshdebug, make
// debugtest): every conn's ciphertext is followed from tls.Conn to the
// socket and, when the peer is a conn of this process (tests run both
// nodes in one), from the socket into the peer's tls.Conn. The first byte
// out of place panics with the conn, the path and the recent history of
// its stream.
//
//   - Produced: what tls.Conn wrote, in the order the adapter's output was
//     taken (swapOutput: the swaps are ordered by a mutex of the conn's, so
//     their concatenation is the record sequence tls.Conn sealed).
//   - Handed: every write path (gnet's Write, a direct writer's write(2)
//     on the dup, the loop's write(2) beside a holder) compares what it
//     gives the socket, when it gives it, with the produced bytes at the
//     conn's handed offset: a later record written first, a record written
//     twice, a buffer overwritten between the seal and the write, all fail
//     here on the writer's side.
//   - Fed: what the read path offers its tls.Conn (gnet's read buffer on
//     the loop, a holder's read) is compared with what the peer conn
//     produced at the same stream offset: bytes the socket got in another
//     order than they were handed (gnet holding bytes while a direct
//     writer went first), or input split between two readers, fail here.
//   - Sealed: each produced record is opened again (dbgOpener) with the
//     conn's write secret, which a per-conn key log (tls.Config's
//     KeyLogWriter) gives: a record tls.Conn sealed out of sequence, or
//     whose bytes changed before they were taken, fails at production.
//   - Consumed: where the reader's tls.Conn stands (its next read sequence
//     number and the bytes its raw input holds, read from crypto/tls's
//     unexported fields) must match the records the peer sealed: before
//     each feed, and after each read pass that used up its feed. Input
//     fed and then not read (a pass that stopped early), or read twice,
//     fails here before tls.Conn reports "bad record MAC". tlsconn's
//     meshdebug build checks that what tls.Conn reads is what was fed and
//     what it writes is what is taken (tlsconn/debug_on.go).
//   - Rule checks: two write sections of one conn at once (two holders of
//     the drain token), a direct write while gnet may hold unsent bytes, a
//     write beside a holder with gnet's buffer not empty, the loop's
//     OnTraffic while a holder reads (or two holders), a feed by the loop
//     with the duty away or by a holder without it, fed input left unread
//     after tls.Conn would block or changed across the handler's OnData.
//   - Drained: when a read pass stops without the would-block Read
//     (tlsconn's Adapter.Drained), its tls.Conn must hold nothing: no raw
//     input, no plaintext, no partial handshake message, and the adapter
//     no fed input.
//
// The streams are keyed by the socket's address pair; the handshake's bytes
// (blocking mode, counted by a wrapper of the net.Conn under tlsconn) set
// each side's starting offset. A failure stops every other one (dbgFailMu)
// so that its report prints whole, with every goroutine's stack.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

type connDebug struct {
	bw, br int64 // bytes written and read in blocking mode (handshake, hook)

	out, in *dbgStream // the stream this conn sends, the one it receives
	name    string
	keys    *dbgKeyLog

	swapMu    sync.Mutex
	writers   atomic.Int32 // write sections in progress
	writePath atomic.Int32 // index in writePaths of the last section entered
	readers   atomic.Int32 // read sections in progress
	readWho   atomic.Pointer[string]
	gnetDirty atomic.Bool // a gnet Write left bytes in its buffer, and the loop has not seen it empty since
	fedEnd    int64       // the reader's: stream offset up to which its tls.Conn was fed
	fedPass   bool        // the reader's: the current read pass had a checked feed
}

// dbgConn counts what tls.Conn reads and writes in blocking mode, and
// keeps the conn's TLS secrets (KeyLogWriter).
type dbgConn struct {
	net.Conn
	r, w atomic.Int64
	keys dbgKeyLog
}

type dbgKeyLog struct {
	mu      sync.Mutex
	secrets map[string][]byte // label: secret
}

func (k *dbgKeyLog) Write(line []byte) (int, error) {
	f := strings.Fields(string(line))
	if len(f) == 3 {
		if sec, err := hex.DecodeString(f[2]); err == nil {
			k.mu.Lock()
			if k.secrets == nil {
				k.secrets = map[string][]byte{}
			}
			k.secrets[f[0]] = sec
			k.mu.Unlock()
		}
	}
	return len(line), nil
}

func (k *dbgKeyLog) get(label string) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.secrets[label]
}

func dbgConfig(cfg *tls.Config, nc net.Conn) *tls.Config {
	d, ok := nc.(*dbgConn)
	if !ok {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.KeyLogWriter = &d.keys
	return cfg
}

func (d *dbgConn) Read(p []byte) (int, error) {
	n, err := d.Conn.Read(p)
	d.r.Add(int64(n))
	return n, err
}

func (d *dbgConn) Write(p []byte) (int, error) {
	n, err := d.Conn.Write(p)
	d.w.Add(int64(n))
	return n, err
}

func dbgWrapConn(nc net.Conn) net.Conn { return &dbgConn{Conn: nc} }

func (c *Conn) dbgDetached(nc net.Conn) net.Conn {
	d, ok := nc.(*dbgConn)
	if !ok {
		return nc
	}
	c.dbg.bw, c.dbg.br = d.w.Load(), d.r.Load()
	c.dbg.keys = &d.keys
	return d.Conn
}

// dbgStream is one direction of one socket.
type dbgStream struct {
	key string

	mu       sync.Mutex
	sender   string
	receiver string
	base     int64      // stream offset of buf[0]
	buf      []byte     // produced bytes from base on
	handed   int64      // offset up to which the sender handed bytes to the socket
	fed      int64      // offset up to which the receiver fed its tls.Conn; -1: no receiver (yet)
	sent     bool       // the sender attached
	gone     int        // sides closed
	lost     bool       // bytes were dropped before a receiver came: it is not checked
	open     *dbgOpener // opens the sender's records as they are produced (nil: cannot)
	ev       [512]dbgEvent
	nev      int
}

type dbgEvent struct {
	what, path string
	off        int64
	n          int
	t          int64
	g          int64 // the goroutine
	seq        int64 // fed: the reader's tls.Conn's next read sequence number before the feed (-1: none)
	raw        int   // fed: bytes its tls.Conn held unread (a partial record) before the feed
}

var dbgStreams = struct {
	sync.Mutex
	m map[string]*dbgStream
}{m: map[string]*dbgStream{}}

func dbgKey(from, to net.Addr) string { return from.String() + ">" + to.String() }

// dbgStreamFor returns the stream of key, a fresh one when the side
// attaching finds its own side of an older stream (a reused port).
func dbgStreamFor(key string, sender bool) *dbgStream {
	dbgStreams.Lock()
	defer dbgStreams.Unlock()
	s := dbgStreams.m[key]
	if s != nil {
		s.mu.Lock()
		stale := sender && s.sent || !sender && s.fed >= 0
		s.mu.Unlock()
		if stale {
			s = nil
		}
	}
	if s == nil {
		s = &dbgStream{key: key, fed: -1}
		dbgStreams.m[key] = s
	}
	return s
}

func (c *Conn) dbgOpen() {
	if c.gc == nil {
		return
	}
	local, remote := c.ad.LocalAddr(), c.ad.RemoteAddr()
	c.dbg.name = fmt.Sprintf("conn %s>%s (outbound %v)", local, remote, c.outbound)
	out := dbgStreamFor(dbgKey(local, remote), true)
	out.mu.Lock()
	out.sender = c.dbg.name
	out.sent = true
	out.base, out.handed = c.dbg.bw, c.dbg.bw
	out.open = newOpener(c)
	out.mu.Unlock()
	in := dbgStreamFor(dbgKey(remote, local), false)
	in.mu.Lock()
	in.receiver = c.dbg.name
	in.fed = c.dbg.br
	in.mu.Unlock()
	c.dbg.out, c.dbg.in = out, in
}

func (c *Conn) dbgClose() {
	for _, s := range []*dbgStream{c.dbg.out, c.dbg.in} {
		if s == nil {
			continue
		}
		s.mu.Lock()
		s.gone++
		done := s.gone == 2 || !s.sent || s.fed < 0
		s.mu.Unlock()
		if done {
			dbgStreams.Lock()
			if dbgStreams.m[s.key] == s {
				delete(dbgStreams.m, s.key)
			}
			dbgStreams.Unlock()
		}
	}
}

func (s *dbgStream) event(what, path string, off int64, n int) {
	s.ev[s.nev%len(s.ev)] = dbgEvent{what, path, off, n, monoNow(), goid(), -1, 0}
	s.nev++
}

// trim drops the bytes both sides are done with. s.mu held.
func (s *dbgStream) trim() {
	upto := s.handed
	if s.fed >= 0 {
		upto = min(upto, s.fed)
	} else if upto-s.base < 256<<20 {
		return // keep them for a receiver that attaches late
	} else {
		s.lost = true
	}
	drop := upto - s.base
	if drop < 4<<20 || drop < int64(len(s.buf))/2 {
		return
	}
	n := copy(s.buf, s.buf[drop:])
	s.buf = s.buf[:n]
	s.base = upto
}

func (c *Conn) swapOutput(spare []byte) []byte {
	c.dbg.swapMu.Lock()
	defer c.dbg.swapMu.Unlock()
	b := c.ad.SwapOutput(spare)
	if s := c.dbg.out; s != nil && len(b) > 0 {
		s.mu.Lock()
		off := s.base + int64(len(s.buf))
		s.event("produced", "", off, len(b))
		s.buf = append(s.buf, b...)
		if s.open != nil {
			if err := s.open.feed(b, off); err != nil {
				s.fail("the sender's tls.Conn produced a record that does not open: "+err.Error(), off, nil)
			}
		}
		s.mu.Unlock()
	}
	return b
}

// dbgHanded checks b, given to the socket by path, against the produced
// bytes at the handed offset.
func (c *Conn) dbgHanded(path string, b []byte) {
	s := c.dbg.out
	if s == nil || len(b) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.handed
	s.event("handed", path, off, len(b))
	i := off - s.base
	end := i + int64(len(b))
	if i < 0 || end > int64(len(s.buf)) || !bytes.Equal(s.buf[i:end], b) {
		s.fail(fmt.Sprintf("%s handed %d bytes at offset %d that are not the produced ones", path, len(b), off), off, b)
	}
	s.handed += int64(len(b))
	s.trim()
}

// dbgFed checks in, offered to c's tls.Conn, against what the peer produced.
func (c *Conn) dbgFed(onLoop bool, in []byte) {
	s := c.dbg.in
	if s == nil || len(in) == 0 {
		return
	}
	who := readerName(onLoop)
	if onLoop == c.readerAway() {
		c.dbgPanic(fmt.Sprintf("%s fed its tls.Conn while the read duty is %#x", who, c.duty.Load()))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	off := s.fed
	if off < 0 {
		return
	}
	s.event("fed", who, off, len(in))
	c.dbg.fedEnd = off + int64(len(in))
	c.dbg.fedPass = true
	// A close asked for changes nothing here: until the conn is closing
	// (when no pass starts) every fed byte is read in order, the handler
	// offered none of it (offer). A pass that stops in its input for good
	// (dropFeed) is the last one.
	seq, raw, known := tlsInState(c.tc)
	if known {
		e := &s.ev[(s.nev-1)%len(s.ev)]
		e.seq, e.raw = int64(seq), raw
	}
	if known && s.open != nil && s.open.synced {
		// The record tls.Conn opens next starts raw bytes before off: the
		// sender sealed one there, with that sequence number.
		at := off - int64(raw)
		want, ok := s.open.seqAt(at)
		switch {
		case !ok && len(s.open.starts) > 0 && at > s.open.starts[0].off:
			s.fail(fmt.Sprintf("the %s's tls.Conn holds %d bytes of a record it takes to start at %d (seq %d), where the sender sealed none: input went missing or was read twice", who, raw, at, seq), off, nil)
		case ok && want != seq:
			s.fail(fmt.Sprintf("the %s's tls.Conn will open the record at %d as seq %d; the sender sealed it as seq %d", who, at, seq, want), off, nil)
		}
	}
	s.fed += int64(len(in))
	if !s.sent || s.lost {
		return
	}
	b := in
	if skip := s.base - off; skip > 0 { // read ahead in blocking mode, or never produced here
		if skip >= int64(len(b)) {
			return
		}
		b, off = b[skip:], s.base
	}
	i := off - s.base
	end := i + int64(len(b))
	if end > int64(len(s.buf)) || !bytes.Equal(s.buf[i:end], b) {
		s.fail(fmt.Sprintf("the %s of %s fed %d bytes at offset %d that are not the ones %s produced", who, s.receiver, len(b), off, s.sender), off, b)
	}
	s.trim()
}

// fail panics with what went wrong, where the bytes given came from in the
// produced stream, and the stream's recent events. s.mu held.
var dbgFailMu sync.Mutex // the first failure prints alone; later ones wait for the process to end

func (s *dbgStream) fail(what string, off int64, got []byte) {
	dbgFailMu.Lock()
	var w strings.Builder
	fmt.Fprintf(&w, "meshdebug: stream %s: %s\n", s.key, what)
	fmt.Fprintf(&w, "  sender %s, receiver %s; produced [%d, %d), handed %d, fed %d\n",
		s.sender, s.receiver, s.base, s.base+int64(len(s.buf)), s.handed, s.fed)
	if s.open != nil {
		fmt.Fprintf(&w, "  the sender's records opened here: %d (next seq %d, synced %v), up to offset %d\n", s.open.records, s.open.seq, s.open.synced, s.open.off)
	} else {
		fmt.Fprintf(&w, "  the sender's records are not opened here (no key or not AES-GCM)\n")
	}
	i := off - s.base
	first := -1
	for k := range got {
		j := i + int64(k)
		if j < 0 || j >= int64(len(s.buf)) || s.buf[j] != got[k] {
			first = k
			break
		}
	}
	fmt.Fprintf(&w, "  first differing byte: +%d (offset %d)\n", first, off+int64(max(first, 0)))
	if first >= 0 {
		probe := got[first:min(len(got), first+48)]
		if len(probe) >= 16 {
			at := -1
			for from := 0; ; {
				k := bytes.Index(s.buf[from:], probe)
				if k < 0 {
					break
				}
				at = from + k
				fmt.Fprintf(&w, "  the bytes given there are produced at offset %d (%+d)\n", s.base+int64(at), s.base+int64(at)-(off+int64(first)))
				from = at + 1
				if from >= len(s.buf) {
					break
				}
			}
			if at < 0 {
				fmt.Fprintf(&w, "  the bytes given there are nowhere in the produced window\n")
			}
		}
	}
	fmt.Fprintf(&w, "  last events (oldest first):\n")
	n := min(s.nev, len(s.ev))
	for k := s.nev - n; k < s.nev; k++ {
		e := s.ev[k%len(s.ev)]
		fmt.Fprintf(&w, "    %12d g%-6d %-8s %-8s [%d, %d) %d", e.t, e.g, e.what, e.path, e.off, e.off+int64(e.n), e.n)
		if e.seq >= 0 {
			fmt.Fprintf(&w, "  tls in seq %d, %d bytes pending", e.seq, e.raw)
			if s.open != nil {
				want, ok := s.open.seqAt(e.off - int64(e.raw))
				fmt.Fprintf(&w, " (sealed seq there %d, known %v)", want, ok)
			}
		}
		fmt.Fprintln(&w)
	}
	msg := w.String()
	buf := make([]byte, 8<<20)
	fmt.Fprintf(os.Stderr, "%s\n%s\n", msg, buf[:runtime.Stack(buf, true)])
	panic(msg)
}

func (c *Conn) dbgPanic(what string) {
	msg := fmt.Sprintf("meshdebug: %s: %s", c.dbg.name, what)
	buf := make([]byte, 1<<20)
	fmt.Fprintf(os.Stderr, "%s\n%s\n", msg, buf[:runtime.Stack(buf, true)])
	panic(msg)
}

// dbgGnetWrote notes, after a gnet Write (on the loop), that gnet may hold
// unsent bytes.
func (c *Conn) dbgGnetWrote() {
	if !c.reached(socketClosed) && c.gc.OutboundBuffered() > 0 {
		c.dbg.gnetDirty.Store(true)
	}
}

// dbgGnetEmpty notes that the loop found gnet's buffer empty (where it sets
// direct).
func (c *Conn) dbgGnetEmpty() { c.dbg.gnetDirty.Store(false) }

// dbgBesideGnet checks, on the loop before writing beside a holder, that
// gnet holds nothing unsent.
func (c *Conn) dbgBesideGnet() {
	if n := c.gc.OutboundBuffered(); n > 0 {
		c.dbgPanic(fmt.Sprintf("the loop writes beside a holder with %d bytes in gnet's buffer", n))
	}
}

func (c *Conn) dbgWriteEnter(path string) {
	if path == "direct" && c.dbg.gnetDirty.Load() {
		c.dbgPanic("a direct write while gnet may hold unsent bytes")
	}
	if n := c.dbg.writers.Add(1); n != 1 {
		other := writePaths[c.dbg.writePath.Load()]
		c.dbgPanic(fmt.Sprintf("%s's write section overlaps %d other(s) (%s): two holders of the drain token", path, n-1, other))
	}
	for i, p := range writePaths {
		if p == path {
			c.dbg.writePath.Store(int32(i))
		}
	}
}

// dbgTokenHeld checks that the drain token is taken where a drain begins
// (where): a drain with the token free could run beside a sender that won
// it and writes directly, the start-up race handToLoop closed.
func (c *Conn) dbgTokenHeld(where string) {
	if !c.scheduled.Load() {
		c.dbgPanic(where + " runs with the drain token free")
	}
}

var writePaths = [...]string{"?", "loop", "direct", "beside", "close"}

func (c *Conn) dbgWriteLeave() { c.dbg.writers.Add(-1) }

func readerName(onLoop bool) string {
	if onLoop {
		return "loop"
	}
	return "holder"
}

var readerNames = [2]string{"holder", "loop"}

func (c *Conn) dbgReadEnter(onLoop bool) {
	who := readerName(onLoop)
	if n := c.dbg.readers.Add(1); n != 1 {
		c.dbgPanic(fmt.Sprintf("the %s reads while %d other reader(s) do (%v); duty %#x", who, n-1, deref(c.dbg.readWho.Load()), c.duty.Load()))
	}
	if onLoop {
		c.dbg.readWho.Store(&readerNames[1])
	} else {
		c.dbg.readWho.Store(&readerNames[0])
		c.dbgHolderEvent("hold")
	}
}

func (c *Conn) dbgReadLeave() {
	if c.dbg.readWho.Load() == &readerNames[0] {
		c.dbgHolderEvent("unhold")
	}
	c.dbg.readers.Add(-1)
}

// dbgHolderEvent notes a holder's start or end in its conn's input stream.
func (c *Conn) dbgHolderEvent(what string) {
	if s := c.dbg.in; s != nil {
		s.mu.Lock()
		s.event(what, "holder", s.fed, 0)
		s.mu.Unlock()
	}
}

func deref(p *string) string {
	if p == nil {
		return "?"
	}
	return *p
}

// dbgReadFailed panics, with the stream's history, when tls.Conn fails to
// open a record the checks saw arrive intact.
func (c *Conn) dbgReadFailed(onLoop bool, err error) {
	// A close asked for is no excuse: the conn reads on, in order, until
	// it is closing (offer). Excusing it hid a pass that saw the close,
	// dropped the rest of its input, and let the next pass read behind
	// the hole.
	if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "remote error") {
		return // the peer's own read failed first: it reports
	}
	s := c.dbg.in
	if s == nil {
		c.dbgPanic(fmt.Sprintf("the %s's read failed (%v); the stream is not followed", readerName(onLoop), err))
	}
	seq, raw, _ := tlsInState(c.tc)
	s.mu.Lock()
	defer s.mu.Unlock()
	var sealed string
	if s.open != nil {
		// The failed record was taken from the raw input: it ends raw bytes before fed.
		for _, st := range s.open.starts {
			if st.seq == seq {
				sealed = fmt.Sprintf("; the sender sealed seq %d at offset %d", seq, st.off)
			}
		}
	}
	s.fail(fmt.Sprintf("the %s's read failed: %v (tls in seq %d, %d bytes after the failed record%s; sender attached %v, lost %v)", readerName(onLoop), err, seq, raw, sealed, s.sent, s.lost), s.fed, nil)
}

// dbgOpener opens a conn's TLS 1.3 records with its write secret (from
// the key log), in order, to tell a record tls.Conn sealed wrong (or out
// of order) from one the peer's state cannot open. AES-GCM suites only.
type dbgOpener struct {
	aead    cipher.AEAD
	iv      []byte
	seq     uint64
	synced  bool   // the first record found its sequence number
	partial []byte // an incomplete record's bytes
	starts  []dbgRecStart
	records uint64
	off     int64 // stream offset of partial[0]
}

func newOpener(c *Conn) *dbgOpener {
	if c.dbg.keys == nil {
		return nil
	}
	label := "SERVER_TRAFFIC_SECRET_0"
	if c.outbound {
		label = "CLIENT_TRAFFIC_SECRET_0"
	}
	secret := c.dbg.keys.get(label)
	if secret == nil {
		return nil
	}
	var h func() hash.Hash
	var keyLen int
	switch c.tc.ConnectionState().CipherSuite {
	case tls.TLS_AES_128_GCM_SHA256:
		h, keyLen = sha256.New, 16
	case tls.TLS_AES_256_GCM_SHA384:
		h, keyLen = sha512.New384, 32
	default:
		return nil
	}
	key, iv := expandLabel(h, secret, "key", keyLen), expandLabel(h, secret, "iv", 12)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil
	}
	return &dbgOpener{aead: aead, iv: iv, off: c.dbg.bw}
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context.
func expandLabel(h func() hash.Hash, secret []byte, label string, n int) []byte {
	var info []byte
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(len("tls13 ")+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(h, secret, string(info), n)
	if err != nil {
		panic(err)
	}
	return out
}

func (o *dbgOpener) nonce(seq uint64) []byte {
	n := append([]byte(nil), o.iv...)
	for i := range 8 {
		n[len(n)-1-i] ^= byte(seq >> (8 * i))
	}
	return n
}

// feed opens the complete records of b (produced at stream offset off).
func (o *dbgOpener) feed(b []byte, off int64) error {
	if o.off+int64(len(o.partial)) != off {
		return fmt.Errorf("opener at %d given bytes at %d", o.off+int64(len(o.partial)), off)
	}
	o.partial = append(o.partial, b...)
	for len(o.partial) >= 5 {
		n := int(o.partial[3])<<8 | int(o.partial[4])
		if len(o.partial) < 5+n {
			break
		}
		rec := o.partial[:5+n]
		if rec[0] != 23 || rec[1] != 3 || rec[2] != 3 {
			return fmt.Errorf("record %d at %d: header % x", o.records, o.off, rec[:5])
		}
		if !o.synced {
			found := false
			for s := range uint64(4096) {
				if _, err := o.aead.Open(nil, o.nonce(s), rec[5:], rec[:5]); err == nil {
					o.seq, o.synced, found = s, true, true
					break
				}
			}
			if !found {
				return fmt.Errorf("the first record (at %d, %d bytes) opens with no sequence number under 4096", o.off, n)
			}
		}
		if _, err := o.aead.Open(nil, o.nonce(o.seq), rec[5:], rec[:5]); err != nil {
			ahead := -1
			for d := uint64(1); d < 64; d++ {
				if _, err := o.aead.Open(nil, o.nonce(o.seq+d), rec[5:], rec[:5]); err == nil {
					ahead = int(d)
					break
				}
			}
			return fmt.Errorf("record %d (seq %d) at offset %d, %d bytes: %v (opens at seq+%d; -1: not within 63)", o.records, o.seq, o.off, n, err, ahead)
		}
		o.starts = append(o.starts, dbgRecStart{o.off, o.seq})
		if len(o.starts) > 1<<14 {
			o.starts = append(o.starts[:0], o.starts[len(o.starts)-1<<13:]...)
		}
		o.seq++
		o.records++
		o.off += int64(5 + n)
		o.partial = o.partial[5+n:]
	}
	o.partial = append([]byte(nil), o.partial...)
	return nil
}

type dbgRecStart struct {
	off int64
	seq uint64
}

// seqAt returns the sequence number of the record starting at off.
func (o *dbgOpener) seqAt(off int64) (uint64, bool) {
	if off == o.off {
		return o.seq, true // the next record, not complete yet
	}
	st := o.starts
	i := sort.Search(len(st), func(i int) bool { return st[i].off >= off })
	if i < len(st) && st[i].off == off {
		return st[i].seq, true
	}
	return 0, false
}

// tlsInState reads tc's next read sequence number and the bytes its raw
// input holds, from unexported fields of crypto/tls (in.seq, rawInput:
// Go 1.26); ok is false when they are not there. The reader only.
func tlsInState(tc *tls.Conn) (seq uint64, raw int, ok bool) {
	v := reflect.ValueOf(tc).Elem()
	in, rf := v.FieldByName("in"), v.FieldByName("rawInput")
	if !in.IsValid() || !rf.IsValid() || rf.Type() != reflect.TypeFor[bytes.Buffer]() {
		return 0, 0, false
	}
	sf := in.FieldByName("seq")
	if !sf.IsValid() || sf.Type() != reflect.TypeFor[[8]byte]() {
		return 0, 0, false
	}
	b := *(*[8]byte)(unsafe.Pointer(sf.UnsafeAddr()))
	rb := (*bytes.Buffer)(unsafe.Pointer(rf.UnsafeAddr()))
	return binary.BigEndian.Uint64(b[:]), rb.Len(), true
}

func (c *Conn) dbgUnread() int { return c.ad.Unread() }

// dbgDrained checks, where a read pass stops because the adapter says
// tls.Conn would block (Drained), that c's tls.Conn holds nothing it could
// return or open: no raw input, no plaintext, no partial handshake
// message.
func (c *Conn) dbgDrained(onLoop bool) {
	c.dbgUnreadSame(0, "a read pass the adapter called drained")
	raw, plain, hand, ok := tlsHeld(c.tc)
	if ok && raw+plain+hand != 0 {
		c.dbgPanic(fmt.Sprintf("the %s's read pass stopped as drained with its tls.Conn holding %d raw bytes, %d plaintext bytes, %d handshake bytes", readerName(onLoop), raw, plain, hand))
	}
}

// tlsHeld reads how many bytes tc holds in its raw input, its decrypted
// input and its handshake buffer, from unexported fields of crypto/tls
// (rawInput, input, hand: Go 1.26); ok is false when they are not there.
// The reader only.
func tlsHeld(tc *tls.Conn) (raw, plain, hand int, ok bool) {
	v := reflect.ValueOf(tc).Elem()
	rf, inf, hf := v.FieldByName("rawInput"), v.FieldByName("input"), v.FieldByName("hand")
	if !rf.IsValid() || !inf.IsValid() || !hf.IsValid() ||
		rf.Type() != reflect.TypeFor[bytes.Buffer]() || hf.Type() != reflect.TypeFor[bytes.Buffer]() ||
		inf.Type() != reflect.TypeFor[bytes.Reader]() {
		return 0, 0, 0, false
	}
	raw = (*bytes.Buffer)(unsafe.Pointer(rf.UnsafeAddr())).Len()
	plain = (*bytes.Reader)(unsafe.Pointer(inf.UnsafeAddr())).Len()
	hand = (*bytes.Buffer)(unsafe.Pointer(hf.UnsafeAddr())).Len()
	return raw, plain, hand, true
}

// dbgUnreadSame panics when the fed input left unread is not want after
// the step named.
func (c *Conn) dbgUnreadSame(want int, after string) {
	if u := c.ad.Unread(); u != want {
		c.dbgPanic(fmt.Sprintf("after %s the adapter holds %d unread fed bytes; want %d (duty %#x)", after, u, want, c.duty.Load()))
	}
}

// dbgFedDone checks, after a read pass used up its feed, that c's tls.Conn
// holds exactly the bytes after the last record it opened: the records the
// sender sealed tell where that one ended.
func (c *Conn) dbgFedDone(onLoop bool) {
	s := c.dbg.in
	if s == nil || !c.dbg.fedPass {
		return
	}
	c.dbg.fedPass = false
	seq, raw, known := tlsInState(c.tc)
	if !known {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil || !s.sent || s.lost || s.fed < 0 {
		return
	}
	start, ok := int64(0), false
	if seq == s.open.seq {
		start, ok = s.open.off, true
	} else {
		for _, st := range s.open.starts {
			if st.seq == seq {
				start, ok = st.off, true
			}
		}
	}
	s.event("done", readerName(onLoop), c.dbg.fedEnd, 0)
	e := &s.ev[(s.nev-1)%len(s.ev)]
	e.seq, e.raw = int64(seq), raw
	if ok && c.dbg.fedEnd-start != int64(raw) {
		s.fail(fmt.Sprintf("after the %s's read pass its tls.Conn is at seq %d (sealed at %d) with %d bytes unread, fed up to %d: %d bytes went missing",
			readerName(onLoop), seq, start, raw, c.dbg.fedEnd, c.dbg.fedEnd-start-int64(raw)), c.dbg.fedEnd, nil)
	}
}

// goid is the calling goroutine's id (from its stack's first line).
func goid() int64 {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := strings.Fields(string(b[:n]))
	if len(f) < 2 {
		return -1
	}
	var id int64
	fmt.Sscan(f[1], &id)
	return id
}
