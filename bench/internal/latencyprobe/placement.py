#!/usr/bin/env python3
"""Where the kernel places a round trip's woken thread, from perf's scheduler
tracepoints (docs/latency.md).

    perf record -q -a -m 1024 -k CLOCK_MONOTONIC -o /tmp/s.data \
        -e sched:sched_waking,sched:sched_wakeup,sched:sched_wakeup_new,sched:sched_switch,sched:sched_migrate_task \
        -- /tmp/lp -n 20000 -impl mesh
    perf script -i /tmp/s.data -F comm,pid,tid,cpu,time,event,trace --ns > /tmp/s.txt
    python3 bench/internal/latencyprobe/placement.py /tmp/s.txt [-show N]

Run one -impl at a time (tls or mesh). The scheduler's events alone are
light (a few a round trip); the probe's system calls can be added, recorded
by a second perf inside the first (per task, which keeps perf's own writes
out of them, but slows every system call by about a microsecond):

    perf record -q -a -m 1024 -k CLOCK_MONOTONIC -o /tmp/s.data -e ...as above... -- \
      perf record -q -m 1024 -k CLOCK_MONOTONIC -o /tmp/c.data \
        -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -- /tmp/lp -n 20000 -impl mesh
    perf script -i /tmp/c.data -F comm,pid,tid,cpu,time,event,trace --ns > /tmp/c.txt
    python3 bench/internal/latencyprobe/placement.py /tmp/s.txt -sys /tmp/c.txt

The probe's binary must be named lp... (its events are found by that name).
The requester is latencyprobe's client (the first lp process in the trace),
its peer the process it wakes most. A message's wake-up is a thread of one
of the two waking a thread of the other: only the socket does that (the
mailbox's eventfd and Go's futexes stay inside a process), except a timer's
interrupt that lands while the other process runs, which the scheduler's
events alone cannot tell apart (rare: a few a second); with -sys, only
wake-ups inside a write(2) of more than 8 bytes count. For each it reports:

  - same / other: the woken thread was placed on the waker's CPU or not;
  - the woken thread's previous CPU, and whether it was idle then;
  - what else was runnable on the waker's CPU, and how many threads the
    waker's process woke of its own in the 30 us before (Go's wakep);
  - whether the woken thread is the one the side's last wake-up woke
    (Go threads taking turns in the netpoller) and whether it was moved
    (sched_migrate_task outside a wake-up: the kernel's load balancing)
    since it last ran;
  - with -sys: the system call it slept in, whether it is the thread that
    then reads the message, and the call the waker makes next (its work
    after the write, while a woken thread on its CPU waits);
  - how often another Go thread than last time was woken (threads taking
    turns in the netpoller), what had last started it, and how often each
    process's monitor thread (sysmon) was woken by a timer;
  - the round trip (a requester's wake-up to its next) by placement;
  - how long a woken thread waits for its CPU, and for those that wait
    over 100 us, what held the CPU (a busy machine's tail);
  - how the placement changes from one wake-up to the next, and, for each
    change, what made it: a balance had moved the woken thread, another
    thread was woken than last time, the woken thread's previous CPU was
    busy, its netpoller wait had timed out (-sys), or none of these (the
    kernel chose the idle CPU although the woken thread last ran on the
    waker's).

-show N prints the events around the first N changes (-only TEXT: only the
changes whose cause contains TEXT). The first tenth (warm-up) is dropped.
Counts are of wake-ups: two a round trip, one when the woken thread
preempts the writer and answers before the writer sleeps.
"""
import collections
import re
import sys

LINE = re.compile(r'\s*(.+?)\s+(-?\d+)/(-?\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)')
KV = re.compile(r'(\w+)=(\S+)')
NAMES = {0: 'read', 1: 'write', 202: 'futex', 232: 'epoll_wait', 233: 'epoll_ctl',
         281: 'epoll_pwait', 35: 'nanosleep', 230: 'clock_nanosleep', 24: 'sched_yield',
         234: 'tgkill', 441: 'epoll_pwait2', 290: 'eventfd2', 15: 'rt_sigreturn', 271: 'ppoll',
         98: 'getrusage', 39: 'getpid'}


def load(files):
    ev = []
    for fn in files:
        for line in open(fn):
            m = LINE.match(line)
            if not m:
                continue
            comm, pid, tid, cpu, t, name, rest = m.groups()
            ev.append((float(t) * 1e6, int(pid), int(tid), int(cpu), name.split(':')[1], rest, comm.strip()))
    ev.sort(key=lambda e: e[0])
    return ev


