package node

import "sync"

// procTable maps the local process serial (PID.ID) to its process. It is
// sharded so that spawns, exits and the lookup every local send makes do not
// contend on one lock; a shard's lock is never held while another lock is
// taken.
type procTable struct {
	shards [tableShards]tableShard
}

const tableShards = 64 // a power of two

type tableShard struct {
	mu sync.RWMutex
	m  map[uint64]*Process // guarded by mu
	_  [40]byte            // keep shards on separate cache lines
}

func (t *procTable) shard(id uint64) *tableShard { return &t.shards[id&(tableShards-1)] }

func (t *procTable) get(id uint64) *Process {
	s := t.shard(id)
	s.mu.RLock()
	p := s.m[id]
	s.mu.RUnlock()
	return p
}

func (t *procTable) add(p *Process) {
	s := t.shard(p.pid.ID)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[uint64]*Process)
	}
	s.m[p.pid.ID] = p
	s.mu.Unlock()
}

func (t *procTable) remove(id uint64) {
	s := t.shard(id)
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// snapshot returns every process in the table at some moment during the call.
func (t *procTable) snapshot() []*Process {
	var all []*Process
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, p := range s.m {
			all = append(all, p)
		}
		s.mu.RUnlock()
	}
	return all
}

func (t *procTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
