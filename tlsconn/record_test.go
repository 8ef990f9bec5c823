package tlsconn

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
)

// recordEnds is the reference framing: the offsets at which wire's whole
// records end.
func recordEnds(wire []byte) []int {
	var ends []int
	for at := 0; at+recordHeaderLen <= len(wire); {
		at += recordHeaderLen + int(binary.BigEndian.Uint16(wire[at+3:]))
		if at > len(wire) {
			break
		}
		ends = append(ends, at)
	}
	return ends
}

// passResult is what one read pass over a feed did.
type passResult struct {
	got     []string // each Read's plaintext
	reads   int      // tls.Conn Reads made
	drained bool     // the pass stopped on Drained, not on ErrWouldBlock
	err     error    // the error other than ErrWouldBlock that ended it
}

// readPass feeds in and reads srv as the event loop does (loop.readTLS):
// until ErrWouldBlock, or until a Read that returned plaintext into a
// buffer of bufSize it did not fill leaves the adapter Drained. Drained's
// claim is checked: another Read must then return ErrWouldBlock.
func readPass(t *testing.T, srv *tls.Conn, sa *Adapter, in []byte, bufSize int) passResult {
	t.Helper()
	sa.Feed(in)
	buf := make([]byte, bufSize)
	var r passResult
	for {
		n, err := srv.Read(buf)
		r.reads++
		if n > 0 {
			r.got = append(r.got, string(buf[:n]))
		}
		if err != nil {
			if !IsWouldBlock(err) {
				r.err = err
			}
			break
		}
		if n < len(buf) && sa.Drained() {
			r.drained = true
			if m, err := srv.Read(buf); m != 0 || !IsWouldBlock(err) {
				t.Fatalf("a Read after Drained returned %d bytes, %v; want ErrWouldBlock", m, err)
			}
			break
		}
	}
	if u := sa.Unread(); u != 0 && r.err == nil {
		t.Fatalf("the pass left %d fed bytes unread", u)
	}
	sa.Feed(nil)
	return r
}

