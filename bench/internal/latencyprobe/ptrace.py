#!/usr/bin/env python3
"""An execution trace's state transitions as TSV, for holsplit.py
(docs/latency.md, "Head-of-line blocking: where a slow round trip waits").

    go tool trace -d=parsed bench.trace | python3 ptrace.py > bench.tsv

One line a goroutine's or P's state transition: time (ns, CLOCK_MONOTONIC,
as perf's -k mono), the M (its OS thread id), P, G, GoID or ProcID, the id,
from, to, the reason, and up to 8 frames of the transition's stack.
"""
import sys, re
HEAD = re.compile(r'^M=(-?\d+) P=(-?\d+) G=(-?\d+) (\w+) Time=(\d+)(.*)$')
TR = re.compile(r' (GoID|ProcID)=(\d+) (\w+)->(\w+) Reason="([^"]*)"')
out = sys.stdout
cur = None
frames = []
instack = None
def flush():
    global cur, frames
    if cur is not None:
        out.write('\t'.join(cur + [';'.join(frames[:8])]) + '\n')
    cur = None
    frames = []
for line in sys.stdin:
    if line.startswith('M='):
        flush()
        m = HEAD.match(line)
        if not m:
            continue
        M, P, G, kind, t, rest = m.groups()
        if kind != 'StateTransition':
            cur = None
            continue
        tm = TR.search(rest)
        if not tm:
            continue
        cur = [t, M, P, G, tm.group(1), tm.group(2), tm.group(3), tm.group(4), tm.group(5).replace(' ', '_')]
        instack = None
    elif line.startswith('TransitionStack=') or line.startswith('Stack='):
        instack = line.startswith('Transition')
    elif line.startswith('\t') and not line.startswith('\t\t') and cur is not None and instack is not None:
        # the transition's stack if it has one, else the event's
        if instack or not frames:
            frames.append(line.strip().split(' @ ')[0])
flush()
