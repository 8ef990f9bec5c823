package tlsconn

// recordHeaderLen is a TLS record header's size: type, version (2 bytes),
// length (2 bytes).
const recordHeaderLen = 5

// recordCursor follows the TLS record framing of the stream tls.Conn reads
// through the adapter: where the current record ends. The lengths come
// from the network and are used only to count bytes (at most 65535 a
// record; no memory is sized by them); tls.Conn itself rejects a record
// longer than TLS 1.3 allows when it reads that header.
type recordCursor struct {
	hdr  [recordHeaderLen]byte // the current record's header bytes seen so far
	nhdr int                   // how many (0 to 4: a whole header moves to body)
	body int                   // the current record's body bytes still to come
}

// atBoundary reports whether the bytes seen so far end a record (or are
// none).
func (r *recordCursor) atBoundary() bool { return r.nhdr == 0 && r.body == 0 }

// advance moves the cursor past b, the stream's next bytes, and returns
// where in b the last record that b reaches starts: 0 when that is the
// record b's first byte belongs to (b continues the current record up to
// its end or short of it). A record that b ends before the end of its
// header counts: it is b's last.
func (r *recordCursor) advance(b []byte) (last int) {
	at := 0
	for at < len(b) {
		if r.body > 0 {
			k := min(r.body, len(b)-at)
			r.body -= k
			at += k
			continue
		}
		if r.nhdr == 0 {
			last = at
			if len(b)-at >= recordHeaderLen { // a whole header in b
				r.body = int(b[at+3])<<8 | int(b[at+4])
				at += recordHeaderLen
				continue
			}
		}
		k := copy(r.hdr[r.nhdr:], b[at:])
		r.nhdr += k
		at += k
		if r.nhdr == recordHeaderLen {
			r.body = int(r.hdr[3])<<8 | int(r.hdr[4])
			r.nhdr = 0
		}
	}
	return last
}
