package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/meshrt/mesh/codec"
	"github.com/meshrt/mesh/internal/wire"
)

var (
	codecMsg64 any = strings.Repeat("m", 64)
	codecPID       = codec.PID{Node: "node-a@10.0.0.1:4000", Incarnation: 0x1234567890, ID: 4242}
)

// BenchmarkCodecEncodeMessage: one message (target and sender IDs + a
// 64-byte string) into a reused buffer. Baseline: copying the 64 bytes.
func BenchmarkCodecEncodeMessage(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.Run("baseline=copy64", func(b *testing.B) {
		s := codecMsg64.(string)
		for b.Loop() {
			buf = append(buf[:0], s...)
		}
	})
	b.Run("AppendMessage", func(b *testing.B) {
		for b.Loop() {
			buf, _ = wire.AppendMessage(buf[:0], codecPID.ID, 17, codecMsg64, 0)
		}
	})
	var tuple any = codec.Tuple{codecPID, codecMsg64}
	b.Run("AppendMessage/tuple{PID,string}", func(b *testing.B) {
		for b.Loop() {
			buf, _ = wire.AppendMessage(buf[:0], codecPID.ID, 17, tuple, 0)
		}
	})
}

var codecSink any

// BenchmarkCodecDecodeMessage: iterate a one-record batch frame and decode
// the term. Baseline: string(b) boxed in an any (what any decoder must do).
func BenchmarkCodecDecodeMessage(b *testing.B) {
	item, _ := wire.AppendMessage(nil, codecPID.ID, 17, codecMsg64, 0)
	raw := []byte(codecMsg64.(string))
	b.Run("baseline=box(string(b))", func(b *testing.B) {
		for b.Loop() {
			codecSink = string(raw)
		}
	})
	fr := wire.NewFrameReader(0, 0)
	b.Run("Next+Messages+Decode", func(b *testing.B) {
		for b.Loop() {
			f, _, _ := fr.Next(item)
			it := f.Messages()
			for it.Next() {
				codecSink, _ = it.Message().Decode(nil)
			}
		}
	})
	titem, _ := wire.AppendMessage(nil, codecPID.ID, 17, codec.Tuple{codecPID, codecMsg64}, 0)
	b.Run("Next+Messages+Decode/tuple{PID,string}", func(b *testing.B) {
		for b.Loop() {
			f, _, _ := fr.Next(titem)
			it := f.Messages()
			for it.Next() {
				codecSink, _ = it.Message().Decode(nil)
			}
		}
	})
}

// BenchmarkCodecDecodeStream: 64-byte strings decoded one after the other
// with codec.DecodeTermSlab, as a receiving process decodes a stream (the
// slab kept between decodes). repeated: one value again and again (its box
// is reused); distinct: 256 values that differ only in their last byte (a
// fresh box each, after a full compare with the last one: the worst case
// of the reuse check). Baseline: string(b) boxed in an any.
func BenchmarkCodecDecodeStream(b *testing.B) {
	raw := []byte(codecMsg64.(string))
	b.Run("baseline=box(string(b))", func(b *testing.B) {
		for b.Loop() {
			codecSink = string(raw)
		}
	})
	one, _ := codec.Marshal(codecMsg64)
	var slab []byte
	b.Run("DecodeTermSlab/repeated", func(b *testing.B) {
		for b.Loop() {
			codecSink, _, _ = codec.DecodeTermSlab(one, nil, &slab)
		}
	})
	var many [][]byte
	for i := range 256 {
		m, _ := codec.Marshal(strings.Repeat("m", 63) + string([]byte{byte(i)}))
		many = append(many, m)
	}
	b.Run("DecodeTermSlab/distinct", func(b *testing.B) {
		i := 0
		for b.Loop() {
			codecSink, _, _ = codec.DecodeTermSlab(many[i%len(many)], nil, &slab)
			i++
		}
	})
}

