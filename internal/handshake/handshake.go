package handshake

// One handshake attempt, as straight-line steps on a per-attempt struct.
//
// Invariants:
//   - The attempt owns the conn for the whole of Run: nothing else reads or
//     writes it meanwhile. Run reads exactly the bytes of its own messages;
//     anything the peer sent after them stays buffered in the *tls.Conn.
//   - Run never sets, moves or clears the conn's deadline: its caller holds
//     it for the whole of TLS and the handshake (loop's engine does), so one
//     owner decides when a connection has taken too long.
//   - The acceptor sends no proof before the dialler's proof has checked,
//     and decides admission only after both proofs have.
//   - A refused notice is sent only where it tells the peer nothing it could
//     not already see (see doc.go); it is best effort and never waited for.

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
)

// Protocol versions this package speaks. Each side advertises the range
// [MinVersion, Version] in its hello; both then pick the highest version
// inside both ranges, so they agree without another message. Disjoint ranges
// end the handshake with ErrVersion on both sides. Version 2 made admission
// a framed message (version 1 sent it as a bare byte after the handshake).
const (
	// Version is the current (highest) protocol version.
	Version uint16 = 2
	// MinVersion is the oldest protocol version still spoken.
	MinVersion uint16 = 2
)

// ExporterLabel is the TLS exporter label whose 32-byte value every proof
// covers (RFC 8446 §7.5); it binds the proof to one TLS connection.
const ExporterLabel = "EXPORTER-mesh-handshake-v1"

// Errors returned by Run, each testable with errors.Is. The error returned
// wraps the sentinel and the cause.
var (
	// ErrAuth: a proof did not check (wrong cookie, or a relay terminating
	// TLS in between), or the peer refused ours.
	ErrAuth = errors.New("handshake: authentication failed")
	// ErrVersion: the two version ranges do not overlap.
	ErrVersion = errors.New("handshake: no common protocol version")
	// ErrUnexpectedPeer: the dialler reached a node whose name is not the
	// one it dialled (also returned to that node, told so by the dialler).
	ErrUnexpectedPeer = errors.New("handshake: peer is not the node dialled")
	// ErrBadHello: a malformed, oversized or unexpected handshake message, a
	// peer name refused by Config.ValidateName, or the peer refusing ours.
	ErrBadHello = errors.New("handshake: malformed handshake message")
	// ErrTimeout: the deadline passed or ctx was cancelled before the
	// handshake finished.
	ErrTimeout = errors.New("handshake: timed out")
	// ErrConfig: Run was called wrongly: nil or invalid Config, or a conn
	// whose TLS 1.3 handshake has not completed.
	ErrConfig = errors.New("handshake: invalid configuration")
	// ErrDuplicate: the acceptor keeps another connection with the dialler
	// (two nodes dialled each other at once); Admission Duplicate.
	ErrDuplicate = errors.New("handshake: duplicate connection")
	// ErrRefused: the acceptor does not take the connection now (it is
	// stopping, or it refuses the peer); Admission Refused.
	ErrRefused = errors.New("handshake: connection refused by peer")
)

// Admission is the acceptor's decision on an authenticated connection,
// the last message of a handshake.
type Admission byte

// Admissions. Every value but these is refused on the wire as ErrBadHello.
const (
	// Admitted: the connection becomes the link between the two nodes.
	Admitted Admission = 1
	// Duplicate: the acceptor keeps a connection of its own choosing.
	Duplicate Admission = 2
	// Refused: the acceptor does not take the connection.
	Refused Admission = 3
)

// Hello is what each side announces before the proofs: the protocol
// versions it speaks, its node name, its incarnation (random per start of a
// node), feature flags, and a fresh 32-byte nonce from crypto/rand.
type Hello struct {
	MinVersion, MaxVersion uint16
	Name                   string
	Incarnation            uint64
	Features               uint64
	Nonce                  [32]byte
}

// Key is the HMAC key both nodes derive from the shared cookie with
// DeriveKey. The zero Key is refused by Run.
type Key [32]byte

// HKDF parameters: fixed, public, and specific to Mesh, so a cookie shared
// with another system yields an unrelated key.
var (
	hkdfSalt = []byte("mesh cookie salt v1")
	hkdfInfo = []byte("mesh handshake hmac-sha256 key v1")
)

// DeriveKey turns the cluster cookie into the handshake key with
// HKDF-SHA256 under a fixed Mesh salt and info. The cookie is the secret: use
// a long random one, since a party that obtains a proof (see the package doc)
// can try guesses offline. DeriveKey is safe from any goroutine.
func DeriveKey(cookie string) Key {
	var k Key
	b, err := hkdf.Key(sha256.New, []byte(cookie), hkdfSalt, string(hkdfInfo), len(k))
	if err != nil {
		// HKDF-SHA256 yields up to 255*32 bytes; 32 cannot fail.
		panic("handshake: hkdf: " + err.Error())
	}
	copy(k[:], b)
	return k
}

