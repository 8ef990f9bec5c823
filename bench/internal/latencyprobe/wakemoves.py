#!/usr/bin/env python3
"""Where the kernel places a message's wakee against the vCPU it last ran
on (docs/latency.md, "What keeps a pair on one vCPU").

    python3 bench/internal/latencyprobe/wakemoves.py /tmp/r.txt 21000   # r.txt: as for layoutflips.py

For each message wake-up (an lp thread woken by the other lp process's
thread; sysmon left out), its class: the wakee's previous vCPU is the
waker's or the other one; that vCPU (or, when it is the waker's, the
other one) idle or busy, and for how long it had been idle; whether the
monitor thread (sysmon) ran there in the 200 us before; and whether the
wake-up placed the wakee on its previous vCPU ("stay") or elsewhere
("MOVED"). Counts and counts a round trip.
"""
import re, sys, collections
LINE = re.compile(r'^\s*(\S+)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$')
rts = int(sys.argv[2])
sysm = collections.Counter(l.split()[1].split('/')[1] for l in open(sys.argv[1]) if 'nanosleep' in l)
sysm = {int(k) for k, v in sysm.items() if v > 50}
tg = {}; last_cpu = {}; cur = {0: 0, 1: 0}; idle_since = {0: 0, 1: 0}; lastran = {0: 0, 1: 0}; pend = {}
sysmon_ran = {0: -1, 1: -1}
res = collections.Counter()
def bucket(d):
    for b in (20e-6, 50e-6, 100e-6, 200e-6, 1e-3):
        if d < b: return '<%dus' % int(b * 1e6)
    return '>=1ms'
for line in open(sys.argv[1]):
    m = LINE.match(line)
    if not m: continue
    comm, pid, tid, cpu, t, ev, tr = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), float(m.group(5)), m.group(6), m.group(7)
    tg[tid] = pid
    if ev == 'sched:sched_switch':
        nx = int(re.search(r'next_pid=(\d+)', tr).group(1)); pv = int(re.search(r'prev_pid=(\d+)', tr).group(1))
        if pv in sysm: sysmon_ran[cpu] = t
        if nx == 0 and cur[cpu] != 0: idle_since[cpu] = t; lastran[cpu] = pv
        cur[cpu] = nx
        if nx: last_cpu[nx] = cpu
    elif ev == 'sched:sched_waking' and comm.startswith('lp'):
        wk = int(re.search(r'pid=(\d+)', tr).group(1))
        if wk in sysm or tg.get(wk) in (None, pid): continue
        pc = last_cpu.get(wk, -1)
        if pc < 0: continue
        if pc == cpu:
            o = 1 - cpu
            st = 'prev=waker, other idle' if cur[o] == 0 else 'prev=waker, other busy'
            d = t - idle_since[o] if cur[o] == 0 else None
            sm = t - sysmon_ran[o] < 200e-6
        else:
            st = 'prev=other, idle' if cur[pc] == 0 else 'prev=other, busy'
            d = t - idle_since[pc] if cur[pc] == 0 else None
            sm = t - sysmon_ran[pc] < 200e-6
        pend[wk] = (st, cpu, pc, d, sm)
    elif ev == 'sched:sched_wakeup':
        mm = re.search(r'pid=(\d+) .*target_cpu=(\d+)', tr); wk, tc = int(mm.group(1)), int(mm.group(2))
        if wk not in pend: continue
        st, wc, pc, d, sm = pend.pop(wk)
        res[(st, bucket(d) if d is not None else '-', 'sysmon ran there <200us' if sm else '', 'MOVED' if tc != pc else 'stay')] += 1
for k in sorted(res): print('%-24s %-7s %-24s %-6s %6d %.4f/rt' % (k + (res[k], res[k] / rts)))
