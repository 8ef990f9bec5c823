package node

import (
	"sync"
	"sync/atomic"

	"github.com/meshrt/mesh/internal/wire"
	"github.com/meshrt/mesh/loop"
)

// Lanes: a link's connection has two lanes (loop.Conn.EnqueueBulk). The
// fragments of a large message go on the bulk lane, which every other
// sender's small messages and control frames overtake, so they do not wait
// behind megabytes of it (head-of-line blocking).
//
// Per-pair FIFO is kept on the sending side, per sending process: once a
// process has put an item on the bulk lane, everything it sends on that
// link after it — messages to a PID or to a name, replies, call requests,
// links, exits, monitors, its Down when it exits — goes on the bulk lane
// too, behind it, until the loop has drained its last bulk item
// (loop.Conn.BulkPassed); then its items go on the urgent lane again. So a
// process's items leave in the order it sent them, whatever they are
// addressed to, and the receiver never has to hold one back: a name is
// resolved when its record arrives, after everything its sender sent
// before, exactly as over one queue (a name re-registered meanwhile, or
// whose process died, resolves as it would have there). The sender's own
// later small messages wait behind its bulk data (they are its own); nobody
// else's do.
//
// Items sent on a process's behalf by other goroutines (the loop answering
// a link to a dead process with an exit, say) use the process's ID and so
// the same rule. Items of no process (ticks, the registry, node lists)
// always take the urgent lane.
//
// Once the link's companion connection is up (companion.go), large
// messages go there instead, under the same rule with "handled by the
// peer" for "drained"; the bulk lane carries them until then, and on links
// without a companion.

// laneOrder is a link's record of the senders with bulk items not yet
// drained. Safe from any goroutine.
type laneOrder struct {
	n       atomic.Int32 // len(m): while 0 a send skips the lock
	mu      sync.Mutex
	m       map[uint64]loop.BulkTicket // sender ID → its last bulk item
	sweepAt int                        // len(m) at which note drops the passed entries
}

// passer tells whether a bulk item has passed: a connection's bulk lane
// (loop.Conn.BulkPassed: drained), or a companion (acknowledged).
type passer interface {
	BulkPassed(t loop.BulkTicket) bool
}

// pending reports whether some sender may have bulk items not yet passed
// (behind is false for every sender while it is not).
func (o *laneOrder) pending() bool { return o.n.Load() != 0 }

// behind reports whether from's next item must go on the bulk lane of c:
// an item from has put there has not passed yet.
func (o *laneOrder) behind(c passer, from uint64) bool {
	if o.n.Load() == 0 {
		return false
	}
	o.mu.Lock()
	t, ok := o.m[from]
	if ok && c.BulkPassed(t) {
		delete(o.m, from)
		o.n.Store(int32(len(o.m)))
		ok = false
	}
	o.mu.Unlock()
	return ok
}

// note records t as from's last bulk item on c. Entries of senders that
// never send again are dropped once they passed, when the map has doubled
// since the last sweep, so it stays about as large as the number of senders
// with bulk items queued.
func (o *laneOrder) note(c passer, from uint64, t loop.BulkTicket) {
	if t == 0 {
		return // has passed (an in-memory link's ticket)
	}
	o.mu.Lock()
	if o.m == nil {
		o.m = map[uint64]loop.BulkTicket{}
	}
	if t > o.m[from] {
		o.m[from] = t
	}
	if len(o.m) >= o.sweepAt {
		for id, tk := range o.m {
			if c.BulkPassed(tk) {
				delete(o.m, id)
			}
		}
		o.sweepAt = max(64, 2*len(o.m))
	}
	o.n.Store(int32(len(o.m)))
	o.mu.Unlock()
}

// controlSender returns the local process a control frame speaks for:
// its sender, or for a Down the process that exited. ok is false for
// frames of no process.
func controlSender(c wire.Control) (from uint64, ok bool) {
	switch m := c.(type) {
	case *wire.Link:
		return m.From.ID, true
	case *wire.Unlink:
		return m.From.ID, true
	case *wire.Exit:
		return m.From.ID, true
	case *wire.Monitor:
		return m.From.ID, true
	case *wire.Demonitor:
		return m.From.ID, true
	case *wire.Down:
		return m.PID.ID, true
	}
	return 0, false
}
