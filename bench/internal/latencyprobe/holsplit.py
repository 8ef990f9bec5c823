#!/usr/bin/env python3
"""Where the slowest round trips of a ping-pong beside a stream spend their
time (docs/latency.md, "Head-of-line blocking: where a slow round trip
waits"), from the Go execution traces of both processes (ptrace.py's TSV),
perf's scheduler tracepoints and the benchmark's ping dump, all on
CLOCK_MONOTONIC:

    MESH_BENCH_PINGDUMP=/tmp/d/ping NODEPEER_TRACE=/tmp/d/peer.trace \
      perf record -k mono -e sched:sched_switch,sched:sched_wakeup,sched:sched_waking -a -o /tmp/d/ps.data -- \
      ./bench.test -test.run '^$' -test.bench 'HeadOfLine/stream=(none|1MiB)$' -test.benchtime 3000x -test.trace /tmp/d/bench.trace
    perf script --ns -i /tmp/d/ps.data -F comm,pid,tid,cpu,time,event,trace > /tmp/d/ps.txt
    go tool trace -d=parsed /tmp/d/bench.trace | python3 ptrace.py > /tmp/d/bench.tsv   # and peer
    python3 holsplit.py /tmp/d/ping.4.BenchmarkHeadOfLine_stream=1MiB /tmp/d/bench.tsv G1 /tmp/d/peer.tsv G2 /tmp/d/ps.txt [frac] [-v]

G1 is the pinging process's goroutine in the benchmark (its transitions
have pingpongMesh in their stacks), G2 the echo process's in the peer
(the goroutine with the most transitions through holdDuty in the ping
run's window). frac is the share of the slowest round trips (0.01). Each
µs of each such round trip is put in one class: a side's goroutine on a
CPU; running for Go but its thread preempted (runnable in the kernel);
runnable for Go with both Ps busy (Go's run queue) or with a P free and
its thread runnable in the kernel, running something else, or asleep;
or both goroutines waiting, the message on its way, and the receiving
side not yet noticed its input (its netpoller thread runnable, running
something else, or asleep). Then what ran on the CPUs while a thread of
the round trip waited in a kernel run queue (threads named by the
goroutine they ran most).
"""
import sys, re, bisect, collections

pingf, btsv, bg, ptsv, pg, pst = sys.argv[1:7]
frac = float(sys.argv[7]) if len(sys.argv) > 7 else 0.01
bg, pg = int(bg), int(pg)

pings = [tuple(map(int, l.split())) for l in open(pingf)]
lo, hi = pings[0][0] - 1_000_000, pings[-1][0] + pings[-1][1] + 1_000_000
slow = sorted(pings, key=lambda p: -p[1])[:max(1, int(len(pings) * frac))]

def load(tsv, goid):
    g = []   # (t, state, M)
    procs = collections.defaultdict(list)  # P -> [(t, state)]
    tids = set()
    for line in open(tsv):
        f = line.rstrip('\n').split('\t')
        t = int(f[0])
        if f[1] != '-1':
            tids.add(int(f[1]))
        if t < lo or t > hi:
            continue
        if f[4] == 'GoID' and int(f[5]) == goid:
            g.append((t, f[7], int(f[1])))
        elif f[4] == 'ProcID':
            procs[int(f[5])].append((t, f[7]))
    return g, procs, tids

def state_at(seq, t):
    i = bisect.bisect_right(seq[0], t) - 1
    return seq[1][i] if i >= 0 else None

bgs, bprocs, btids = load(btsv, bg)
pgs, pprocs, ptids = load(ptsv, pg)

def mk(seq):
    return ([s[0] for s in seq], [s[1:] for s in seq])
B, P = mk(bgs), mk(pgs)
BP = {k: mk([(a, (b,)) for a, b in v]) for k, v in bprocs.items()}
PP = {k: mk([(a, (b,)) for a, b in v]) for k, v in pprocs.items()}

# Thread states from perf: tid -> [(t, 'run'|'rq'|'sleep')]
LINE = re.compile(r'\s(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+): (.*)')
th = collections.defaultdict(list)
cpu_run = collections.defaultdict(list)  # cpu -> [(t, tid, comm)]
for line in open(pst):
    m = LINE.search(line)
    if not m:
        continue
    t = int(m.group(4).replace('.', ''))
    if t < lo or t > hi:
        continue
    ev, tr = m.group(5), m.group(6)
    if ev == 'sched_switch':
        pp = int(re.search(r'prev_pid=(\d+)', tr).group(1))
        ps = re.search(r'prev_state=(\S+)', tr).group(1)
        np_ = int(re.search(r'next_pid=(\d+)', tr).group(1))
        nc = re.search(r'next_comm=(.*?) next_pid', tr).group(1)
        th[pp].append((t, 'rq' if ps.startswith('R') else 'sleep'))
        th[np_].append((t, 'run'))
        cpu_run[int(m.group(3))].append((t, np_, nc))
    elif ev == 'sched_wakeup':
        pid = int(re.search(r' pid=(\d+)', tr).group(1))
        th[pid].append((t, 'rq'))
