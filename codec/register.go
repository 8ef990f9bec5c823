package codec

// Invariants of user types:
//   - The registry is copy-on-write: lookups on the encode and decode paths
//     read an immutable snapshot through an atomic pointer, without a lock.
//   - A type's codec is compiled once, when it is registered (or first seen
//     nested inside a registered type), and cached per reflect.Type.
//   - A name maps to exactly one type and a type to exactly one name.

import (
	"cmp"
	"encoding"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Register makes the type of sample known under name, so values of that
// exact type can be encoded and decoded. Both sides of a link must register
// the type under the same name.
//
// A type whose value or pointer implements [encoding.BinaryAppender] and
// whose pointer implements [encoding.BinaryUnmarshaler] travels through those
// methods. As that interface says, UnmarshalBinary must copy what it keeps
// of its input: the input is a view of a buffer the node reuses once the
// message is decoded (a small message's read buffer, a large one's
// reassembly buffer), so a kept slice would change under it. Any other type travels by reflection, compiled once: structs
// (their fields in declaration order; a struct with an unexported field is
// refused with [ErrRegister], since that field could not travel),
// nested structs, slices, maps, pointers, fixed arrays, any-typed fields
// holding terms, and fields of the builtin term types. chan, func, complex,
// unsafe pointers and non-empty interface fields are refused with
// [ErrUnencodable].
//
// A node that receives a value of a type name it has not registered gets an
// [Unknown] holding the name and the encoded payload.
//
// Registering the same name and type again is a no-op. It is safe to call
// from any goroutine, typically from init.
func Register(name string, sample any) error {
	if name == "" || len(name) > maxNameBytes {
		return fmt.Errorf("%w: name must be 1..%d bytes", ErrRegister, maxNameBytes)
	}
	if sample == nil {
		return fmt.Errorf("%w: nil sample for %q", ErrRegister, name)
	}
	t := reflect.TypeOf(sample)
	if isBuiltinType(t) {
		return fmt.Errorf("%w: %v is a builtin term type", ErrRegister, t)
	}
	regMu.Lock()
	defer regMu.Unlock()
	old := registry.Load()
	if ut, ok := old.byName[name]; ok {
		if ut.typ == t {
			return nil
		}
		return fmt.Errorf("%w: name %q already names %v", ErrRegister, name, ut.typ)
	}
	if ut, ok := old.byType[t]; ok {
		return fmt.Errorf("%w: %v already registered as %q", ErrRegister, t, ut.name)
	}
	c, err := compile(t)
	if err != nil {
		return err
	}
	ut := &userType{name: name, typ: t, codec: c}
	nr := &regTable{byName: make(map[string]*userType, len(old.byName)+1), byType: make(map[reflect.Type]*userType, len(old.byType)+1)}
	for k, v := range old.byName {
		nr.byName[k] = v
	}
	for k, v := range old.byType {
		nr.byType[k] = v
	}
	nr.byName[name] = ut
	nr.byType[t] = ut
	registry.Store(nr)
	return nil
}

// MustRegister is [Register] that panics on error, for use in init.
func MustRegister(name string, sample any) {
	if err := Register(name, sample); err != nil {
		panic(err)
	}
}

type userType struct {
	name  string
	typ   reflect.Type
	codec *typeCodec
}

type regTable struct {
	byName map[string]*userType
	byType map[reflect.Type]*userType
}

var (
	regMu    sync.Mutex
	registry atomic.Pointer[regTable]
)

func init() {
	registry.Store(&regTable{byName: map[string]*userType{}, byType: map[reflect.Type]*userType{}})
}

var (
	typAny        = reflect.TypeFor[any]()
	typPID        = reflect.TypeFor[PID]()
	typRef        = reflect.TypeFor[Ref]()
	typAppender   = reflect.TypeFor[encoding.BinaryAppender]()
	typUnmarshal  = reflect.TypeFor[encoding.BinaryUnmarshaler]()
	builtinsTypes = []reflect.Type{
		reflect.TypeFor[bool](), reflect.TypeFor[int](), reflect.TypeFor[int8](), reflect.TypeFor[int16](),
		reflect.TypeFor[int32](), reflect.TypeFor[int64](), reflect.TypeFor[uint](), reflect.TypeFor[uint8](),
		reflect.TypeFor[uint16](), reflect.TypeFor[uint32](), reflect.TypeFor[uint64](), reflect.TypeFor[uintptr](),
		reflect.TypeFor[float32](), reflect.TypeFor[float64](), reflect.TypeFor[string](), reflect.TypeFor[[]byte](),
		reflect.TypeFor[Atom](), reflect.TypeFor[Tuple](), reflect.TypeFor[[]any](), reflect.TypeFor[map[string]any](),
		typPID, typRef,
		reflect.TypeFor[[]string](), reflect.TypeFor[[]int](), reflect.TypeFor[map[string]string](),
		reflect.TypeFor[map[string]int](), reflect.TypeFor[time.Time](), reflect.TypeFor[time.Duration](),
		reflect.TypeFor[Error](), reflect.TypeFor[Unknown](),
	}
)

func isBuiltinType(t reflect.Type) bool { return slices.Contains(builtinsTypes, t) }

// appendUser encodes a registered type: tagUser, name, uvarint payload
// length, payload.
func appendUser(dst []byte, v any, depth int) ([]byte, error) {
	t := reflect.TypeOf(v)
	ut := registry.Load().byType[t]
	if ut == nil {
		if e, ok := v.(error); ok {
			return appendStr(dst, tagError, e.Error()), nil
		}
		return dst, unencodable(t)
	}
	if depth >= DefaultMaxDepth {
		return dst, errTooDeep()
	}
	dst = append(dst, tagUser)
	dst = appendUvarint(dst, uint64(len(ut.name)))
	dst = append(dst, ut.name...)
	return withLength(dst, func(dst []byte) ([]byte, error) {
		if ut.codec.binary && ut.codec.direct {
			return withLength(dst, v.(encoding.BinaryAppender).AppendBinary)
		}
		return ut.codec.enc(dst, reflect.ValueOf(v), depth+1)
	})
}

func unencodable(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return fmt.Errorf("%w: %v values never travel", ErrUnencodable, t)
	}
	return fmt.Errorf("%w: %v is not registered (codec.Register)", ErrUnencodable, t)
}