// The read path's rule, case by case: the client writes each message as a
// record of its own, the wire is cut into feeds at the points given, and
// each feed is read as the event loop reads it.
func TestDrainedSavesTheWouldBlockRead(t *testing.T) {
	// at(i, k) is the wire offset k bytes into record i (k < 0: before
	// its start, into the record before).
	type cut struct{ rec, k int }
	cases := []struct {
		name        string
		msgs        []string
		closeNotify bool // the client closes after its messages
		bufSize     int  // the Read buffer; 0: 32 KiB, more than a record's plaintext
		cuts        []cut
		want        []passResult
	}{
		{
			name: "a feed that ends on a record boundary needs one Read",
			msgs: []string{"ping"},
			want: []passResult{{got: []string{"ping"}, reads: 1, drained: true}},
		},
		{
			name: "a feed of two whole records needs a Read each and no more",
			msgs: []string{"a", "b"},
			want: []passResult{{got: []string{"a", "b"}, reads: 2, drained: true}},
		},
		{
			name: "a feed holding two records and half of a third reads the two, then hands tls.Conn the half and would block",
			msgs: []string{"a", "b", "ccccccccccccccccccccccccccccc"},
			cuts: []cut{{2, 20}},
			want: []passResult{
				{got: []string{"a", "b"}, reads: 3},
				{got: []string{"ccccccccccccccccccccccccccccc"}, reads: 1, drained: true},
			},
		},
		{
			name: "a partial header is taken by tls.Conn, and the rest of the record completes it",
			msgs: []string{"a"},
			cuts: []cut{{0, 3}},
			want: []passResult{{reads: 1}, {got: []string{"a"}, reads: 1, drained: true}},
		},
		{
			name: "a header cut inside its length field",
			msgs: []string{"a"},
			cuts: []cut{{0, 4}},
			want: []passResult{{reads: 1}, {got: []string{"a"}, reads: 1, drained: true}},
		},
		{
			name: "a feed that ends right after a header",
			msgs: []string{"a"},
			cuts: []cut{{0, recordHeaderLen}},
			want: []passResult{{reads: 1}, {got: []string{"a"}, reads: 1, drained: true}},
		},
		{
			name: "a record one byte short, then its last byte and a whole record",
			msgs: []string{"a", "b"},
			cuts: []cut{{1, -1}},
			want: []passResult{{reads: 1}, {got: []string{"a", "b"}, reads: 2, drained: true}},
		},
		{
			name: "a feed cut at every record boundary needs one Read per feed",
			msgs: []string{"a", "b", "c"},
			cuts: []cut{{1, 0}, {2, 0}},
			want: []passResult{
				{got: []string{"a"}, reads: 1, drained: true},
				{got: []string{"b"}, reads: 1, drained: true},
				{got: []string{"c"}, reads: 1, drained: true},
			},
		},
		{
			name:        "close_notify after data in the same feed is read, and EOF seen",
			msgs:        []string{"bye"},
			closeNotify: true,
			want:        []passResult{{got: []string{"bye"}, reads: 2, err: io.EOF}},
		},
		{
			name:        "close_notify in the next feed is read there",
			msgs:        []string{"bye"},
			closeNotify: true,
			cuts:        []cut{{1, 0}},
			want:        []passResult{{got: []string{"bye"}, reads: 1, drained: true}, {reads: 1, err: io.EOF}},
		},
		{
			name:    "plaintext larger than the Read's buffer is not taken for drained while tls.Conn keeps some",
			msgs:    []string{"0123456789"},
			bufSize: 4,
			want:    []passResult{{got: []string{"0123", "4567", "89"}, reads: 3, drained: true}},
		},
		{
			name:    "plaintext that fills the Read's buffer exactly needs the would-block Read",
			msgs:    []string{"01234567"},
			bufSize: 4,
			want:    []passResult{{got: []string{"0123", "4567"}, reads: 3}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli, sa, ca := handshakePair(t)
			sa.Detach()
			ca.Detach()
			for _, m := range tc.msgs {
				if _, err := cli.Write([]byte(m)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.closeNotify {
				if err := cli.Close(); err != nil {
					t.Fatal(err)
				}
			}
			wire := ca.SwapOutput(nil)
			ends := recordEnds(wire)
			records := len(tc.msgs)
			if tc.closeNotify {
				records++
			}
			if len(ends) != records || ends[len(ends)-1] != len(wire) {
				t.Fatalf("the client wrote %d bytes framed as %v: not one record per message", len(wire), ends)
			}
			bufSize := tc.bufSize
			if bufSize == 0 {
				bufSize = 32 << 10
			}
			var got []passResult
			from := 0
			for i := 0; i <= len(tc.cuts); i++ {
				to := len(wire)
				if i < len(tc.cuts) {
					c := tc.cuts[i]
					to = c.k
					if c.rec > 0 {
						to += ends[c.rec-1]
					}
				}
				got = append(got, readPass(t, srv, sa, wire[from:to], bufSize))
				from = to
			}
			for i := range got {
				if i >= len(tc.want) || !passEqual(got[i], tc.want[i]) {
					t.Fatalf("passes:\n got %+v\nwant %+v", got, tc.want)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("passes:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func passEqual(a, b passResult) bool {
	return reflect.DeepEqual(a.got, b.got) && a.reads == b.reads && a.drained == b.drained && errors.Is(a.err, b.err) && (a.err == nil) == (b.err == nil)
}

// trickleConn returns at most 7 bytes per Read and counts them: tls.Conn
// reading through it in blocking mode takes a record and part of the next.
type trickleConn struct {
	net.Conn
	n atomic.Int64
}

func (c *trickleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p[:min(len(p), 7)])
	c.n.Add(int64(n))
	return n, err
}

// What tls.Conn read in blocking mode (the handshake, a hook's read) is
// framed too: a record's rest and part of the next held at Detach are not
// taken for drained, and the feed that completes the next ends a record.
func TestDrainedFollowsWhatBlockingModeRead(t *testing.T) {
	var tc *trickleConn
	srv, cli, sa, ca := handshakePairWith(t, func(nc net.Conn) net.Conn {
		tc = &trickleConn{Conn: nc}
		return tc
	}, nil)
	sock := ca.Detach()
	for _, m := range []string{"one", "two"} {
		if _, err := cli.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	wire := ca.SwapOutput(nil)
	if _, err := sock.Write(wire); err != nil {
		t.Fatal(err)
	}
	before := tc.n.Load()
	one := make([]byte, 1)
	if _, err := io.ReadFull(srv, one); err != nil || one[0] != 'o' {
		t.Fatalf("blocking read: %q, %v", one, err)
	}
	took := int(tc.n.Load() - before)
	ends := recordEnds(wire)
	if took <= ends[0] || took >= ends[1] {
		t.Fatalf("blocking mode took %d bytes of records ending at %v: want the first and part of the second", took, ends)
	}
	raw := sa.Detach()
	rest := make([]byte, len(wire)-took)
	if _, err := io.ReadFull(raw, rest); err != nil {
		t.Fatal(err)
	}
	// The loop's first pass, with no input: the rest of the first record's
	// plaintext, then the would-block Read (the second record is partial).
	if r := readPass(t, srv, sa, nil, 1024); !passEqual(r, passResult{got: []string{"ne"}, reads: 2}) {
		t.Fatalf("first pass: %+v", r)
	}
	if r := readPass(t, srv, sa, rest, 1024); !passEqual(r, passResult{got: []string{"two"}, reads: 1, drained: true}) {
		t.Fatalf("second pass: %+v", r)
	}
}

// Whole records tls.Conn read ahead in blocking mode stay in its raw input
// after Detach: the first loop-fed pass reads them all before it stops.
func TestDrainedIsFalseOverRecordsReadAheadInBlockingMode(t *testing.T) {
	srv, cli, sa, ca := handshakePair(t)
	sock := ca.Detach()
	for _, m := range []string{"one", "two", "three"} {
		if _, err := cli.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sock.Write(ca.SwapOutput(nil)); err != nil { // one write(2): one segment on loopback
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(srv, one); err != nil {
		t.Fatal(err)
	}
	sa.Detach()
	r := readPass(t, srv, sa, nil, 1024)
	// However much of the three records the blocking read took (all of
	// them, in one segment), the pass read all it took: a Read after it
	// finds nothing.
	if r.drained || r.err != nil {
		t.Fatalf("pass over the read-ahead records: %+v", r)
	}
	if n, err := srv.Read(make([]byte, 1024)); n != 0 || !IsWouldBlock(err) {
		t.Fatalf("a Read after the pass returned %d bytes, %v", n, err)
	}
}

// Records that carry no plaintext (post-handshake NewSessionTicket
// messages, sent here because tickets are on) are read through on the way
// to the data; close_notify is still seen.
func TestRecordsWithoutPlaintextAreReadThrough(t *testing.T) {
	srv, cli, sa, ca := handshakePairWith(t, nil, func(s, c *tls.Config) {
		s.SessionTicketsDisabled = false
		c.SessionTicketsDisabled = false
		c.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	})
	// The server writes in blocking mode, then closes: its tickets, the
	// data and close_notify are on the client's socket, or in its
	// tls.Conn (read ahead during the handshake).
	if _, err := srv.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	sock := ca.Detach()
	sa.Detach()
	rest, err := io.ReadAll(sock)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var final error
	for _, in := range [][]byte{nil, rest} {
		r := readPass(t, cli, ca, in, 1024)
		got = append(got, r.got...)
		if r.err != nil {
			final = r.err
			break
		}
	}
	if !reflect.DeepEqual(got, []string{"data"}) || !errors.Is(final, io.EOF) {
		t.Fatalf("got %q, then %v; want [data] and io.EOF", got, final)
	}
}

// Replacing unread fed input (a conn closing drops it) loses the framing:
// Drained stays false from then on, even where the feed dropped ended a
// record.
func TestDrainedIsFalseOnceInputWasDropped(t *testing.T) {
	srv, cli, sa, ca := handshakePair(t)
	sa.Detach()
	ca.Detach()
	for _, m := range []string{"a", "b"} {
		if _, err := cli.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	sa.Feed(ca.SwapOutput(nil))
	buf := make([]byte, 64)
	if n, err := srv.Read(buf); err != nil || string(buf[:n]) != "a" {
		t.Fatalf("read = %q, %v", buf[:n], err)
	}
	sa.Feed(nil) // "b" dropped unread
	if sa.Drained() {
		t.Fatal("Drained after fed input was dropped")
	}
}

// FuzzAdapterFraming feeds arbitrary bytes (the network's: any record
// length, any header) in arbitrary chunks to a loop-fed adapter and reads
// them with arbitrary buffer sizes: every byte comes out once and in
// order; each Read gives exactly the bytes before the feed's last record
// (as many as the buffer holds) or, once those are read, the rest of the
// feed; and at each feed's end Drained tells whether the bytes so far end
// a record.
func FuzzAdapterFraming(f *testing.F) {
	rec := func(n int) []byte {
		return append([]byte{23, 3, 3, byte(n >> 8), byte(n)}, make([]byte, n)...)
	}
	f.Add(append(rec(17), rec(40)...), []byte{3, 60, 2})
	f.Add(append(rec(0), rec(1)...), []byte{1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{23, 3, 3, 0xff, 0xff, 1, 2, 3}, []byte{4, 200})
	f.Add(append(rec(16640), rec(3)...), []byte{5, 255, 0})
	f.Fuzz(func(t *testing.T, data, shape []byte) {
		a := &Adapter{detached: true}
		// The reference framing: where records start and end.
		ends := recordEnds(data)
		boundary := map[int]bool{0: true}
		starts := []int{0}
		for _, e := range ends {
			boundary[e] = true
			if e < len(data) {
				starts = append(starts, e)
			}
		}
		// shape's bytes, in turn: a feed's length (in 1/64ths of data),
		// then the Read buffer sizes; a feed is always read to its end.
		k := 0
		next := func() int {
			if len(shape) == 0 {
				return 255
			}
			v := int(shape[k%len(shape)])
			k++
			return v
		}
		var out []byte
		buf := make([]byte, 256)
		for at := 0; at < len(data); {
			fedEnd := at + min(max(next(), 1)*max(1, len(data)/64), len(data)-at)
			a.Feed(data[at:fedEnd])
			// The feed's last record starts at the last record start
			// before its end, or at its first byte.
			last := at
			if i := sort.SearchInts(starts, fedEnd) - 1; i >= 0 {
				last = max(at, starts[i])
			}
			for {
				size := min(max(next(), 1), len(buf))
				n, err := a.Read(buf[:size])
				if err != nil {
					if !IsWouldBlock(err) || at != fedEnd {
						t.Fatalf("Read at %d (fed to %d): %v", at, fedEnd, err)
					}
					break
				}
				want := min(size, fedEnd-at)
				if at < last {
					want = min(size, last-at)
				}
				if n != want {
					t.Fatalf("Read of %d at %d gave %d bytes; want %d (fed to %d, its last record at %d)", size, at, n, want, fedEnd, last)
				}
				out = append(out, buf[:n]...)
				at += n
			}
			if a.Drained() != boundary[at] {
				t.Fatalf("at %d Drained %v; a record ends there: %v", at, a.Drained(), boundary[at])
			}
		}
		if string(out) != string(data) {
			t.Fatal("the bytes read are not the bytes fed")
		}
	})
}

// BenchmarkReadPass is the event loop's read pass over one fed record of
// 64 bytes of plaintext (the ping-pong's input): Reads until tls.Conn
// would block (what the loop did before the adapter framed records), or
// until the adapter reports Drained.
//
//	go test -run '^$' -bench ReadPass -benchmem ./tlsconn/
func BenchmarkReadPass(b *testing.B) {
	for _, stop := range []string{"wouldblock", "drained"} {
		b.Run("stop="+stop, func(b *testing.B) {
			srv, cli, sa, ca := handshakePair(b)
			sa.Detach()
			ca.Detach()
			msg := make([]byte, 64)
			wires := make([][]byte, b.N)
			for i := range wires {
				if _, err := cli.Write(msg); err != nil {
					b.Fatal(err)
				}
				wires[i] = ca.SwapOutput(nil)
			}
			buf := make([]byte, 32<<10)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				sa.Feed(wires[i])
				for {
					n, err := srv.Read(buf)
					if err != nil {
						if !IsWouldBlock(err) {
							b.Fatal(err)
						}
						break
					}
					if stop == "drained" && n < len(buf) && sa.Drained() {
						break
					}
				}
				sa.Feed(nil)
			}
		})
	}
}

// BenchmarkReadStream is the read side of a one-way stream: 64 KiB of
// plaintext a op, written as 16 KiB records or as 64-byte ones (a record
// per message, the most records a feed can hold), fed in 64 KiB pieces
// (gnet's read size; records are cut at their ends) and read as the event
// loop reads them. Only the reads are timed.
//
//	go test -run '^$' -bench ReadStream -benchmem ./tlsconn/
func BenchmarkReadStream(b *testing.B) {
	for _, size := range []int{16 << 10, 64} {
		b.Run("record="+strconv.Itoa(size), func(b *testing.B) {
			srv, cli, sa, ca := handshakePair(b)
			sa.Detach()
			ca.Detach()
			msg := make([]byte, size)
			buf := make([]byte, 32<<10)
			b.SetBytes(64 << 10)
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				for range (64 << 10) / size {
					if _, err := cli.Write(msg); err != nil {
						b.Fatal(err)
					}
				}
				wire := ca.SwapOutput(nil)
				b.StartTimer()
				for len(wire) > 0 {
					n := min(len(wire), 64<<10)
					sa.Feed(wire[:n])
					wire = wire[n:]
					for {
						m, err := srv.Read(buf)
						if err != nil {
							if !IsWouldBlock(err) {
								b.Fatal(err)
							}
							break
						}
						if m < len(buf) && sa.Drained() {
							break
						}
					}
					sa.Feed(nil)
				}
			}
		})
	}
}