// Config is one node's side of a handshake. Run only reads it: one Config
// may serve any number of concurrent Runs if nobody modifies it meanwhile.
type Config struct {
	// Name is this node's name, as the peer will check it (1..MaxNameLen bytes).
	Name string
	// Incarnation identifies this run of the node.
	Incarnation uint64
	// Features is this node's feature bit set; the result holds the bits
	// both sides set.
	Features uint64
	// Key is DeriveKey(cookie). Required.
	Key Key
	// ValidateName, if set, checks the peer's advertised name is well-formed;
	// an error ends the handshake with ErrBadHello wrapping it (so
	// errors.Is also matches the validator's own error).
	ValidateName func(string) error
	// Admit, if set, decides on the acceptor whether a dialler whose proof
	// checked is admitted; nil admits every one. It runs on Run's goroutine
	// after both proofs, before the admission message is sent, and may
	// block within ctx. A Duplicate or Refused decision is sent to the
	// dialler and Run returns ErrDuplicate or ErrRefused on both sides.
	Admit func(ctx context.Context, peer Hello) Admission
}

func (c *Config) check() error {
	switch {
	case c == nil:
		return fmt.Errorf("%w: nil Config", ErrConfig)
	case c.Name == "" || len(c.Name) > MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes, want 1..%d", ErrConfig, len(c.Name), MaxNameLen)
	case c.Key == Key{}:
		return fmt.Errorf("%w: zero Key (use DeriveKey)", ErrConfig)
	}
	return nil
}

// Result is the outcome of a handshake that succeeded.
type Result struct {
	// Peer is the hello the peer sent.
	Peer Hello
	// Version is the protocol version both sides chose.
	Version uint16
	// Features holds the feature bits both sides set (local & peer).
	Features uint64
}

// Run performs the Mesh handshake on conn, as the dialler when dialled is
// not empty (the name of the node it meant to reach, which the peer's
// advertised name must equal) or as the acceptor when dialled is "".
//
// conn must have completed a TLS 1.3 handshake and must block on reads and
// writes. Its deadline is the caller's: Run never sets one, so set one that
// covers the handshake before calling Run, and move it into the past to
// abort (loop's engine does both, from its handshake timeout and ctx). A
// passed deadline ends Run with ErrTimeout; ctx is checked at the start,
// tells a timeout from a cancellation, and is passed to Config.Admit. Run
// starts no goroutine and does not close conn: on error the caller should
// close it.
//
// Run is safe to call from any goroutine, concurrently for different conns;
// nothing else may use conn until it returns.
func Run(ctx context.Context, conn *tls.Conn, cfg *Config, dialled string) (Result, error) {
	return run(ctx, conn, cfg, dialled, MinVersion, Version)
}

// run is Run with the local version range as parameters, so tests can make
// two sides whose ranges do not overlap.
func run(ctx context.Context, conn *tls.Conn, cfg *Config, dialled string, lo, hi uint16) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	if conn == nil {
		return Result{}, fmt.Errorf("%w: nil conn", ErrConfig)
	}
	if st := conn.ConnectionState(); !st.HandshakeComplete || st.Version != tls.VersionTLS13 {
		return Result{}, fmt.Errorf("%w: conn has not completed a TLS 1.3 handshake", ErrConfig)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("%w: before start: %w", ErrTimeout, err)
	}
	a := &attempt{ctx: ctx, conn: conn, cfg: cfg, dialled: dialled, dialler: dialled != ""}
	a.local = Hello{MinVersion: lo, MaxVersion: hi, Name: cfg.Name, Incarnation: cfg.Incarnation, Features: cfg.Features}
	return a.run()
}

// attempt is the state of one handshake.
type attempt struct {
	ctx     context.Context
	conn    *tls.Conn
	cfg     *Config
	dialled string
	dialler bool

	local, peer Hello
	version     uint16
	in          proofInput
	buf         [maxBody]byte // read buffer; bodies alias it until the next read
}

