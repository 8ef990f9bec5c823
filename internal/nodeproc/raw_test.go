package nodeproc

import (
	"encoding/binary"
	"net"
	"testing"
)

// The raw baseline's sink counts every frame, however the frames fall
// across the socket's reads, from the first to the one before EOF.
func TestRawCountCountsEveryFrameAcrossReads(t *testing.T) {
	for _, perWrite := range []int{1, 7, 1000} {
		c, s := net.Pipe()
		const frames = 1000
		go func() {
			defer c.Close()
			var batch []byte
			for i := range frames {
				batch = binary.BigEndian.AppendUint32(batch, 64)
				batch = append(batch, make([]byte, 64)...)
				if (i+1)%perWrite == 0 || i == frames-1 {
					if _, err := c.Write(batch); err != nil {
						return
					}
					batch = batch[:0]
				}
			}
		}()
		got, span, err := rawCount(s)
		if err != nil || got != frames || span < 0 {
			t.Errorf("%d frames a write: rawCount = %d, %v, %v; want %d frames, a span >= 0, nil", perWrite, got, span, err, frames)
		}
	}
}

// A frame over the limit ends the count with an error, not an allocation
// of what the length claims.
func TestRawCountRejectsAFrameOverTheLimit(t *testing.T) {
	c, s := net.Pipe()
	go func() {
		defer c.Close()
		_, _ = c.Write(binary.BigEndian.AppendUint32(nil, rawMaxFrame+1))
	}()
	if _, _, err := rawCount(s); err == nil {
		t.Fatal("rawCount took a frame over rawMaxFrame")
	}
}
