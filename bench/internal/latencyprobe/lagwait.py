#!/usr/bin/env python3
"""Wake-up waits (sched_wakeup to running) of the threads of the given
processes against how much CPU the woken thread used in the 20 ms before
its wake-up: EEVDF keeps a thread's negative lag (it ran more than its
share) across a short sleep, so a thread that ran heavy work just before
waits to be eligible again when woken.

usage: perf script --ns -F comm,pid,tid,cpu,time,event,trace | lagwait.py T0 T1 PID...

T0, T1: the window (ns, CLOCK_MONOTONIC: the ping dump's first start and
last end); PIDs: the benchmark's and the peer's. (docs/latency.md,
"Head-of-line blocking: where a slow round trip waits": no such
dependence was found.)
"""
import sys, collections
import schedlines
t0, t1 = int(sys.argv[1]), int(sys.argv[2])
pids = set(sys.argv[3:])
tidpid = {}
runs = collections.defaultdict(list)   # tid -> [(start, end)]
oncpu = {}                             # tid -> start
woken = {}                             # tid -> wake time
waits = []                             # (tid, wake time, wait ns)
for e in schedlines.events(sys.stdin):
    t = e.t
    tidpid[e.tid] = e.pid
    if e.name == 'sched_switch':
        sw = schedlines.switch(e.trace)
        pp, np_ = sw.prev_pid, sw.next_pid
        if pp in oncpu:
            runs[pp].append((oncpu.pop(pp), t))
        oncpu[np_] = t
        if np_ in woken:
            w = woken.pop(np_)
            if t0 <= w <= t1:
                waits.append((np_, w, t - w))
    elif e.name == 'sched_wakeup':
        woken[schedlines.woken(e.trace)] = t
def used(tid, a, b):
    s = 0
    for x, y in runs.get(tid, ()):
        if y > a and x < b:
            s += min(y, b) - max(x, a)
    return s
rows = []
for tid, w, d in waits:
    if tidpid.get(tid) not in pids:
        continue
    rows.append((used(tid, w - 20_000_000, w), d))
buckets = [(0, 1e6), (1e6, 3e6), (3e6, 6e6), (6e6, 1e12)]
print('cpu used in the 20 ms before the wake-up | wake-ups | wait p50 us | p99 us | waits >= 1 ms')
for lo, hi in buckets:
    ws = sorted(d for u, d in rows if lo <= u < hi)
    if not ws:
        continue
    q = lambda f: ws[min(len(ws) - 1, int(f * len(ws)))] / 1e3
    print(f'{lo/1e6:.0f}-{hi/1e6:.0f} ms | {len(ws)} | {q(0.5):.0f} | {q(0.99):.0f} | {sum(1 for d in ws if d >= 1e6)}')
