#!/usr/bin/env python3
"""User-space CPU per round trip of latencyprobe's goroutines, from perf samples (docs/latency.md).

    perf record -F 5000 -e cpu-clock -g -o /tmp/u.data -- /tmp/lp -n 50000 -impl mesh
    perf script -i /tmp/u.data > /tmp/u.txt
    python3 bench/internal/latencyprobe/usercpu.py /tmp/u.txt 51000 5000   # round trips with warm-up, Hz

Counts the samples under each probe goroutine's root function, leaving out
samples in the kernel and samples whose stack passes a system call (on a
paravirtualised VM a system call's time shows as user samples at its
return), and prints µs per round trip (and, in brackets, all its samples).
"""
import sys, re, collections
path, rts, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
roots = {'main.peer.func1': 'far echo', 'main.pingpongMesh.func1': 'requester', 'main.tlsEcho.func1': 'tls echo', 'main.pingpongTLS': 'tls client'}
sysc = re.compile(r'Syscall6|RawSyscall|EpollCtl|EpollWait|^nbio|entry_SYSCALL')
cnt = collections.Counter(); allk = collections.Counter()
def flush(stack):
    if not stack: return
    syms = []
    for f in stack:
        parts = f.split(None, 1)
        sym = parts[1] if len(parts) > 1 else ''
        sym = re.sub(r'\+0x[0-9a-f]+ ', ' ', sym)
        syms.append(sym)
    name = None
    for s in syms:
        base = s.split(' (')[0]
        if base in roots: name = roots[base]; break
    if name is None: return
    allk[name] += 1
    if '[kernel' in syms[0]: return
    if any(sysc.search(s.split(' (')[0].replace('github.com/meshrt/mesh/internal/', '')) for s in syms): return
    cnt[name] += 1
stack = []
with open(path, errors='replace') as fh:
    for line in fh:
        if not line.strip():
            flush(stack); stack = []; continue
        if not line[0].isspace():
            stack = []; continue
        stack.append(line.strip())
flush(stack)
for name in roots.values():
    if allk[name]:
        print(f"{name}: user {cnt[name]/hz/rts*1e6:.2f} us/rt (all {allk[name]/hz/rts*1e6:.2f})")