func (a *attempt) run() (Result, error) {
	if err := a.bind(); err != nil {
		return Result{}, err
	}
	if err := a.sendHello(); err != nil {
		return Result{}, err
	}
	if err := a.receiveHello(); err != nil {
		return Result{}, err
	}
	if err := a.checkPeer(); err != nil {
		return Result{}, err
	}
	if err := a.negotiate(); err != nil {
		return Result{}, err
	}
	a.fillProofInput()
	if a.dialler {
		if err := a.sendProof(labelDialler); err != nil {
			return Result{}, err
		}
		if err := a.receiveProof(labelAcceptor); err != nil {
			return Result{}, err
		}
		if err := a.receiveAdmission(); err != nil {
			return Result{}, err
		}
	} else {
		if err := a.receiveProof(labelDialler); err != nil {
			return Result{}, err
		}
		if err := a.proveAndAdmit(); err != nil {
			return Result{}, err
		}
	}
	return Result{Peer: a.peer, Version: a.version, Features: a.local.Features & a.peer.Features}, nil
}

// bind reads the TLS exporter value the proofs cover and draws our nonce.
func (a *attempt) bind() error {
	st := a.conn.ConnectionState()
	ekm, err := st.ExportKeyingMaterial(ExporterLabel, nil, len(a.in.exporter))
	if err != nil {
		return fmt.Errorf("%w: TLS exporter: %w", ErrConfig, err)
	}
	copy(a.in.exporter[:], ekm)
	if _, err := rand.Read(a.local.Nonce[:]); err != nil {
		return fmt.Errorf("handshake: nonce: %w", err)
	}
	return nil
}

func (a *attempt) sendHello() error {
	var b [headerLen + maxHelloBody]byte
	return a.send("sending hello", appendHello(b[:0], &a.local))
}

func (a *attempt) receiveHello() error {
	body, err := a.receive("reading hello", kindHello)
	if err != nil {
		return err
	}
	a.peer, err = decodeHello(body)
	return err
}

// checkPeer refuses a peer presenting this node's own name, applies
// ValidateName, and for the dialler checks the peer is the node dialled. All
// happen before any proof is sent: a proof covers the names, so one made for
// the wrong peer would be worthless anyway.
func (a *attempt) checkPeer() error {
	if a.peer.Name == a.cfg.Name {
		// Admitted, such a peer would speak for this node's own
		// processes: its hang-up would look like theirs going away.
		a.refuse(refusedBadHello)
		return fmt.Errorf("%w: the peer presents this node's own name %q", ErrBadHello, a.peer.Name)
	}
	if v := a.cfg.ValidateName; v != nil {
		if err := v(a.peer.Name); err != nil {
			a.refuse(refusedBadHello)
			return fmt.Errorf("%w: peer name %q: %w", ErrBadHello, a.peer.Name, err)
		}
	}
	if a.dialler && a.peer.Name != a.dialled {
		a.refuse(refusedUnexpectedPeer)
		return fmt.Errorf("%w: dialled %q, reached %q", ErrUnexpectedPeer, a.dialled, a.peer.Name)
	}
	return nil
}

// negotiate picks the highest version in both ranges. Both sides compute the
// same answer from the same two hellos, so no notice is needed on failure.
func (a *attempt) negotiate() error {
	v, ok := commonVersion(a.local.MinVersion, a.local.MaxVersion, a.peer.MinVersion, a.peer.MaxVersion)
	if !ok {
		return fmt.Errorf("%w: we speak %d..%d, %q speaks %d..%d", ErrVersion,
			a.local.MinVersion, a.local.MaxVersion, a.peer.Name, a.peer.MinVersion, a.peer.MaxVersion)
	}
	a.version = v
	return nil
}

// commonVersion returns the highest version in [lo1, hi1] ∩ [lo2, hi2].
func commonVersion(lo1, hi1, lo2, hi2 uint16) (uint16, bool) {
	lo, hi := max(lo1, lo2), min(hi1, hi2)
	if lo > hi {
		return 0, false
	}
	return hi, true
}

func (a *attempt) fillProofInput() {
	d, acc := &a.local, &a.peer
	if !a.dialler {
		d, acc = acc, d
	}
	a.in.diallerNonce, a.in.acceptorNonce = d.Nonce, acc.Nonce
	a.in.diallerName, a.in.acceptorName = d.Name, acc.Name
}

func (a *attempt) sendProof(label string) error {
	p := computeProof(&a.cfg.Key, label, &a.in)
	var b [headerLen + proofLen]byte
	return a.send("sending proof", appendMessage(b[:0], kindProof, p[:]))
}

// receiveProof reads the peer's proof and checks it in constant time. The
// acceptor answers a failure with a refused notice (the dialler, having sent
// a bad proof, learns only that it was refused); the dialler does not: a peer
// that checked our proof with the same key cannot have sent a bad one, so
// the peer is not a conforming node and is owed nothing.
func (a *attempt) receiveProof(label string) error {
	body, err := a.receive("reading proof", kindProof)
	if err != nil {
		return err
	}
	want := computeProof(&a.cfg.Key, label, &a.in)
	if !hmac.Equal(body, want[:]) {
		if !a.dialler {
			a.refuse(refusedAuth)
		}
		return fmt.Errorf("%w: proof from %q does not check", ErrAuth, a.peer.Name)
	}
	return nil
}

