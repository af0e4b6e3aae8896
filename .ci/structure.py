#!/usr/bin/env python3
"""The workspace's shape, checked: no import cycle between the files of any crate, the
library's `sys/` layer imports nothing above it, and no source file outside tests is over
800 lines.

A file depends on another when it names an item of that file: a `use crate::...`,
`use super::...` or `use self::...` tree, or a `crate::a::b` / `super::x` path in its code
(comments and string literals are stripped first). A path is resolved to the file that
defines the module it names; when that module is a directory's `mod.rs` that only re-exports
the item (`pub use child::Item`), to the child that defines it. A facade's own `pub use` and
`mod` lines are not dependencies: re-exporting is how a parent shows its children, and a child
that names its parent's re-export depends on the child behind it.

Usage: python3 .ci/structure.py [--graph CRATE]   (exit 1 on any violation)
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = {
    "ipckit": "crates/ipckit/src",
    "ipckit-bench": "crates/ipckit-bench/src",
    "ipckit-cli": "crates/ipckit-cli/src",
    "ipckit-server": "crates/ipckit-server/src",
}
MAX_LINES = 800
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(src):
    """Source with comments, string and char literals blanked (line count kept)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * src.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", src[i:]).group(1)
            end = src.find('"' + hashes, i + len(hashes) + 2)
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * src.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a): only the former is
            # blanked.
            m = re.match(r"'(\\.[^']*|[^'\\])'", src[i:i + 12])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_tests(code):
    """Code without its `#[cfg(test)]` items (unit tests may use any module of the crate: a
    test's setup is not a layer), and the names of test-only child modules declared there."""
    test_mods = set()
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\((?:test|all\(test[^\]]*|any\(test[^\]]*)\)\]", code):
        if m.start() < i:
            continue
        out.append(code[i:m.start()])
        j = m.end()
        decl = re.match(r"(?:\s*#\[[^\]]*\])*\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(%s)\s*;" % IDENT, code[j:])
        if decl:
            test_mods.add(decl.group(1))
            i = j + decl.end()
            continue
        # The next item: up to its matching closing brace, or its `;` if it has none.
        k, depth = j, 0
        while k < len(code):
            if code[k] == "{":
                depth += 1
            elif code[k] == "}":
                depth -= 1
                if depth == 0:
                    k += 1
                    break
            elif code[k] == ";" and depth == 0:
                k += 1
                break
            k += 1
        out.append("\n" * code.count("\n", j, k))
        i = k
    out.append(code[i:])
    return "".join(out), test_mods


def modules(src_dir):
    """Module path (tuple) -> file, for every .rs file of a crate's src directory."""
    mods = {}
    for dirpath, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src_dir)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            mods[tuple(parts)] = os.path.join(dirpath, f)
    return mods


def use_paths(code):
    """Every path a `use` tree names, as lists of segments (globs and `self` resolved)."""
    paths = []

    def expand(prefix, tree):
        tree = tree.strip()
        if not tree:
            return
        m = re.match(r"^((?:%s\s*::\s*)*)\{(.*)\}$" % IDENT, tree, re.S)
        if m:
            pre = [s for s in re.split(r"\s*::\s*", m.group(1)) if s]
            depth, cur, parts = 0, "", []
            for ch in m.group(2):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                if ch == "," and depth == 0:
                    parts.append(cur)
                    cur = ""
                else:
                    cur += ch
            parts.append(cur)
            for p in parts:
                expand(prefix + pre, p)
            return
        tree = re.sub(r"\s+as\s+%s$" % IDENT, "", tree)
        segs = [s for s in re.split(r"\s*::\s*", tree) if s]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        paths.append(prefix + segs)

    for m in re.finditer(r"\buse\s+([^;]+);", code):
        expand([], m.group(1))
    return paths


def code_paths(code):
    """`crate::a::b`, `super::x`, `self::y` paths written in code outside `use` lines."""
    body = re.sub(r"\buse\s+[^;]+;", ";", code)
    return [re.split(r"\s*::\s*", m.group(0)) for m in re.finditer(r"\b(?:crate|super|self)(?:\s*::\s*%s)+" % IDENT, body)]


