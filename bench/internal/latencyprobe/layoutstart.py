#!/usr/bin/env python3
"""How a short run's layout forms and ends, from perf's scheduler
tracepoints (docs/latency.md, "What forms a pair's layout").

    perf record -q -a -m 1024 -o /tmp/r.data -e sched:sched_waking,sched:sched_wakeup,\
sched:sched_switch,sched:sched_migrate_task,syscalls:sys_enter_nanosleep -- /tmp/lp -n 2000 -impl mesh
    perf script -i /tmp/r.data -F comm,pid,tid,cpu,time,event,trace --ns > /tmp/r.txt
    python3 bench/internal/latencyprobe/layoutstart.py /tmp/r.txt        # one summary line
    python3 bench/internal/latencyprobe/layoutstart.py /tmp/r.txt 80     # the first 80 message wake-ups

The binary must be named lp*. Message wake-ups as in layoutflips.py (an
lp thread woken by the other lp process's thread; the monitor threads,
more than 20 nanosleeps, left out). The ping-pong starts at the first
message wake-up followed by 25 less than 150 us apart (the link's set-up
and the spawn come before). Summary: "end", the share of the last 2 000
message wake-ups placed on their waker's vCPU; for windows of the
ping-pong's message wake-ups (0-50, 50-200, ...; the warm-up's 1 000
round trips are about the first 1 500), that share and the wake-ups that
moved their wakee off the vCPU it last ran on; the first ping-pong
wake-up (wakee, its previous vCPU, where it was placed, the waker's
vCPU); each process's share of CPU time on cpu0 before the ping-pong;
the threads that took message wake-ups and how often the wakee thread of
a process changed.
"""
import re, sys, collections
LINE = re.compile(r'^\s*(\S+)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$')
ev_all = []
nst = collections.Counter()
for line in open(sys.argv[1]):
    m = LINE.match(line)
    if not m: continue
    comm, pid, tid, cpu, t, ev, tr = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), float(m.group(5)), m.group(6), m.group(7)
    if ev.endswith('nanosleep'):
        if comm.startswith('lp'): nst[tid] += 1
        continue
    ev_all.append((comm, pid, tid, cpu, t, ev, tr))
sysm = {k for k, v in nst.items() if v > 20}
tg = {}; pids = []
for comm, pid, tid, cpu, t, ev, tr in ev_all:
    if comm.startswith('lp'):
        tg[tid] = pid
        if pid not in pids: pids.append(pid)
client = pids[0]
name = lambda p: 'C' if p == client else 'P'
last_cpu = {}; pend = {}; msgs = []
run = collections.defaultdict(lambda: collections.Counter())  # tid -> cpu -> time
oncpu = {}  # cpu -> (tid, since)
curr = {0: 0, 1: 0}
for comm, pid, tid, cpu, t, ev, tr in ev_all:
    if ev == 'sched:sched_switch':
        pv = int(re.search(r'prev_pid=(\d+)', tr).group(1)); nx = int(re.search(r'next_pid=(\d+)', tr).group(1))
        if cpu in oncpu:
            ot, since = oncpu[cpu]
            if ot: run[ot][cpu] += t - since
        oncpu[cpu] = (nx, t); curr[cpu] = nx
        if nx: last_cpu[nx] = cpu
    elif ev == 'sched:sched_waking':
        mm = re.search(r'comm=(\S+) pid=(\d+)', tr); wk = int(mm.group(2))
        if not comm.startswith('lp') or not mm.group(1).startswith('lp'): continue
        pend[wk] = (tid, pid, cpu, last_cpu.get(wk, -1), t)
    elif ev == 'sched:sched_wakeup':
        mm = re.search(r'pid=(\d+) .*target_cpu=(\d+)', tr); wk, tc = int(mm.group(1)), int(mm.group(2))
        if wk not in pend: continue
        wt, wp, wc, pc, tw = pend.pop(wk)
        if wk in sysm or wt in sysm: continue
        if tg.get(wk) in (None, wp): continue
        other = 1 - wc
        msgs.append(dict(t=tw, wt=wt, wp=wp, wc=wc, wk=wk, kp=tg[wk], tc=tc, pc=pc, otheridle=curr[other] == 0,
                         snap=dict((tid_, dict(c)) for tid_, c in run.items())))
if len(sys.argv) > 2:
    t0 = msgs[0]['t']
    for i, m in enumerate(msgs[:int(sys.argv[2])]):
        print('%4d %9.1fus %s%d@%d -> %s%d prev%d tgt%d %s' % (i, (m['t'] - t0) * 1e6, name(m['wp']), m['wt'], m['wc'], name(m['kp']), m['wk'], m['pc'], m['tc'], 'SAME' if m['tc'] == m['wc'] else 'apart'))
    sys.exit()
# ping-pong: last 6000 msgs minus tail; find start as index len-6000ish by regular alternation
N = len(msgs)
def share(a, b):
    s = msgs[a:b]
    return sum(m['tc'] == m['wc'] for m in s) / max(1, len(s))
ps = None
for i in range(N - 25):
    if all(msgs[j + 1]['t'] - msgs[j]['t'] < 150e-6 for j in range(i, i + 25)):
        ps = i; break
pp = msgs[ps:N - 10]
def win(a, b):
    s = pp[a:b]
    if not s: return '   -   '
    return '%3.0f%%/%d' % (100 * sum(m['tc'] == m['wc'] for m in s) / len(s), sum(m['tc'] != m['pc'] for m in s))
end = sum(m['tc'] == m['wc'] for m in pp[-2000:]) / len(pp[-2000:])
# setup cpu time per process per cpu before ping-pong
snap = msgs[ps]['snap']
st = {client: collections.Counter(), -1: collections.Counter()}
for tid_, c in snap.items():
    if tid_ not in tg: continue
    k = client if tg[tid_] == client else -1
    for cc, v in c.items(): st[k][cc] += v
def fmt(c):
    tot = sum(c.values()) or 1
    return 'cpu0 %2.0f%%' % (100 * c[0] / tot)
wakees = collections.Counter((name(m['kp']), m['wk']) for m in pp)
chg = 0; lastw = {}
for m in pp:
    if lastw.get(m['kp']) not in (None, m['wk']): chg += 1
    lastw[m['kp']] = m['wk']
first = pp[0]
print('%s msgs=%d ps=%d end=%3.0f%% | win0-50 %s 50-200 %s 200-500 %s 500-1000 %s 1000-2000 %s | first pp: %s%d prev%d tgt%d waker@%d | setup C %s P %s | wakee tids %s changes %d' % (
    sys.argv[1], N, ps, 100 * end, win(0, 50), win(50, 200), win(200, 500), win(500, 1000), win(1000, 2000),
    name(first['kp']), first['wk'], first['pc'], first['tc'], first['wc'], fmt(st[client]), fmt(st[-1]),
    ' '.join('%s%d:%d' % (k[0], k[1], v) for k, v in wakees.most_common(6)), chg))
