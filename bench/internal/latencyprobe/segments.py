#!/usr/bin/env python3
"""Segments of a remote ping-pong from two runtime/traces (docs/latency.md).

    go tool trace -d=parsed client.trace > client.txt
    go tool trace -d=parsed peer.trace > peer.txt
    python3 bench/internal/latencyprobe/segments.py client.txt peer.txt

Per side, per received message: epoll return -> read -> mailbox wake ->
process runs -> direct write; then, across the two processes (trace clocks
are CLOCK_MONOTONIC on linux/amd64), write -> the other side's epoll return.
"""
import sys, re, bisect, statistics as st

def condense(fn):
    """One line per StateTransition event with the innermost frames of its transition stack."""
    lines=[]; cur=None; stk=[]; seen=False
    def flush():
        if cur is None: return
        f=[l.strip().split(' @ ')[0] for l in stk if l.startswith('\t') and not l.startswith('\t\t')]
        skip=('runtime.','sync.','syscall.','golang.org/x/sys','internal/')
        inner=[x for x in f if not x.startswith(skip)]
        hint=f[0].split('/')[-1]+(' <- '+inner[0].split('/')[-1] if inner and inner[0]!=f[0] else '') if f else ''
        lines.append(cur+' | '+hint)
    for line in open(fn):
        if line.startswith('M='):
            flush(); cur=line.rstrip(); stk=[]; seen=False
        elif line.startswith('\t') and cur is not None:
            if not seen: stk.append(line)
        elif line.startswith('Stack=') and stk:
            seen=True
    flush()
    return lines

rx=re.compile(r'M=(-?\d+) P=(-?\d+) G=(-?\d+) StateTransition Time=(\d+) (GoID|ProcID)=(\d+) (\w+)->(\w+) Reason="([^"]*)" \| ?(.*)')
def load(fn):
    ev=[]
    for l in condense(fn):
        m=rx.match(l)
        if m: ev.append(m.groups())
    return ev
def cycles(ev):
    # find proc G (writeFD writer) and loop G (unix.read)
    procG=next(e[5] for e in ev if 'writeFD' in e[9] and e[4]=='GoID')
    loopG=next(e[5] for e in ev if 'eventloop).read' in e[9] and e[4]=='GoID')
    cyc=[]; cur=None; last_wake=None; pending_epoll=None
    for e in ev:
        M,P,G,T,kind,id_,fr,to,reason,hint=e; T=int(T)
        if kind!='GoID': continue
        if id_==loopG and fr=='Syscall' and to=='Running': last_wake=T
        if id_==loopG and to=='Syscall' and 'eventloop).read' in hint:
            cur={'wake':last_wake,'rb':T,'parked':False}
        if cur is None: continue
        if id_==loopG and fr=='Syscall' and 'rb' in cur and 're' not in cur: cur['re']=T
        if id_==procG and fr=='Waiting' and to=='Runnable' and 'ready' not in cur: cur['ready']=T; cur['parked']=True
        if id_==loopG and to=='Syscall' and 'EpollWait' in hint and 're' in cur and 'ep0' not in cur: cur['ep0']=T
        if id_==procG and to=='Running' and 're' in cur and 'run' not in cur: cur['run']=T; cur['runM']=M
        if id_==procG and to=='Syscall' and 'writeFD' in hint and 'run' in cur and 'wb' not in cur: cur['wb']=T
        if id_==procG and fr=='Syscall' and 'wb' in cur and 'we' not in cur:
            cur['we']=T; cyc.append(cur); cur=None
    return cyc
def summ(name, vals):
    vals=[v/1000 for v in vals if v is not None]
    if not vals: return
    vals.sort(); q=lambda p: vals[min(len(vals)-1,int(p*len(vals)))]
    print(f"  {name:38s} n={len(vals):6d} mean={st.mean(vals):6.1f} p50={q(.5):6.1f} p90={q(.9):6.1f} p99={q(.99):6.1f}")
def cross(src,dst,name):
    wakes=sorted(c['wake'] for c in dst if c['wake'])
    d1=[]; d2=[]
    for c in src:
        i=bisect.bisect_left(wakes,c['wb'])
        if i<len(wakes) and wakes[i]-c['wb']<200000:
            d1.append(wakes[i]-c['wb']); d2.append(wakes[i]-c['we'])
    summ(name+': write begin -> other epoll ret', d1)
    summ(name+': write end -> other epoll ret', d2)

cyc={}
for fn in sys.argv[1:3]:
    cyc[fn]=cycles(load(fn))
    print(fn, 'cycles', len(cyc[fn]))
    for label,sel in (('all',lambda c:True),('parked (mutex wake)',lambda c:c['parked']),('not parked',lambda c:not c['parked'])):
        cs=[c for c in cyc[fn] if sel(c)]
        print(' ',label, len(cs), f"{100*len(cs)/len(cyc[fn]):.0f}%")
        summ('epoll ret -> read begin', [c['rb']-c['wake'] for c in cs if c['wake']])
        summ('read syscall', [c['re']-c['rb'] for c in cs])
        summ('read end -> mailbox ready (parked only)', [c['ready']-c['re'] for c in cs if 'ready' in c])
        summ('ready -> loop epoll(0) (parked only)', [c['ep0']-c['ready'] for c in cs if 'ready' in c and 'ep0' in c and c['ep0']>c['ready']])
        summ('read end -> loop epoll(0)', [c['ep0']-c['re'] for c in cs if 'ep0' in c and c['ep0']<c['run']])
        summ('read end -> proc runs', [c['run']-c['re'] for c in cs])
        summ('proc runs -> write begin', [c['wb']-c['run'] for c in cs])
        summ('write syscall', [c['we']-c['wb'] for c in cs])
        summ('epoll ret -> write end', [c['we']-c['wake'] for c in cs if c['wake']])
a,b=sys.argv[1:3]
cross(cyc[a],cyc[b],'first->second')
cross(cyc[b],cyc[a],'second->first')