def reexports(code):
    """Names a file re-exports from its children: name -> child path segments."""
    out = {}
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
        for p in use_paths("use " + m.group(1) + ";"):
            if p and p[0] not in ("std", "core", "alloc"):
                out[p[-1]] = p
    return out


def resolve(mod, segs, mods, reexp):
    """The file a path written in module `mod` names, or None (std, an extern crate...)."""
    if not segs:
        return None
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base, rest = mod, segs
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        # A bare `use a::b` names a child module in 2018 paths, or an extern crate.
        if mod + (segs[0],) in mods:
            base, rest = mod, segs
        elif (segs[0],) in mods and mod == ():
            base, rest = (), segs
        else:
            return None
    target = base
    for i, s in enumerate(rest):
        if target + (s,) in mods:
            target = target + (s,)
            continue
        # `s` is an item of `target`: if `target` re-exports it from a child, follow.
        via = reexp.get(target, {}).get(s)
        if via is not None:
            sub = resolve(target, via, mods, reexp)
            if sub is not None and sub != target:
                return sub
        break
    return target


def check_crate(name, src_dir, problems, graph_for=None):
    mods = modules(os.path.join(ROOT, src_dir))
    code = {}
    test_only = set()
    for m, f in mods.items():
        code[m], tm = drop_tests(strip(open(f).read()))
        test_only |= {m + (t,) for t in tm}
    for m in list(mods):
        if any(m[:len(t)] == t for t in test_only):
            del mods[m], code[m]
    reexp = {m: reexports(c) for m, c in code.items()}
    edges = {m: set() for m in mods}
    for m, c in code.items():
        facade = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", ";", c)
        for segs in use_paths(facade) + code_paths(c):
            t = resolve(m, segs, mods, reexp)
            if t is not None and t != m and t in mods:
                # A module naming its own descendant through `self::child` is the parent
                # using a child: a dependency like any other.
                edges[m].add(t)
    if graph_for == name:
        for m in sorted(edges):
            print("/".join(m) or "<root>", "->", ", ".join(sorted("/".join(t) or "<root>" for t in edges[m])))
    # Cycles: strongly connected components of more than one file (Tarjan).
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    for comp in sccs:
        names = sorted(os.path.relpath(mods[m], ROOT) for m in comp)
        inside = [f"{'/'.join(a) or '<root>'} -> {'/'.join(b) or '<root>'}" for a in sorted(comp) for b in sorted(edges[a]) if b in comp]
        problems.append(f"{name}: import cycle between {len(comp)} files: {', '.join(names)}\n    edges: " + "; ".join(inside))
    if name == "ipckit":
        for m, ts in sorted(edges.items()):
            if m[:1] == ("sys",):
                for t in sorted(ts):
                    if t[:1] != ("sys",):
                        problems.append(f"ipckit: {os.path.relpath(mods[m], ROOT)} (sys layer) imports {os.path.relpath(mods[t], ROOT)}, above it")


def check_lengths(problems):
    for top in ("crates",):
        for dirpath, dirs, files in os.walk(os.path.join(ROOT, top)):
            parts = os.path.relpath(dirpath, ROOT).split(os.sep)
            if "tests" in parts or "target" in parts:
                continue
            for f in files:
                if f.endswith(".rs"):
                    p = os.path.join(dirpath, f)
                    n = sum(1 for _ in open(p))
                    if n > MAX_LINES:
                        problems.append(f"{os.path.relpath(p, ROOT)}: {n} lines (at most {MAX_LINES} outside tests)")


def main():
    graph_for = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--graph" else None
    problems = []
    for name, src in CRATES.items():
        check_crate(name, src, problems, graph_for)
    check_lengths(problems)
    for p in problems:
        print(p)
    if problems:
        print(f"\n{len(problems)} problem(s)")
        return 1
    print("no import cycle, sys/ below everything, no source file over 800 lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