// BenchmarkCodecBatch1000: 1000 messages encoded as items (reused buffers)
// and drained into one batch frame, as the sender and event loop do.
// Baseline: encoding alone, into one buffer.
func BenchmarkCodecBatch1000(b *testing.B) {
	const n = 1000
	items := make([][]byte, n)
	for i := range items {
		items[i] = make([]byte, 0, 128)
	}
	out := make([]byte, 0, 128<<10)
	b.Run("baseline=encode-only", func(b *testing.B) {
		for b.Loop() {
			out = out[:0]
			for i := range n {
				out, _ = wire.AppendMessage(out, uint64(i), 17, codecMsg64, 0)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds()/1e6, "Mmsgs/s")
	})
	bt := wire.NewBatcher(wire.BatcherOptions{})
	b.Run("encode+Drain", func(b *testing.B) {
		for b.Loop() {
			for i := range n {
				items[i], _ = wire.AppendMessage(items[i][:0], uint64(i), 17, codecMsg64, 0)
			}
			out = bt.Drain(out[:0], items)
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds()/1e6, "Mmsgs/s")
	})
}

// BenchmarkCodecBytes1MiB: a 1 MiB []byte encoded into a reused buffer and
// decoded. Baseline: copying it twice (what encode+decode must at least do).
func BenchmarkCodecBytes1MiB(b *testing.B) {
	var v any = make([]byte, 1<<20)
	src := v.([]byte)
	buf := make([]byte, 0, 1<<20+16)
	b.Run("baseline=copy+clone", func(b *testing.B) {
		b.SetBytes(1 << 20)
		for b.Loop() {
			buf = append(buf[:0], src...)
			codecSink = append([]byte(nil), buf...)
		}
	})
	b.Run("AppendTerm+DecodeTerm", func(b *testing.B) {
		b.SetBytes(1 << 20)
		for b.Loop() {
			buf, _ = codec.AppendTerm(buf[:0], v)
			codecSink, _, _ = codec.DecodeTerm(buf, nil)
		}
	})
}

// realisticBatch is 1000 messages shaped like application traffic: tagged
// tuples with PIDs, counters, short text and floats.
func codecRealisticItems() [][]byte {
	items := make([][]byte, 1000)
	for i := range items {
		v := codec.Tuple{codec.Atom("order_event"), codecPID, i, fmt.Sprintf("user-%d placed order %d", i%97, i*7),
			map[string]any{"qty": i % 13, "price": float64(i%50) * 1.25, "sku": fmt.Sprintf("SKU-%05d", i%311)}}
		items[i], _ = wire.AppendMessage(nil, uint64(i%64), uint64(i%5), v, 0)
	}
	return items
}

// BenchmarkCodecCompress: a realistic 1000-message batch drained without
// compression (baseline), with S2, and zstd (fastest) for comparison.
func BenchmarkCodecCompress(b *testing.B) {
	items := codecRealisticItems()
	plain := wire.NewBatcher(wire.BatcherOptions{MaxBatch: 1 << 20}).Drain(nil, items)
	out := make([]byte, 0, 2*len(plain))
	b.Run("baseline=Drain-plain", func(b *testing.B) {
		bt := wire.NewBatcher(wire.BatcherOptions{MaxBatch: 1 << 20})
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			out = bt.Drain(out[:0], items)
		}
	})
	b.Run("Drain-S2", func(b *testing.B) {
		bt := wire.NewBatcher(wire.BatcherOptions{MaxBatch: 1 << 20, Features: wire.FeatureS2})
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			out = bt.Drain(out[:0], items)
		}
		b.ReportMetric(float64(len(plain))/float64(len(out)), "ratio")
	})
	b.Run("S2-decode", func(b *testing.B) {
		comp := wire.NewBatcher(wire.BatcherOptions{MaxBatch: 1 << 20, Features: wire.FeatureS2}).Drain(nil, items)
		fr := wire.NewFrameReader(0, wire.FeatureS2)
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			if _, _, err := fr.Next(comp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("S2-better-block", func(b *testing.B) {
		dst := make([]byte, s2.MaxEncodedLen(len(plain)))
		var c []byte
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			c = s2.EncodeBetter(dst, plain)
		}
		b.ReportMetric(float64(len(plain))/float64(len(c)), "ratio")
	})
	b.Run("zstd-fastest", func(b *testing.B) {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		defer enc.Close()
		var c []byte
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			c = enc.EncodeAll(plain, c[:0])
		}
		b.ReportMetric(float64(len(plain))/float64(len(c)), "ratio")
	})
	b.Run("zstd-decode", func(b *testing.B) {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		c := enc.EncodeAll(plain, nil)
		enc.Close()
		dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		defer dec.Close()
		var d []byte
		b.SetBytes(int64(len(plain)))
		for b.Loop() {
			d, _ = dec.DecodeAll(c, d[:0])
		}
	})
}

// BenchmarkCodecFragment64MiB: a 64 MiB message split into 64 KiB fragment
// items, drained through a Batcher and reassembled. Baseline: copying the
// 64 MiB twice.
func BenchmarkCodecFragment64MiB(b *testing.B) {
	var v any = make([]byte, 64<<20)
	item, _ := wire.AppendMessage(nil, 1, 2, v, 0)
	frag := make([]byte, 0, 70<<10)
	out := make([]byte, 0, 70<<10)
	b.Run("baseline=copy-twice", func(b *testing.B) {
		b.SetBytes(int64(len(item)))
		dst := make([]byte, len(item))
		for b.Loop() {
			copy(dst, item)
			codecSink = append([]byte(nil), dst...)
		}
	})
	b.Run("fragment+drain+reassemble", func(b *testing.B) {
		b.SetBytes(int64(len(item)))
		bt := wire.NewBatcher(wire.BatcherOptions{})
		fr := wire.NewFrameReader(0, 0)
		var id uint64
		for b.Loop() {
			r := wire.NewReassembler(wire.ReassemblyLimits{})
			var f wire.Fragmenter
			id++
			if err := f.Reset(id, item, wire.DefaultFragmentSize); err != nil {
				b.Fatal(err)
			}
			delivered := 0
			for f.More() {
				frag = f.Next(frag[:0])
				out = bt.Drain(out[:0], [][]byte{frag})
				fm, _, err := fr.Next(out)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Feed(fm, func(m wire.Message) error { delivered += len(m.Term); return nil }); err != nil {
					b.Fatal(err)
				}
			}
			if delivered == 0 {
				b.Fatal("not delivered")
			}
		}
	})
}