// withLength appends a uvarint length followed by what body appends. One byte
// is reserved for the length; a longer length shifts the body right.
func withLength(dst []byte, body func([]byte) ([]byte, error)) ([]byte, error) {
	at := len(dst)
	dst = append(dst, 0)
	out, err := body(dst)
	if err != nil {
		return dst[:at], err
	}
	return patchLength(out, at), nil
}

// patchLength writes the uvarint length of out[at+1:] at out[at], where one
// byte was reserved, moving the body if the varint needs more bytes.
func patchLength(out []byte, at int) []byte {
	n := len(out) - at - 1
	if n < 0x80 {
		out[at] = byte(n)
		return out
	}
	var tmp [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(tmp[:], uint64(n))
	out = append(out, tmp[:w-1]...)
	copy(out[at+w:], out[at+1:at+1+n])
	copy(out[at:], tmp[:w])
	return out
}

func (d *decoder) user(depth int) (any, error) {
	nb, err := d.name()
	if err != nil {
		return nil, err
	}
	payload, err := d.lenBytes(len(d.b))
	if err != nil {
		return nil, err
	}
	ut := registry.Load().byName[string(nb)]
	if ut == nil {
		if len(nb) == 0 {
			return nil, fmt.Errorf("%w: registered type with an empty name", ErrCorrupt)
		}
		if err := d.charge(len(nb) + len(payload) + 2*costBox); err != nil {
			return nil, err
		}
		return Unknown{Type: string(nb), Data: append([]byte{}, payload...)}, nil
	}
	sub := decoder{b: payload, maxDepth: d.maxDepth, maxString: d.maxString, elems: d.elems, mem: d.mem}
	rv := reflect.New(ut.typ).Elem()
	if err := ut.codec.dec(&sub, rv, depth+1); err != nil {
		return nil, err
	}
	if sub.off != len(payload) {
		return nil, fmt.Errorf("%w: %d bytes left in %q payload", ErrCorrupt, len(payload)-sub.off, ut.name)
	}
	d.elems, d.mem = sub.elems, sub.mem
	return rv.Interface(), nil
}

// typeCodec encodes and decodes one Go type by reflection. dec writes into
// a settable v.
type typeCodec struct {
	enc    func(dst []byte, v reflect.Value, depth int) ([]byte, error)
	dec    func(d *decoder, v reflect.Value, depth int) error
	binary bool // travels through BinaryAppender/BinaryUnmarshaler
	direct bool // the value itself (not only its pointer) is a BinaryAppender
}

var (
	compileMu sync.Mutex
	compiled  = map[reflect.Type]*typeCodec{}
)

func compile(t reflect.Type) (*typeCodec, error) {
	compileMu.Lock()
	defer compileMu.Unlock()
	return compileLocked(t)
}

func compileLocked(t reflect.Type) (*typeCodec, error) {
	if c, ok := compiled[t]; ok {
		return c, nil
	}
	c := &typeCodec{}
	compiled[t] = c // placeholder first: recursive types refer to it
	if err := build(c, t); err != nil {
		delete(compiled, t)
		return nil, err
	}
	return c, nil
}

func errDepthReflect(depth int) error {
	if depth >= DefaultMaxDepth {
		return errTooDeep()
	}
	return nil
}

func build(c *typeCodec, t reflect.Type) error {
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(typUnmarshal) &&
		(t.Implements(typAppender) || reflect.PointerTo(t).Implements(typAppender)) {
		c.binary, c.direct = true, t.Implements(typAppender)
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			var a encoding.BinaryAppender
			if c.direct {
				a = v.Interface().(encoding.BinaryAppender)
			} else {
				p := reflect.New(t)
				p.Elem().Set(v)
				a = p.Interface().(encoding.BinaryAppender)
			}
			return withLength(dst, a.AppendBinary)
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			p, err := d.lenBytes(len(d.b))
			if err != nil {
				return err
			}
			if err := v.Addr().Interface().(encoding.BinaryUnmarshaler).UnmarshalBinary(p); err != nil {
				return fmt.Errorf("%w: %v: %w", ErrCorrupt, t, err)
			}
			return nil
		}
		return nil
	}
	switch t {
	case typPID:
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			return appendPID(dst, v.Interface().(PID)), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			p, err := d.pid()
			v.Set(reflect.ValueOf(p))
			return err
		}
		return nil
	case typRef:
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			return appendRef(dst, v.Interface().(Ref)), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			p, err := d.ref()
			v.Set(reflect.ValueOf(p))
			return err
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Bool:
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			if v.Bool() {
				return append(dst, 1), nil
			}
			return append(dst, 0), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			b, err := d.byte1()
			if err == nil && b > 1 {
				err = fmt.Errorf("%w: bool byte %d", ErrCorrupt, b)
			}
			v.SetBool(b == 1)
			return err
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			return appendUvarint(dst, zigzag(v.Int())), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			x, err := d.varint()
			if err == nil && v.OverflowInt(x) {
				err = fmt.Errorf("%w: %d overflows %v", ErrCorrupt, x, t)
			}
			if err != nil {
				return err
			}
			v.SetInt(x)
			return nil
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			return appendUvarint(dst, v.Uint()), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			x, err := d.uvarint()
			if err == nil && v.OverflowUint(x) {
				err = fmt.Errorf("%w: %d overflows %v", ErrCorrupt, x, t)
			}
			if err != nil {
				return err
			}
			v.SetUint(x)
			return nil
		}
	case reflect.Float32:
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			return binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(v.Float()))), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			p, err := d.fixed(4)
			if err != nil {
				return err
			}
			v.SetFloat(float64(math.Float32frombits(binary.LittleEndian.Uint32(p))))
			return nil
		}
	case reflect.Float64:
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.Float())), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			p, err := d.fixed(8)
			if err != nil {
				return err
			}
			v.SetFloat(math.Float64frombits(binary.LittleEndian.Uint64(p)))
			return nil
		}
	case reflect.String:
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			s := v.String()
			return append(appendUvarint(dst, uint64(len(s))), s...), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			p, err := d.lenBytes(d.maxString)
			if err != nil {
				return err
			}
			v.SetString(string(p))
			return nil
		}
	case reflect.Interface:
		if t != typAny {
			return fmt.Errorf("%w: interface type %v (only any fields are supported)", ErrUnencodable, t)
		}
		c.enc = func(dst []byte, v reflect.Value, depth int) ([]byte, error) {
			if v.IsNil() {
				return append(dst, tagNil), nil
			}
			return appendTerm(dst, v.Interface(), depth)
		}
		c.dec = func(d *decoder, v reflect.Value, depth int) error {
			x, err := d.term(depth)
			if err != nil {
				return err
			}
			if x != nil {
				v.Set(reflect.ValueOf(x))
			}
			return nil
		}
	case reflect.Pointer:
		ec, err := compileLocked(t.Elem())
		if err != nil {
			return err
		}
		c.enc = func(dst []byte, v reflect.Value, depth int) ([]byte, error) {
			if v.IsNil() {
				return append(dst, 0), nil
			}
			if err := errDepthReflect(depth); err != nil {
				return dst, err
			}
			return ec.enc(append(dst, 1), v.Elem(), depth+1)
		}
		c.dec = func(d *decoder, v reflect.Value, depth int) error {
			b, err := d.byte1()
			if err != nil || b == 0 {
				return err
			}
			if b != 1 {
				return fmt.Errorf("%w: pointer marker %d", ErrCorrupt, b)
			}
			if depth >= d.maxDepth {
				return errDepth
			}
			p := reflect.New(t.Elem())
			if err := ec.dec(d, p.Elem(), depth+1); err != nil {
				return err
			}
			v.Set(p)
			return nil
		}
	case reflect.Slice:
		return buildSlice(c, t)
	case reflect.Array:
		ec, err := compileLocked(t.Elem())
		if err != nil {
			return err
		}
		n := t.Len()
		c.enc = func(dst []byte, v reflect.Value, depth int) ([]byte, error) {
			if err := errDepthReflect(depth); err != nil {
				return dst, err
			}
			var err error
			for i := range n {
				if dst, err = ec.enc(dst, v.Index(i), depth+1); err != nil {
					return dst, err
				}
			}
			return dst, nil
		}
		c.dec = func(d *decoder, v reflect.Value, depth int) error {
			if depth >= d.maxDepth {
				return errDepth
			}
			if n > d.elems {
				return errElems
			}
			if err := d.charge(n * costSlot); err != nil {
				return err
			}
			d.elems -= n
			for i := range n {
				if err := ec.dec(d, v.Index(i), depth+1); err != nil {
					return err
				}
			}
			return nil
		}
	case reflect.Map:
		return buildMap(c, t)
	case reflect.Struct:
		return buildStruct(c, t)
	default:
		return unencodable(t)
	}
	return nil
}

