#!/usr/bin/env python3
"""Which modules of a Rust crate import each other.

    python3 docs/module_cycles.py host/src [DEPTH] [-v]

Reads every `crate::a::b` and `super::x` path of the crate's files (test
modules and comments left out), folds modules to their first DEPTH path
segments (1: top-level modules, the default; 9: every file), and prints
the pairs that import each other, then every group of modules that reach
each other (strongly connected). `-v` prints the whole graph. A text
scan, not a compiler: a path spelled in a string would count.
"""
import re,os,sys,itertools
root=sys.argv[1]
args=[a for a in sys.argv[2:] if not a.startswith('-')]
level=int(args[0]) if args else 1
mods={}
for dp,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.relpath(os.path.join(dp,f),root)[:-3].split('/')
        if p[-1]=='mod': p=p[:-1]
        if p in (['lib'],['main']): continue
        mods[tuple(p)]=os.path.join(dp,f)
def key(path): return tuple(path[:level])
edges={}
for m,f in mods.items():
    src=open(f).read()
    src=re.sub(r'(?s)#\[cfg\(test\)\]\s*mod tests.*','',src)
    src='\n'.join(l for l in src.split('\n') if not l.strip().startswith('//'))
    refs=set()
    for mt in re.finditer(r'crate::((?:[a-z_0-9]+::)*[a-z_0-9]+)',src):
        refs.add(tuple(mt.group(1).split('::')))
    for mt in re.finditer(r'\bsuper::([a-z_0-9]+)',src):
        base=list(m[:-1]); refs.add(tuple(base+[mt.group(1)]))
    for mt in re.finditer(r'use crate::\{([^}]*)\}',src):
        for n in re.findall(r'\b([a-z_0-9]+)',mt.group(1)): refs.add((n,))
    for r in refs:
        # longest known module prefix
        for i in range(len(r),0,-1):
            if r[:i] in mods: t=r[:i]; break
        else: continue
        a,b=key(m),key(t)
        if a!=b and not (b[:len(a)]==a or a[:len(b)]==b):
            edges.setdefault(a,set()).add(b)
names=lambda k:'::'.join(k)
two=[(a,b) for a in edges for b in edges[a] if a in edges.get(b,()) and a<b]
print("mutual imports:", [f"{names(a)} <-> {names(b)}" for a,b in two] or "none")
# SCCs
idx={};low={};st=[];on=set();out=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: out.append(sorted(names(x) for x in comp))
for v in list(edges):
    if v not in idx: sc(v)
print("cycles (strongly connected groups):", out or "none")
if '-v' in sys.argv:
    for a in sorted(edges): print(names(a),'->',', '.join(sorted(names(b) for b in edges[a])))
