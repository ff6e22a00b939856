#!/usr/bin/env python3
"""Fails when a module of a workspace crate imports another that imports it back.

A module is one source file (`foo.rs` or `foo/mod.rs`; `lib.rs` is the crate root). An
edge A -> B is a path in A's code, outside its `#[cfg(test)]` tail, that names module B:
`crate::b::...`, `super::b::...`, `self::b::...` or a child module's name at the start of a
`use`. A module that names its own descendants is no edge (a parent declares its children);
a child naming its parent is. Each strongly connected component of more than one module is
a cycle and is printed with the edges that close it.

Usage: .ci/module_cycles.py [CRATE_SRC_DIR ...]   (default: every `*/src` and `src`)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([A-Za-z_][A-Za-z0-9_]*)::", re.M)
BRACED = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+(crate|super|self)::\{", re.M)


def modules(src: Path) -> dict[tuple[str, ...], Path]:
    """Every module of the crate rooted at `src`, by its path below the crate."""
    found: dict[tuple[str, ...], Path] = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = tuple(rel.parts)
        if parts in (("lib",), ("main",)):
            parts = ()
        elif parts[-1] == "mod":
            parts = parts[:-1]
        if parts and parts[0] == "bin":
            continue
        found[parts] = f
    return found


def code_of(f: Path) -> str:
    """The file without comments and without its `#[cfg(test)]` module."""
    text = f.read_text()
    cut = text.find("#[cfg(test)]\nmod tests")
    if cut >= 0:
        text = text[:cut]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)


def resolve(known, start: tuple[str, ...], names: list[str]):
    """The deepest known module along `start + names`, or None past the crate."""
    best = None
    path = start
    if path in known:
        best = path
    for n in names:
        path = path + (n,)
        if path in known:
            best = path
        else:
            break
    return best


def edges(src: Path) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    known = modules(src)
    out: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in known}
    for m, f in known.items():
        code = code_of(f)
        targets = []
        for kw, rest in PATH.findall(code):
            names = rest.split("::")[1:]
            if kw == "crate":
                targets.append(resolve(known, (), names))
            elif kw == "super":
                base = m
                while names and names[0] == "super":
                    names = names[1:]
                    base = base[:-1]
                targets.append(resolve(known, base[:-1], names))
            else:
                targets.append(resolve(known, m, names))
        for first in USE.findall(code):
            if m + (first,) in known:
                targets.append(m + (first,))
        for t in targets:
            if t is None or t == m or t[: len(m)] == m:
                continue  # itself or its own descendant
            out[m].add(t)
    return out


def cycles(graph):
    """Tarjan's strongly connected components of more than one node."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return comps


def name(crate: str, m: tuple[str, ...]) -> str:
    return "::".join((crate,) + m) if m else crate


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or sorted(
        p for p in [ROOT / "src", *ROOT.glob("*/src")] if p.is_dir()
    )
    failed = False
    for src in dirs:
        crate = src.parent.name if src.parent != ROOT else "downpour"
        graph = edges(src)
        for comp in cycles(graph):
            failed = True
            members = set(comp)
            print(f"cycle in {crate}: {', '.join(name(crate, m) for m in comp)}")
            for a in comp:
                for b in sorted(graph[a] & members):
                    print(f"  {name(crate, a)} -> {name(crate, b)}")
    if not failed:
        print(f"no import cycles between modules ({len(dirs)} crates)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
