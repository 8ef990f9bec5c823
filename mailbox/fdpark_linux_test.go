//go:build linux

package mailbox

import "golang.org/x/sys/unix"

// fdPoolTokens takes every eventfd pooled in p, counts those that do not
// read zero (a token left behind), and gives them back.
func fdPoolTokens(p *fdPool) int {
	var ws []*fdWaiter
	n := 0
	for range fdPoolMax {
		w, _ := p.p.Get().(*fdWaiter)
		if w == nil {
			break
		}
		ws = append(ws, w)
		var b [8]byte
		if k, _ := unix.Read(int(w.fd), b[:]); k == 8 {
			n++
		}
	}
	for _, w := range ws {
		p.put(w)
	}
	return n
}