// Slices and maps encode uvarint(n+1), with 0 meaning nil, so nil and empty
// stay distinct.
func buildSlice(c *typeCodec, t reflect.Type) error {
	if t.Elem().Kind() == reflect.Uint8 {
		c.enc = func(dst []byte, v reflect.Value, _ int) ([]byte, error) {
			if v.IsNil() {
				return append(dst, 0), nil
			}
			b := v.Bytes()
			return append(appendUvarint(dst, uint64(len(b))+1), b...), nil
		}
		c.dec = func(d *decoder, v reflect.Value, _ int) error {
			n, err := d.uvarint()
			if err != nil || n == 0 {
				return err
			}
			if n-1 > uint64(d.maxString) {
				return errStringSize
			}
			if err := d.charge(int(n-1) + costBox); err != nil {
				return err
			}
			p, err := d.fixed(int(n - 1))
			if err != nil {
				return err
			}
			s := reflect.MakeSlice(t, len(p), len(p))
			copy(s.Bytes(), p)
			v.Set(s)
			return nil
		}
		return nil
	}
	ec, err := compileLocked(t.Elem())
	if err != nil {
		return err
	}
	c.enc = func(dst []byte, v reflect.Value, depth int) ([]byte, error) {
		if v.IsNil() {
			return append(dst, 0), nil
		}
		if err := errDepthReflect(depth); err != nil {
			return dst, err
		}
		n := v.Len()
		dst = appendUvarint(dst, uint64(n)+1)
		var err error
		for i := range n {
			if dst, err = ec.enc(dst, v.Index(i), depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	c.dec = func(d *decoder, v reflect.Value, depth int) error {
		n, err := d.nilCount(depth)
		if err != nil || n < 0 {
			return err
		}
		s := reflect.MakeSlice(t, n, n)
		for i := range n {
			if err := ec.dec(d, s.Index(i), depth+1); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	return nil
}

// nilCount reads uvarint(n+1) (0 = nil, returned as -1), bounded like count.
func (d *decoder) nilCount(depth int) (int, error) {
	n, err := d.uvarint()
	if err != nil || n == 0 {
		return -1, err
	}
	if depth >= d.maxDepth {
		return -1, errDepth
	}
	n--
	if n > uint64(d.elems) {
		return -1, errElems
	}
	if n > uint64(len(d.b)-d.off) {
		return -1, errTrunc
	}
	if err := d.charge(int(n)*costSlot + costBox); err != nil {
		return -1, err
	}
	d.elems -= int(n)
	return int(n), nil
}

func buildMap(c *typeCodec, t reflect.Type) error {
	kc, err := compileLocked(t.Key())
	if err != nil {
		return err
	}
	vc, err := compileLocked(t.Elem())
	if err != nil {
		return err
	}
	less := mapKeyOrder(t.Key())
	c.enc = func(dst []byte, v reflect.Value, depth int) ([]byte, error) {
		if v.IsNil() {
			return append(dst, 0), nil
		}
		if err := errDepthReflect(depth); err != nil {
			return dst, err
		}
		keys := v.MapKeys()
		if less != nil {
			slices.SortFunc(keys, less)
		}
		dst = appendUvarint(dst, uint64(len(keys))+1)
		var err error
		for _, k := range keys {
			if dst, err = kc.enc(dst, k, depth+1); err != nil {
				return dst, err
			}
			if dst, err = vc.enc(dst, v.MapIndex(k), depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	c.dec = func(d *decoder, v reflect.Value, depth int) error {
		n, err := d.nilCount(depth)
		if err != nil || n < 0 {
			return err
		}
		m := reflect.MakeMapWithSize(t, n)
		k := reflect.New(t.Key()).Elem()
		e := reflect.New(t.Elem()).Elem()
		for range n {
			k.SetZero()
			e.SetZero()
			if err := kc.dec(d, k, depth+1); err != nil {
				return err
			}
			if err := vc.dec(d, e, depth+1); err != nil {
				return err
			}
			m.SetMapIndex(k, e)
		}
		if m.Len() != n {
			return fmt.Errorf("%w: duplicate map key", ErrCorrupt)
		}
		v.Set(m)
		return nil
	}
	return nil
}

// mapKeyOrder gives a deterministic order for ordered key kinds; other keys
// are encoded in map iteration order.
func mapKeyOrder(t reflect.Type) func(a, b reflect.Value) int {
	switch t.Kind() {
	case reflect.String:
		return func(a, b reflect.Value) int { return cmp.Compare(a.String(), b.String()) }
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(a, b reflect.Value) int { return cmp.Compare(a.Int(), b.Int()) }
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(a, b reflect.Value) int { return cmp.Compare(a.Uint(), b.Uint()) }
	case reflect.Float32, reflect.Float64:
		return func(a, b reflect.Value) int { return cmp.Compare(a.Float(), b.Float()) }
	}
	return nil
}

// Binary types encode uvarint length then their AppendBinary bytes.
//
// Structs encode uvarint(field count) then each exported field in order; the
// count catches two sides that disagree on a type's shape.
func buildStruct(c *typeCodec, t reflect.Type) error {
	type field struct {
		index int
		c     *typeCodec
	}
	var fields []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			return fmt.Errorf("%w: %v has an unexported field %s, which would not travel: export it, or give %v binary marshalling (AppendBinary and UnmarshalBinary)", ErrRegister, t, f.Name, t)
		}
		fc, err := compileLocked(f.Type)
		if err != nil {
			return fmt.Errorf("field %v.%s: %w", t, f.Name, err)
		}
		fields = append(fields, field{i, fc})
	}
	nf := uint64(len(fields))
	c.enc = func(dst []byte, v reflect.Value, depth int) ([]byte, error) {
		if err := errDepthReflect(depth); err != nil {
			return dst, err
		}
		dst = appendUvarint(dst, nf)
		var err error
		for _, f := range fields {
			if dst, err = f.c.enc(dst, v.Field(f.index), depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	c.dec = func(d *decoder, v reflect.Value, depth int) error {
		if depth >= d.maxDepth {
			return errDepth
		}
		n, err := d.uvarint()
		if err != nil {
			return err
		}
		if n != nf {
			return fmt.Errorf("%w: %v has %d fields here, %d on the wire", ErrCorrupt, t, nf, n)
		}
		for _, f := range fields {
			if err := f.c.dec(d, v.Field(f.index), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return nil
}
