#!/usr/bin/env python3
"""Wake-ups of a round trip's threads that wait for their vCPU, from perf's
scheduler tracepoints (docs/latency.md, "The ms-long round trips: the
host's late vCPU").

    perf sched record -o /tmp/ps.data -- /tmp/lp -n 20000 -impl mesh
    perf script -i /tmp/ps.data -F cpu,time,event,trace 2>/dev/null | \
        python3 bench/internal/latencyprobe/stalls.py 21000

The argument is the round trips run (warm-up included: 1000 a run), to
give counts a round trip. Run one -impl at a time. Every wake-up of a
thread whose name starts with lp (both sides: the binary must be named
so) is classed by where it ran against where its waker ran (same or
cross vCPU) and by whether the vCPU it ran on was idle when it was woken
(idle: nothing else of the guest was there, so the wait until it runs is
the vCPU's own wake-up, which the host schedules); for each class:
wake-ups a round trip, the wait from the wake-up to the thread running
(p50, p99), and how many waited 1 ms or more. Last, of the waits of 1 ms
or more, how many found their vCPU idle from the wake-up until the
thread ran (the guest had nothing else to run there: the delay is the
host's).
"""
import collections
import re
import sys

LINE = re.compile(r'\[(\d+)\]\s+([\d.]+):\s+sched:(\w+): (.*)')


def main():
    rts = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    cur = {}         # vCPU -> pid running (0: idle)
    idle_since = {}  # vCPU -> when it last went idle
    pending = {}     # pid -> (time woken, waker's vCPU, snapshot of cur)
    count = collections.Counter()
    waits = collections.defaultdict(list)
    long_idle = long_all = 0
    for line in sys.stdin:
        m = LINE.search(line)
        if not m:
            continue
        cpu, t, ev, tr = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
        if ev == 'sched_switch':
            pid = int(re.search(r'next_pid=(\d+)', tr).group(1))
            if pid in pending:
                t0, wcpu, snap = pending.pop(pid)
                idle = snap.get(cpu, 0) == 0
                kind = ('same' if wcpu == cpu else 'cross') + ('-idle' if idle else '-busy')
                d = (t - t0) * 1e3
                count[kind] += 1
                waits[kind].append(d)
                if d >= 1:
                    long_all += 1
                    if cur.get(cpu, 0) == 0 and idle_since.get(cpu, t) <= t0:
                        long_idle += 1
            cur[cpu] = pid
            if pid == 0:
                idle_since[cpu] = t
        elif ev == 'sched_waking':
            mm = re.search(r'comm=(\S+) pid=(\d+)', tr)
            if mm and mm.group(1).startswith('lp'):
                pending[int(mm.group(2))] = (t, cpu, dict(cur))
    for kind in sorted(count):
        d = sorted(waits[kind])
        print(f'{kind:11s} {count[kind] / rts:5.2f}/rt  wait p50 {d[len(d) // 2] * 1000:7.1f} us'
              f'  p99 {d[int(len(d) * .99)] * 1000:7.1f} us  >=1ms {sum(x >= 1 for x in d)}')
    print(f'waits >=1ms: {long_all}, the vCPU idle from the wake-up until the thread ran: {long_idle}')


if __name__ == '__main__':
    main()
