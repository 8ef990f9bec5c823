#!/usr/bin/env python3
"""How the long run-queue waits of a round trip's threads end: for each
wake-up of a thread of the given processes, in [T0, T1], that waited WAIT
µs or more (sched_wakeup to its sched_switch in), how the thread it
replaced left the core (preempted, R; or blocked, S/D) and how long that
thread had run without a break.

usage: perf script --ns -F comm,pid,tid,cpu,time,event,trace | longwaits.py T0 T1 WAIT PID...
"""
import sys, collections
import schedlines
t0, t1, minw = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) * 1e3
pids = set(sys.argv[4:])
tidpid, since, woken = {}, {}, {}
how = collections.Counter()
runs = []
for e in schedlines.events(sys.stdin):
    t = e.t
    tidpid[e.tid] = e.pid
    if e.name == 'sched_wakeup':
        woken[schedlines.woken(e.trace)] = t
    elif e.name == 'sched_switch':
        sw = schedlines.switch(e.trace)
        pp, ps, pc, np_ = sw.prev_pid, sw.prev_state, sw.prev_comm, sw.next_pid
        ran = t - since.get(e.cpu, t)
        since[e.cpu] = t
        w = woken.pop(np_, None)
        if w is not None and t0 <= w <= t1 and tidpid.get(np_) in pids and t - w >= minw:
            k = ('preempted' if ps.startswith('R') else 'blocked') + (' (idle)' if pp == '0' else '') + ' ' + ('same process group' if tidpid.get(pp) in pids else 'other: ' + pc)
            how[k] += 1
            runs.append(ran)
n = sum(how.values())
print(f'{n} waits of {minw/1e3:.0f} us or more; the replaced thread:')
for k, v in how.most_common():
    print(f'  {v:5d}  {k}')
runs.sort()
if runs:
    print('its run before, ms: p10 %.2f p50 %.2f p90 %.2f' % tuple(runs[int(f * len(runs))] / 1e6 for f in (0.1, 0.5, 0.9)))
