"""The scheduler events of `perf script --ns -F comm,pid,tid,cpu,time,event,trace`,
parsed once for the scripts of this folder that read them (lagwait.py,
longwaits.py): events() yields one Event a sched:* line, the time in ns; the
helpers take the fields of a sched_switch or sched_wakeup out of its trace.
"""
import re
from collections import namedtuple

LINE = re.compile(r'(\S+)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+): (.*)')
Event = namedtuple('Event', 'comm pid tid cpu t name trace')


def events(lines):
    """Yields an Event for each sched:* line; pid, tid and cpu stay strings."""
    for line in lines:
        m = LINE.search(line)
        if m:
            comm, pid, tid, cpu, t, name, tr = m.groups()
            yield Event(comm, pid, tid, cpu, int(t.replace('.', '')), name, tr)


Switch = namedtuple('Switch', 'prev_pid prev_state prev_comm next_pid')


def switch(trace):
    """The fields of a sched_switch's trace that the scripts use."""
    return Switch(re.search(r'prev_pid=(\d+)', trace).group(1),
                  re.search(r'prev_state=(\S+)', trace).group(1),
                  re.search(r'prev_comm=(.*?) prev_pid', trace).group(1),
                  re.search(r'next_pid=(\d+)', trace).group(1))


def woken(trace):
    """The thread a sched_wakeup woke."""
    return re.search(r' pid=(\d+)', trace).group(1)
