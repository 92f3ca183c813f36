#!/usr/bin/env python3
"""The module graph of each crate, built from its `crate::` / `super::` / child-module paths
(test modules excluded), and the import cycles in it.

Usage: module-graph.py [--edges] [--forbid DIR:FROM,...!TO,...]... CRATE_SRC_DIR...
Prints every strongly connected component larger than one module, and every edge a --forbid rule
names (from modules under FROM to modules under TO; FROM `*` is any module), and exits 1 if there
is one.
"""
import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)(?:::\*)?")
GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}\s*;", re.S)
MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def strip_tests(text):
    """Drops everything from the first `#[cfg(test)]` on (test modules sit at the end of a file)
    and comments."""
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    text = re.sub(r"//[^\n]*", "", text)
    return text


def resolve(modules, base, segments):
    """The longest known module that `base::segments` names."""
    path = list(base)
    for s in segments:
        if s == "super":
            path = path[:-1]
        elif s == "self":
            pass
        else:
            path.append(s)
    while path and tuple(path) not in modules:
        path.pop()
    return tuple(path)


def graph(root):
    files = []
    for d, _, names in os.walk(root):
        for n in names:
            if n.endswith(".rs") and not (d == root and n == "main.rs") and n != "tests.rs":
                files.append(os.path.join(d, n))
    modules = {module_of(root, f) for f in files}
    edges = {}
    for f in files:
        me = module_of(root, f)
        # `self::` and child modules resolve below this module, `super::` to its parent.
        here = me
        text = strip_tests(open(f, encoding="utf-8").read())
        children = set(MOD.findall(text))
        targets = set()
        uses = []
        for m in GROUP.finditer(text):
            kind, prefix, inner = m.group(1), m.group(2), m.group(3)
            for item in re.split(r",", re.sub(r"\{[^}]*\}", "", inner)):
                item = item.strip().split(" as ")[0].strip()
                if item:
                    uses.append((kind, prefix.split("::")[1:] + [s for s in item.split("::") if s != "self"]))
        for m in PATH.finditer(text):
            if m.group(1) == "self" and not m.group(2):
                continue  # a method's `self`
            uses.append((m.group(1), m.group(2).split("::")[1:]))
        for kind, segs in uses:
            if kind == "crate":
                t = resolve(modules, (), segs)
            elif kind == "super":
                t = resolve(modules, me[:-1], segs)
            else:
                t = resolve(modules, here, segs)
            targets.add(t)
        for c in children:
            for m in re.finditer(r"\b" + c + r"::", text):
                targets.add(resolve(modules, here, [c]))
        targets.discard(me)
        # A module reaching its own ancestor through `crate::a` when it is `a::b` is an edge to `a`.
        edges[me] = {t for t in targets if t != ()}
    return modules, edges


def sccs(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(m) or "crate"


def under(m, prefixes):
    return any(p == "*" or m[: len(p.split("::"))] == tuple(p.split("::")) for p in prefixes)


def main():
    args = sys.argv[1:]
    show = "--edges" in args
    args = [a for a in args if a != "--edges"]
    rules = []
    while "--forbid" in args:
        i = args.index("--forbid")
        root, rule = args[i + 1].split(":", 1)
        sources, targets = rule.split("!")
        rules.append((os.path.normpath(root), sources.split(","), targets.split(",")))
        del args[i : i + 2]
    bad = False
    for root in args:
        modules, edges = graph(root)
        for r, sources, targets in rules:
            if r != os.path.normpath(root):
                continue
            for m in sorted(edges):
                for t in sorted(edges[m]):
                    if under(m, sources) and under(t, targets) and not under(m, targets):
                        bad = True
                        print(f"{root}: {name(m)} may not import {name(t)}")
        if show:
            for m in sorted(edges):
                print(f"{root}: {name(m)} -> {', '.join(sorted(name(t) for t in edges[m]))}")
        for comp in sccs(modules, edges):
            if len(comp) > 1:
                bad = True
                print(f"{root}: import cycle across {len(comp)} modules: {', '.join(sorted(name(m) for m in comp))}")
    if not bad:
        print(f"no import cycles in {', '.join(args)}")
    sys.exit(1 if bad else 0)


main()