TH = {k: ([a for a, _ in v], [(b,) for _, b in v]) for k, v in th.items()}
CR = {k: ([a for a, _, _ in v], [(b, c) for _, b, c in v]) for k, v in cpu_run.items()}

def tstate(tid, t):
    s = TH.get(tid)
    if not s:
        return 'unknown'
    r = state_at(s, t)
    return r[0] if r else 'unknown'

def ps_running(PPm, t):
    n = 0
    for seq in PPm.values():
        r = state_at(seq, t)
        if r and r[0] == 'Running':
            n += 1
    return n

def any_rq(tids, t):
    return any(tstate(x, t) == 'rq' for x in tids)

def last_trans(seq, t, to):
    """time of the last transition to state `to` at or before t"""
    i = bisect.bisect_right(seq[0], t) - 1
    while i >= 0:
        if seq[1][i][0] == to:
            return seq[0][i]
        i -= 1
    return -1

def next_trans_m(seq, t, to):
    """M of the first transition to state `to` after t"""
    i = bisect.bisect_right(seq[0], t)
    while i < len(seq[0]):
        if seq[1][i][0] == to:
            return seq[1][i][1]
        i += 1
    return None

def classify(t):
    sb = state_at(B, t)
    sp = state_at(P, t)
    for side, s, PPm, tids in (('bench', sb, BP, btids), ('peer', sp, PP, ptids)):
        if s and s[0] in ('Running', 'Syscall'):
            ts = tstate(s[1], t)
            if ts == 'run':
                return side + ': on cpu' + (' (syscall)' if s[0] == 'Syscall' else '')
            if ts == 'rq':
                return side + ': thread runnable in kernel (preempted)'
            return side + ': thread asleep in ' + s[0]
        if s and s[0] == 'Runnable':
            if ps_running(PPm, t) >= 2:
                return side + ': Go-runnable, both Ps busy'
            m = next_trans_m(B if side == 'bench' else P, t, 'Running')
            ts = tstate(m, t)
            if ts == 'rq':
                return side + ': Go-runnable, a P free, its thread runnable in kernel'
            return side + ': Go-runnable, a P free, its thread ' + ts
    # both waiting: which way is the message going?
    rb = last_trans(B, t, 'Waiting')
    rp = last_trans(P, t, 'Waiting')
    side, PPm, tids = ('peer', PP, ptids) if rb >= rp else ('bench', BP, btids)
    if ps_running(PPm, t) >= 2:
        return side + ' to notice input: both Ps busy'
    m = next_trans_m(P if side == 'peer' else B, t, 'Runnable')
    ts = tstate(m, t)
    if ts == 'rq':
        return side + ' to notice input: a P free, the poller thread runnable in kernel'
    return side + ' to notice input: a P free, the poller thread ' + ts

# which goroutine a thread ran most in the window: from the traces
def tid_goroutines(tsv):
    cnt = collections.defaultdict(collections.Counter)
    for line in open(tsv):
        f = line.rstrip('\n').split('\t')
        t = int(f[0])
        if t < lo or t > hi or f[4] != 'GoID' or f[7] != 'Running':
            continue
        cnt[int(f[1])][int(f[5])] += 1
    return {k: v.most_common(1)[0][0] for k, v in cnt.items()}
tg = {}
for k, v in tid_goroutines(btsv).items():
    tg[k] = 'bench G%d' % v
for k, v in tid_goroutines(ptsv).items():
    tg[k] = 'peer G%d' % v
occ = collections.Counter()
def occupants(t):
    for cpu, seq in CR.items():
        r = state_at(seq, t)
        if r:
            occ[tg.get(r[0], r[1])] += 1

step = 1000  # ns
tot = collections.Counter()
rows = []
for s, d in slow:
    c = collections.Counter()
    for t in range(s, s + d, step):
        k = classify(t)
        c[k] += step
        if 'kernel' in k:
            occupants(t)
    tot.update(c)
    rows.append((s, d, c))
all_ns = sum(tot.values())
print(f'{len(slow)} slowest of {len(pings)} round trips; rtt {slow[-1][1]/1e3:.0f}-{slow[0][1]/1e3:.0f} us; total {all_ns/1e6:.1f} ms')
for k, v in tot.most_common():
    print(f'  {v/all_ns*100:5.1f}%  {v/1e6:7.2f} ms  {k}')
on = sum(occ.values())
print('running on the vCPUs while a thread of the round trip waited in the kernel run queue:')
for k, v in occ.most_common(12):
    print(f'  {v/on*100:5.1f}%  {k}')
if '-v' in sys.argv:
    for s, d, c in rows:
        print(s, d // 1000, 'us:', ', '.join(f'{k} {v//1000}' for k, v in c.most_common(4)))