// receiveAdmission ends the dialler's handshake: it reads the acceptor's
// decision, and returns ErrDuplicate or ErrRefused for a connection not
// admitted.
func (a *attempt) receiveAdmission() error {
	body, err := a.receive("reading admission", kindAdmission)
	if err != nil {
		return err
	}
	d, err := decodeAdmission(body)
	if err != nil {
		return err
	}
	return admissionError(d, "the peer")
}

// proveAndAdmit ends the acceptor's handshake, the dialler's proof having
// checked: it decides (Config.Admit) and sends its own proof and the
// decision together, one write and one TLS record where two cost a
// record, a syscall and a packet more per link (the dialler reads them as
// two messages, as before). It returns ErrDuplicate or ErrRefused for a
// connection not admitted.
func (a *attempt) proveAndAdmit() error {
	d := Admitted
	if f := a.cfg.Admit; f != nil {
		d = f(a.ctx, a.peer)
	}
	if d != Admitted && d != Duplicate {
		d = Refused
	}
	p := computeProof(&a.cfg.Key, labelAcceptor, &a.in)
	var b [2*headerLen + proofLen + admissionLen]byte
	msg := appendMessage(b[:0], kindProof, p[:])
	msg = appendMessage(msg, kindAdmission, []byte{byte(d)})
	if err := a.send("sending proof and admission", msg); err != nil {
		return err
	}
	return admissionError(d, "this node")
}

// admissionError is the error Run returns for decision d, made by who.
func admissionError(d Admission, who string) error {
	switch d {
	case Admitted:
		return nil
	case Duplicate:
		return fmt.Errorf("%w: %s keeps another connection", ErrDuplicate, who)
	}
	return fmt.Errorf("%w: %s refused it", ErrRefused, who)
}

// receive reads the next message and returns its body if it is of kind
// want. A refused notice becomes the error it stands for.
func (a *attempt) receive(step string, want byte) ([]byte, error) {
	kind, body, err := readMessage(a.conn, &a.buf)
	switch {
	case errors.Is(err, ErrBadHello):
		return nil, err
	case err != nil:
		return nil, a.ioError(step, err)
	case kind == kindRefused:
		return nil, refusedError(refusal(body[0]))
	case kind != want:
		return nil, fmt.Errorf("%w: %s: got message kind %#02x", ErrBadHello, step, kind)
	}
	return body, nil
}

func (a *attempt) send(step string, msg []byte) error {
	if _, err := a.conn.Write(msg); err != nil {
		return a.ioError(step, err)
	}
	return nil
}

// refuse sends a refused notice, best effort: the handshake has failed
// already and a write error adds nothing.
func (a *attempt) refuse(r refusal) {
	var b [headerLen + refusedLen]byte
	_, _ = a.conn.Write(appendMessage(b[:0], kindRefused, []byte{byte(r)}))
}

// ioError classifies an error from the conn: a passed deadline or a
// cancelled ctx is ErrTimeout; anything else (EOF, reset) is returned
// wrapped as it is.
func (a *attempt) ioError(step string, err error) error {
	if ctxErr := a.ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w: %s: %w (%w)", ErrTimeout, step, err, ctxErr)
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %s: %w", ErrTimeout, step, err)
	}
	return fmt.Errorf("handshake: %s: %w", step, err)
}

func refusedError(r refusal) error {
	switch r {
	case refusedAuth:
		return fmt.Errorf("%w: the peer refused our proof", ErrAuth)
	case refusedUnexpectedPeer:
		return fmt.Errorf("%w: the peer says it dialled another node", ErrUnexpectedPeer)
	case refusedBadHello:
		return fmt.Errorf("%w: the peer refused our hello", ErrBadHello)
	}
	return fmt.Errorf("%w: refused with unknown reason %d", ErrBadHello, r)
}

// Reason names the outcome of Run for a counter label: "ok" for nil,
// "auth", "version", "unexpected_peer", "bad_hello", "timeout", "config",
// "duplicate", "refused", or "io" for anything else (the peer closed or
// reset the connection).
// Reason is safe from any goroutine.
func Reason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrAuth):
		return "auth"
	case errors.Is(err, ErrVersion):
		return "version"
	case errors.Is(err, ErrUnexpectedPeer):
		return "unexpected_peer"
	case errors.Is(err, ErrBadHello):
		return "bad_hello"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrConfig):
		return "config"
	case errors.Is(err, ErrDuplicate):
		return "duplicate"
	case errors.Is(err, ErrRefused):
		return "refused"
	}
	return "io"
}
