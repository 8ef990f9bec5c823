#!/usr/bin/env python3
"""Where the layout of a round trip's pair changes, from perf's scheduler
tracepoints (docs/latency.md, "What keeps a pair on one vCPU").

    perf record -q -a -m 1024 -o /tmp/r.data -e sched:sched_waking,sched:sched_wakeup,\
sched:sched_switch,sched:sched_migrate_task,syscalls:sys_enter_nanosleep -- /tmp/lp -n 20000 -impl tls
    perf script -i /tmp/r.data -F comm,pid,tid,cpu,time,event,trace --ns > /tmp/r.txt
    python3 bench/internal/latencyprobe/layoutflips.py /tmp/r.txt 21000

The binary must be named lp*; the second argument is the round trips run
(warm-up included). A message wake-up is one of an lp thread by a thread
of the other lp process; the runtime's monitor threads (sysmon: a thread
with more than 50 nanosleeps) are left out, since a timer interrupt
taken while the peer's thread runs shows as woken by it. Each message
wake-up is "same" (placed on its waker's vCPU) or "apart"; at every
change from one to the other the script says why: the wakee was moved
off the vCPU it last ran on by the wake-up itself, the waker ran on
another vCPU than before, or a different thread of the process was
woken (and how that thread was last woken). Last line: message wake-ups
a round trip, the share on the waker's vCPU, the share whose wakee was
not the process's previous one, and layout changes a round trip.
"""
import re, sys, collections
LINE = re.compile(r'^\s*(\S+)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$')
rts = int(sys.argv[2])
last_cpu = {}; tg = {}; lastwakee = {}; prevcls = None
waker_of = {}  # tid -> (waker tid, waker pid, kind) of its last wake
nst = collections.Counter()
out = collections.Counter()
pend = {}
same_n = collections.Counter()
msgwoken = set()
sysm = collections.Counter(l.split()[1].split('/')[1] for l in open(sys.argv[1]) if 'nanosleep' in l)
sysm = {int(k) for k, v in sysm.items() if v > 50}
nmsg = nnew = 0
for line in open(sys.argv[1]):
    m = LINE.match(line)
    if not m: continue
    comm, pid, tid, cpu, t, ev, tr = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), float(m.group(5)), m.group(6), m.group(7)
    tg[tid] = pid
    if ev.endswith('nanosleep'): nst[tid] += 1; continue
    if ev == 'sched:sched_switch':
        nx = int(re.search(r'next_pid=(\d+)', tr).group(1))
        if nx: last_cpu[nx] = cpu
        continue
    if ev == 'sched:sched_waking':
        mm = re.search(r'comm=(\S+) pid=(\d+)', tr); wk = int(mm.group(2))
        if not comm.startswith('lp') or not mm.group(1).startswith('lp'): continue
        pend[wk] = (tid, pid, cpu, last_cpu.get(wk, -1))
        continue
    if ev == 'sched:sched_wakeup':
        mm = re.search(r'pid=(\d+) .*target_cpu=(\d+)', tr); wk, tc = int(mm.group(1)), int(mm.group(2))
        if wk not in pend: continue
        wt, wp, wc, pc = pend.pop(wk)
        if wk in sysm: continue
        cross = tg.get(wk) is not None and tg[wk] != wp
        if not cross:
            waker_of[wk] = ('intra', nst[wt] > 50, 'placed on waker vcpu' if tc == wc else 'placed away', 'prev=waker' if pc == wc else 'prev=other', 'waker was msg-woken' if wt in msgwoken else 'waker not msg-woken')
            continue
        cls = 'same' if tc == wc else 'apart'
        newthread = lastwakee.get(tg[wk]) not in (None, wk)
        lastwakee[tg[wk]] = wk
        nmsg += 1; nnew += newthread
        same_n[cls] += 1
        if prevcls and prevcls != cls:
            how = 'new wakee thread' if newthread else 'same wakee thread'
            lw = waker_of.get(wk, ('msg', False))
            why = 'moved by wake-up' if tc != pc else ('waker on a new vCPU' if not newthread else 'its last wake: ' + lw[0] + (' by sysmon' if lw[1] else '') + (' ' + ' '.join(lw[2:]) if len(lw) > 2 else ''))
            out[(prevcls + '->' + cls, how, why)] += 1
        waker_of[wk] = ('msg', False)
        msgwoken.add(wk)
        prevcls = cls
for k, v in sorted(out.items(), key=lambda x: -x[1]): print('%-12s %-18s %-90s %5d  %.4f/rt' % (k + (v, v / rts)))
print('sysmon tids', sorted(sysm), 'msg wakes/rt %.2f, same vCPU %.1f%%, wakee differs from the last %.2f%%, layout changes/rt %.4f' % (nmsg / rts, 100 * same_n['same'] / nmsg, 100 * nnew / nmsg, sum(out.values()) / rts))
