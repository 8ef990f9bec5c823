#!/usr/bin/env python3
"""Crossings and sides of a remote ping-pong, from perf's system-call tracepoints (docs/latency.md).

    perf record -q -o /tmp/lp.data -e raw_syscalls:sys_enter --filter 'id == 1' \
        -e raw_syscalls:sys_exit --filter 'id == 0' -- /tmp/lp -n 20000 -impl mesh
    perf script -i /tmp/lp.data -F comm,pid,tid,cpu,time,event,trace --ns > /tmp/lp.txt
    python3 bench/internal/latencyprobe/crossings.py /tmp/lp.txt

Run one -impl at a time (tls or mesh). The requester is the first process
in the trace (latencyprobe's client); the other is its peer. Per round trip,
from write(2) entries of more than 8 bytes and read(2) exits that returned
more than 8: the requester's write -> the peer's read returns (a crossing),
the peer's read -> its write starts (its side), the peer's write -> the
requester's read returns, the requester's read -> its next write (its side).
The first tenth of the round trips (warm-up) is dropped. Tracing adds about
a microsecond to each system call, the same for every implementation.
"""
import re
import statistics as st
import sys

LINE = re.compile(r'\s*(\S+)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)')


def events(fn):
    ev, pids = [], []
    for line in open(fn):
        m = LINE.match(line)
        if not m:
            continue
        _, pid, _, cpu, t, name, rest = m.groups()
        t = float(t) * 1e6
        if pid not in pids:
            pids.append(pid)
        nr = int(rest.split()[1])
        if name == 'raw_syscalls:sys_enter' and nr == 1:
            args = rest[rest.index('(') + 1:rest.index(')')].split(', ')
            if int(args[2], 16) > 8:
                ev.append((t, pid, 'w', cpu))
        elif name == 'raw_syscalls:sys_exit' and nr == 0:
            if int(rest.split('=')[1]) > 8:
                ev.append((t, pid, 'r', cpu))
    return ev, pids[0] if pids else None


def cycles(ev, req):
    out, state = [], None
    for t, pid, kind, cpu in ev:
        key = ('req_' if pid == req else 'far_') + kind
        if key == 'req_w':
            if state and all(k in state for k in ('far_r', 'far_w', 'req_r')):
                state['next'] = (t, cpu)
                out.append(state)
            state = {'req_w': (t, cpu)}
        elif state is not None and key not in state:
            state[key] = (t, cpu)
    return out[len(out) // 10:]


def main():
    ev, req = events(sys.argv[1])
    cyc = cycles(ev, req)
    if not cyc:
        sys.exit('no round trips found')
    rows = [(s['far_r'][0] - s['req_w'][0], s['far_w'][0] - s['far_r'][0],
             s['req_r'][0] - s['far_w'][0], s['next'][0] - s['req_r'][0],
             s['next'][0] - s['req_w'][0]) for s in cyc]
    same = sum(s['req_w'][1] == s['far_r'][1] for s in cyc)
    cols = list(zip(*rows))
    print('round trips %d, the peer read on the requester\'s CPU in %d' % (len(rows), same))
    print('%-6s %14s %10s %14s %10s %8s' % ('µs', 'write->far read', 'far side', 'write->read', 'req side', 'cycle'))
    for name, f in (('p50', st.median), ('mean', st.mean)):
        print('%-6s %14.1f %10.1f %14.1f %10.1f %8.1f' % ((name,) + tuple(f(c) for c in cols)))


if __name__ == '__main__':
    main()
