#!/usr/bin/env python3
"""How the long run-queue waits of a round trip's threads end: for each
wake-up of a thread of the given processes, in [T0, T1], that waited WAIT
µs or more (sched_wakeup to its sched_switch in), how the thread it
replaced left the core (preempted, R; or blocked, S/D) and how long that
thread had run without a break.

usage: perf script --ns -F comm,pid,tid,cpu,time,event,trace | longwaits.py T0 T1 WAIT PID...
"""
import sys, re, collections
t0, t1, minw = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) * 1e3
pids = set(sys.argv[4:])
L = re.compile(r'(\S+)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+): (.*)')
tidpid, since, woken = {}, {}, {}
how = collections.Counter()
runs = []
for line in sys.stdin:
    m = L.search(line)
    if not m:
        continue
    comm, pid, tid, cpu, t, ev, tr = m.groups()
    t = int(t.replace('.', ''))
    tidpid[tid] = pid
    if ev == 'sched_wakeup':
        woken[re.search(r' pid=(\d+)', tr).group(1)] = t
    elif ev == 'sched_switch':
        pp = re.search(r'prev_pid=(\d+)', tr).group(1)
        ps = re.search(r'prev_state=(\S+)', tr).group(1)
        pc = re.search(r'prev_comm=(.*?) prev_pid', tr).group(1)
        np_ = re.search(r'next_pid=(\d+)', tr).group(1)
        ran = t - since.get(cpu, t)
        since[cpu] = t
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