def pct(a, b):
    return f'{a:6d} ({100 * a / max(b, 1):5.1f}%)'


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    files, show, sysf = [args[0]], 0, None
    if '-sys' in args:
        sysf = args[args.index('-sys') + 1]
        files.append(sysf)
    only = None
    if '-show' in args:
        show = int(args[args.index('-show') + 1])
    if '-only' in args:
        only = args[args.index('-only') + 1]
    ev = load(files)

    # Processes: the command's first process (wakeup_new's or first event's)
    # is the requester; its peer is the process whose threads it wakes most.
    tid_pid = {}
    for e in ev:
        if e[2] > 0:
            tid_pid.setdefault(e[2], e[1])
    lp = [e for e in ev if e[6].startswith('lp')]
    req = lp[0][1]
    woke = collections.Counter()
    for e in ev:
        if e[4] == 'sched_waking' and e[1] == req:
            p = tid_pid.get(int(dict(KV.findall(e[5]))['pid']))
            if p is not None and p != req:
                woke[p] += 1
    far = woke.most_common(1)[0][0]
    side = {req: 'req', far: 'far'}

    cur = {}                               # cpu -> running tid (0: idle)
    queued = collections.defaultdict(set)  # cpu -> runnable tids not running
    last_cpu = {}                          # tid -> cpu it last ran on
    moved = set()                          # tids moved by a balance since their last message wake-up
    in_sys = {}                            # tid -> (nr, size) of the call it is in
    last_sys = {}                          # tid -> nr of the last call it entered
    waking = {}                            # wakee -> record awaiting sched_wakeup
    last_wakee = {}                        # side -> tid its last message woke
    after = {}                             # waker tid -> record awaiting its next call
    recs = []
    rec_of = {}                            # wakee -> its last message wake-up's record
    own = collections.deque()              # (t, pid): wake-ups of a process's thread by its own, last 30 us
    runwait = {}                           # wakee -> its message wake-up, until it runs
    irq_woken = collections.Counter()      # tid -> wake-ups from an idle CPU's interrupt (timers)
    reading = {}                           # pid -> its last message wake-up, until a message read
    other_wakes = {}                       # tid -> its last other wake-up since its last message one

    for t, pid, tid, cpu, name, rest, comm in ev:
        if name == 'sched_switch':
            kv = dict(KV.findall(rest))
            prev, nxt = int(kv['prev_pid']), int(kv['next_pid'])
            if kv['prev_state'].startswith('R') and prev:
                queued[cpu].add(prev)
            queued[cpu].discard(nxt)
            cur[cpu] = nxt
            if nxt:
                last_cpu[nxt] = cpu
                r = runwait.pop(nxt, None)
                if r is not None:
                    r['wait'] = t - r['woke_at']
                    r['before'] = kv['prev_comm']
            continue
        if name == 'sched_migrate_task':
            kv = dict(KV.findall(rest))
            p, o, d = int(kv['pid']), int(kv['orig_cpu']), int(kv['dest_cpu'])
            if p in queued[o]:
                queued[o].discard(p)
                queued[d].add(p)
            if p not in waking:
                moved.add(p)   # not the wake-up's own placement: a balance
                last_cpu[p] = d
                if p in rec_of:
                    rec_of[p]['moved_after'] = True
            continue
        if name == 'sched_waking':
            wakee = int(dict(KV.findall(rest))['pid'])
            wp = tid_pid.get(wakee)
            if pid in side and wp == pid:
                own.append((t, pid))
            if pid == 0:
                irq_woken[wakee] += 1
            if wp in side and (pid not in side or wp == pid):
                # Another wake-up of a thread of the pair: a timer (in an
                # interrupt, current is whoever ran), or its own process.
                who = 'own process' if pid == wp else 'the other process' if pid in side else 'interrupt/other'
                other_wakes[wakee] = (who, cpu, tid)
            if pid not in side or wp not in side or wp == pid:
                continue
            if sysf is not None:
                c = in_sys.get(tid)
                if not c or c[0] != 1 or c[1] <= 8:
                    continue
            p = last_cpu.get(wakee)
            while own and own[0][0] < t - 30:
                own.popleft()
            r = dict(own=sum(1 for o in own if o[1] == pid),t=t, side=side[pid], waker=tid, wcpu=cpu, wakee=wakee, prev=p,
                     prev_idle=(p is not None and p != cpu and cur.get(p, 0) == 0),
                     others=sorted(comm_of(x, ev) for x in queued[cpu] if x != tid),
                     same_thread=last_wakee.get(side[pid]) == wakee, moved=wakee in moved,
                     slept=last_sys.get(wakee), target=None, next_call=None, moved_after=False)
            r['between'] = other_wakes.pop(wakee, None)
            last_wakee[side[pid]] = wakee
            moved.discard(wakee)
            rec_of[wakee] = r
            reading[wp] = r
            waking[wakee] = r
            after[tid] = r
            recs.append(r)
            continue
        if name == 'sched_wakeup':
            kv = dict(KV.findall(rest))
            wakee, tc = int(kv['pid']), int(kv['target_cpu'])
            if wakee != tid:
                queued[tc].add(wakee)
            r = waking.pop(wakee, None)
            if r is not None:
                r['target'] = tc
                r['woke_at'] = t
                r['target_ran'] = comm_of(cur.get(tc, 0), ev) if cur.get(tc, 0) else 'idle'
                runwait[wakee] = r
            continue
        if tid > 0:
            last_cpu[tid] = cpu
        if name == 'sys_enter':
            nr = int(rest.split()[1])
            a = rest[rest.index('(') + 1:rest.index(')')].split(', ') if '(' in rest else []
            in_sys[tid] = (nr, int(a[2], 16) if nr == 1 else int(a[3], 16) if nr == 281 else 0)
            last_sys[tid] = nr
            r = after.get(tid)
            if r is not None and r['t'] < t and nr != 1:
                r['next_call'] = nr
                del after[tid]
        elif name == 'sys_exit':
            c = in_sys.pop(tid, None)
            if c and c[0] == 0 and pid in side and rest.split('=')[-1].strip().lstrip('-').isdigit() \
                    and int(rest.split('=')[-1]) > 8:
                # A message read: by the thread the message's wake-up woke?
                r = reading.pop(pid, None)
                if r is not None:
                    r['reader'] = tid == r['wakee']
            if c and c[0] == 281 and c[1] not in (0, 0xffffffffffffffff) and rest.rstrip().endswith('= 0'):
                # A netpoller wait that timed out: a Go timer woke the thread.
                other_wakes[tid] = ('timer', cpu, 0)

    recs = [r for r in recs[len(recs) // 10:] if r['target'] is not None]
    for r in recs:
        r['pl'] = 'S' if r['target'] == r['wcpu'] else 'O'
    print(f'requester pid {req}, peer pid {far}: {len(recs)} wake-ups of one by the other')
    for sd in ('req', 'far'):
        rs = [r for r in recs if r['side'] == sd]
        same = [r for r in rs if r['pl'] == 'S']
        print(f'\n== woken by the {sd}: {len(rs)}; placed on the waker\'s CPU {pct(len(same), len(rs))}')
        print('  wakers:', ', '.join(f'{k}:{v}' for k, v in collections.Counter(r['waker'] for r in rs).most_common(5)))
        print('  woken: ', ', '.join(f'{k}:{v}' for k, v in collections.Counter(r['wakee'] for r in rs).most_common(5)))
        for label, sub in (('same CPU', same), ('other CPU', [r for r in rs if r['pl'] == 'O'])):
            if not sub:
                continue
            c = collections.Counter()
            for r in sub:
                c['woken ran last on the waker\'s CPU' if r['prev'] == r['wcpu'] else
                  'woken ran last on the other CPU, idle now' if r['prev_idle'] else
                  'woken ran last on the other CPU, busy now'] += 1
                c['runnable beside the waker: %d' % min(len(r['others']), 2)] += 1
                c['own-process wake-ups in the 30 us before: %d' % min(r['own'], 2)] += 1
                c['woken: the same thread as last time' if r['same_thread'] else 'woken: another thread than last time'] += 1
                if r['moved']:
                    c['woken: moved by a balance since its last wake-up'] += 1
                if sysf is not None:
                    c['woken slept in ' + NAMES.get(r['slept'], str(r['slept']))] += 1
                    c['the message read by ' + ('the woken thread' if r.get('reader') else
                                                'another thread' if 'reader' in r else 'nobody seen')] += 1
                    c['waker\'s next call ' + NAMES.get(r['next_call'], str(r['next_call']))] += 1
            print(f'  {label}: {len(sub)}')
            for k in sorted(c):
                print(f'    {k:45s} {pct(c[k], len(sub))}')
            oth = collections.Counter(x for r in sub for x in r['others'])
            if oth:
                print('    runnable beside the waker:', ', '.join(f'{k}:{v}' for k, v in oth.most_common(6)))

    # The round trip by placement: from one wake-up by the requester to its
    # next, both wake-ups inside placed the same way (a round trip in which
    # the writer was preempted by the woken thread has no wake-up of the
    # requester: counted apart).
    rq = [i for i, r in enumerate(recs) if r['side'] == 'req']
    by = collections.defaultdict(list)
    for i, j in zip(rq, rq[1:]):
        pls = ''.join(r['pl'] for r in recs[i:j + 1])
        key = 'both on one CPU' if set(pls) == {'S'} else 'one CPU each' if set(pls) == {'O'} else 'mixed'
        if j - i != 2:
            key += ' (a side not woken)'
        by[key].append(recs[j]['t'] - recs[i]['t'])
    print('\nround trip (requester wake-up to the next), by placement:')
    for k, v in sorted(by.items()):
        v.sort()
        print(f'  {k:38s} n={len(v):6d} p50 {v[len(v) // 2]:6.1f} us  p90 {v[len(v) * 9 // 10]:6.1f}')

    # Go threads taking turns: which wake-up last started a thread that
    # the message then woke instead of the last one. The process's thread
    # most woken by timer interrupts is taken for its monitor (sysmon,
    # which sleeps in nanosleep between its looks).
    mon = {}
    for t_, p_ in tid_pid.items():
        if p_ in side and irq_woken[t_] > irq_woken.get(mon.get(p_), 0):
            mon[p_] = t_
    turns = [r for r in recs if not r['same_thread']]
    started = collections.Counter()
    for r in turns:
        b = r['between']
        started['never woken but by messages' if b is None else
                'by the monitor (sysmon)' if b[0] == 'own process' and b[2] in mon.values() else
                'by another thread of its process' if b[0] == 'own process' else
                'by a timer interrupt or another process'] += 1
    print(f'\nanother thread woken than last time: {len(turns)} of {len(recs)}; it had last been started',
          ', '.join(f'{k}: {v}' for k, v in started.most_common()))
    print('  timer-interrupt wake-ups of each process\'s monitor (sysmon):',
          ', '.join(f'{side[p]} {irq_woken[t]}' for p, t in sorted(mon.items())),
          f'over {(ev[-1][0] - ev[0][0]) / 1e6:.2f} s')

    # From the wake-up to the woken thread running: the tail of the round
    # trip on a busy machine is a woken thread waiting for its CPU.
    ws = sorted((r for r in recs if 'wait' in r), key=lambda r: r['wait'])
    if ws:
        q = lambda p: ws[min(len(ws) - 1, int(p * len(ws)))]['wait']
        print(f'\nwake-up -> the woken thread runs: p50 {q(.5):.1f} us, p90 {q(.9):.1f}, p99 {q(.99):.1f}, max {ws[-1]["wait"]:.1f}')
        slow = [r for r in ws if r['wait'] > 100]
        print(f'  over 100 us: {len(slow)}; placed on the waker\'s CPU {sum(r["pl"] == "S" for r in slow)}; '
              f'what ran on the target CPU at the wake-up:',
              ', '.join(f'{k}:{v}' for k, v in collections.Counter(r['target_ran'] for r in slow).most_common(5)),
              '; ran just before the woken thread:',
              ', '.join(f'{k}:{v}' for k, v in collections.Counter(r['before'] for r in slow).most_common(5)))

    # Changes of placement from one wake-up to the next, and their causes.
    tr = collections.Counter(zip((r['pl'] for r in recs), (r['pl'] for r in recs[1:])))
    print('\nnext placement given this one:', ', '.join(f'{a}->{b}:{v}' for (a, b), v in sorted(tr.items())))
    cause = collections.Counter()
    for a, b in zip(recs, recs[1:]):
        if a['pl'] == b['pl']:
            continue
        why = ('a balance moved the woken' if b['moved'] else
               'a balance moved the waker' if a['wakee'] == b['waker'] and a['moved_after'] else
               'another thread woken' if not b['same_thread'] else
               'woken\'s previous CPU busy' if b['prev'] != b['wcpu'] and not b['prev_idle'] else
               'same thread, its netpoller wait timed out in between' if b['between'] and b['between'][0] == 'timer' else
               'same thread, woken by a timer in between' if b['between'] and b['between'][0] == 'interrupt/other' else
               'same thread, woken by its process in between' if b['between'] and b['between'][0] == 'own process' else
               'same thread, not moved')
        cause[f"{a['pl']}->{b['pl']}: {why}"] += 1
        b['why'] = why
    for k in sorted(cause):
        print(f'  {k:50s} {cause[k]}')

    shown = 0
    for a, b in zip(recs, recs[1:]):
        if a['pl'] == b['pl'] or shown >= show or (only and only not in b['why']):
            continue
        shown += 1
        print(f"\n---- {a['pl']} -> {b['pl']} at {b['t']:.1f}")
        for e in ev:
            if a['t'] - 60 <= e[0] <= b['t'] + 5 and (e[1] in side or any(
                    f'pid={x} ' in e[5] for x in tid_pid if tid_pid[x] in side)):
                print(f'{e[0] - b["t"]:9.1f} {e[6][:10]:>10s} {e[1]}/{e[2]} [{e[3]}] {e[4]} {e[5][:110]}')


_comms = {}


def comm_of(tid, ev):
    if not _comms:
        for e in ev:
            _comms.setdefault(e[2], e[6])
    return _comms.get(tid, str(tid))


if __name__ == '__main__':
    main()
