package groups

// Frames. Every PID in a frame belongs to its sender, so only its
// incarnation and id travel.
//
//	snapshot: 1, uvarint groups, per group: uvarint len, name,
//	          uvarint members, per member: uvarint incarnation, uvarint id
//	ops:      2, uvarint ops, per op: kind (1 join, 2 leave), uvarint len,
//	          name, uvarint incarnation, uvarint id

import (
	"encoding/binary"
	"fmt"

	"github.com/meshrt/mesh/codec"
)

const (
	frameSnapshot byte = 1
	frameOps      byte = 2
)

type opKind byte

const (
	opJoin  opKind = 1
	opLeave opKind = 2
)

type op struct {
	kind  opKind
	group string
	pid   codec.PID
}

// IsSnapshot reports whether frame is a snapshot (for Merge) rather than an
// ops frame (for Handle). It does not validate the frame.
func IsSnapshot(frame []byte) bool { return len(frame) > 0 && frame[0] == frameSnapshot }

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeOps(b []byte, ops []op) []byte {
	b = append(b, frameOps)
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, o := range ops {
		b = append(b, byte(o.kind))
		b = appendStr(b, o.group)
		b = binary.AppendUvarint(b, o.pid.Incarnation)
		b = binary.AppendUvarint(b, o.pid.ID)
	}
	return b
}

func encodeSnapshot(own map[string]set) []byte {
	b := []byte{frameSnapshot}
	b = binary.AppendUvarint(b, uint64(len(own)))
	for g, s := range own {
		b = appendStr(b, g)
		b = binary.AppendUvarint(b, uint64(len(s)))
		for pid := range s {
			b = binary.AppendUvarint(b, pid.Incarnation)
			b = binary.AppendUvarint(b, pid.ID)
		}
	}
	return b
}

// dec reads a frame; the first error sticks.
type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint at %d", ErrMalformed, d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *dec) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *dec) group() string {
	n := d.u()
	if d.err != nil {
		return ""
	}
	if n == 0 || n > MaxGroupName || n > uint64(len(d.b)-d.off) {
		d.err = fmt.Errorf("%w: group name of %d bytes", ErrMalformed, n)
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

// count reads a count that each element of at least min bytes must fit.
func (d *dec) count(min int) int {
	n := d.u()
	if d.err == nil && n > uint64(len(d.b)-d.off)/uint64(min) {
		d.err = fmt.Errorf("%w: %d elements in %d bytes", ErrMalformed, n, len(d.b)-d.off)
	}
	return int(n)
}

func (d *dec) end() error {
	if d.err == nil && d.off != len(d.b) {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b)-d.off)
	}
	return d.err
}

func decodeOps(frame []byte, from string) ([]op, error) {
	d := dec{b: frame}
	if d.byte() != frameOps && d.err == nil {
		return nil, fmt.Errorf("%w: not an ops frame", ErrMalformed)
	}
	n := d.count(4)
	var ops []op
	for i := 0; i < n && d.err == nil; i++ {
		k := opKind(d.byte())
		g := d.group()
		pid := codec.PID{Node: from, Incarnation: d.u(), ID: d.u()}
		if d.err == nil && k != opJoin && k != opLeave {
			d.err = fmt.Errorf("%w: op kind %d", ErrMalformed, k)
		}
		ops = append(ops, op{kind: k, group: g, pid: pid})
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return ops, nil
}

func decodeSnapshot(frame []byte, from string, limit int) (map[string]set, int, error) {
	d := dec{b: frame}
	if d.byte() != frameSnapshot && d.err == nil {
		return nil, 0, fmt.Errorf("%w: not a snapshot", ErrMalformed)
	}
	groups := d.count(3)
	m := make(map[string]set)
	total := 0
	for i := 0; i < groups && d.err == nil; i++ {
		g := d.group()
		n := d.count(2)
		if d.err != nil {
			break
		}
		if _, dup := m[g]; dup {
			d.err = fmt.Errorf("%w: group %q twice", ErrMalformed, g)
			break
		}
		if total += n; total > limit {
			return nil, 0, fmt.Errorf("%w: snapshot of %s holds over %d memberships", ErrLimit, from, limit)
		}
		s := make(set, n)
		for j := 0; j < n && d.err == nil; j++ {
			s[codec.PID{Node: from, Incarnation: d.u(), ID: d.u()}] = struct{}{}
		}
		if len(s) > 0 {
			m[g] = s
		}
	}
	if err := d.end(); err != nil {
		return nil, 0, err
	}
	total = 0
	for _, s := range m {
		total += len(s)
	}
	return m, total, nil
}
