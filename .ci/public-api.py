#!/usr/bin/env python3
"""The library's public API as a sorted list of lines, one per item, rendered from rustdoc's
JSON output (format version 57, rustc 1.95; `RUSTC_BOOTSTRAP=1` unlocks the flag on the
stable toolchain):

    RUSTC_BOOTSTRAP=1 cargo rustdoc -p ipckit --all-features -- -Z unstable-options --output-format json
    python3 .ci/public-api.py target/doc/ipckit.json > crates/ipckit/public-api.txt

Listed: every public module, struct (with its public fields), enum (with its variants),
union, trait (with its items), function, method, constant, static, type alias and macro,
under every public path that reaches it (re-exports included), and each type's trait impls
that are written or derived (not the auto traits and blanket impls the compiler adds). A
change to any of those lines is a change to the public API, visible in review: `.ci/api`
fails when the committed listing differs from this output.
"""
import json
import sys

d = json.load(open(sys.argv[1]))
if d.get("format_version") != 57:
    sys.exit(f"rustdoc JSON format {d.get('format_version')}: this script reads format 57 (rustc 1.95)")
INDEX, PATHS = d["index"], d["paths"]


def item(i):
    return INDEX.get(str(i))


PUBLIC = {}  # item id -> its shortest public path (filled by a first walk)


def path_of(p):
    """A `resolved_path`: the crate's own items by their shortest public path (not the
    private module that defines them, which a file split may change), others by their full
    path where rustdoc knows it; then the generic args."""
    known = PATHS.get(str(p.get("id")))
    name = PUBLIC.get(p.get("id")) or ("::".join(known["path"]) if known else p["path"])
    return name + args(p.get("args"))


def args(a):
    if not a:
        return ""
    if "angle_bracketed" in a:
        ab = a["angle_bracketed"]
        parts = [generic_arg(x) for x in ab["args"]]
        for c in ab.get("constraints", []):
            b = c["binding"]
            if "equality" in b:
                eq = b["equality"]
                parts.append(f"{c['name']}{args(c.get('args'))} = {ty(eq['type']) if 'type' in eq else eq.get('constant', {}).get('expr', '?')}")
            else:
                parts.append(f"{c['name']}{args(c.get('args'))}: {bounds(b['constraint'])}")
        return f"<{', '.join(parts)}>" if parts else ""
    if "parenthesized" in a:
        p = a["parenthesized"]
        out = f"({', '.join(ty(t) for t in p['inputs'])})"
        return out + (f" -> {ty(p['output'])}" if p.get("output") else "")
    return "<?>"


def generic_arg(x):
    if x == "infer":
        return "_"
    if "type" in x:
        return ty(x["type"])
    if "lifetime" in x:
        return x["lifetime"]
    if "const" in x:
        return x["const"].get("expr", "?")
    return "?"


def bounds(bs):
    out = []
    for b in bs:
        if "trait_bound" in b:
            tb = b["trait_bound"]
            pre = {"maybe": "?", "maybe_const": "~const "}.get(tb.get("modifier"), "")
            hr = hrtb(tb.get("generic_params", []))
            out.append(f"{hr}{pre}{path_of(tb['trait'])}")
        elif "outlives" in b:
            out.append(b["outlives"])
        elif "use" in b:
            out.append(f"use<{', '.join(u if isinstance(u, str) else next(iter(u.values())) for u in b['use'])}>")
    return " + ".join(out)


def hrtb(params):
    return f"for<{', '.join(p['name'] for p in params)}> " if params else ""


def ty(t):
    if t is None:
        return "()"
    (k, v), = t.items()
    if k == "resolved_path":
        return path_of(v)
    if k in ("generic", "primitive"):
        return v
    if k == "borrowed_ref":
        lt = f"{v['lifetime']} " if v.get("lifetime") else ""
        return f"&{lt}{'mut ' if v['is_mutable'] else ''}{ty(v['type'])}"
    if k == "raw_pointer":
        return f"*{'mut' if v['is_mutable'] else 'const'} {ty(v['type'])}"
    if k == "slice":
        return f"[{ty(v)}]"
    if k == "array":
        return f"[{ty(v['type'])}; {v['len']}]"
    if k == "tuple":
        return f"({', '.join(ty(x) for x in v)}{',' if len(v) == 1 else ''})"
    if k == "impl_trait":
        return f"impl {bounds(v)}"
    if k == "dyn_trait":
        parts = [hrtb(p.get("generic_params", [])) + path_of(p["trait"]) for p in v["traits"]]
        if v.get("lifetime"):
            parts.append(v["lifetime"])
        return f"dyn {' + '.join(parts)}"
    if k == "qualified_path":
        tr = f" as {path_of(v['trait'])}" if v.get("trait") else ""
        return f"<{ty(v['self_type'])}{tr}>::{v['name']}{args(v.get('args'))}"
    if k == "function_pointer":
        return f"{hrtb(v.get('generic_params', []))}fn({', '.join(ty(x[1]) for x in v['sig']['inputs'])}){ret(v['sig'].get('output'))}"
    if k == "pat":
        return f"{ty(v['type'])} is {v.get('__pat_unstable_do_not_use', '?')}"
    return "_" if k == "infer" else f"<{k}>"


def ret(o):
    return f" -> {ty(o)}" if o is not None else ""


def generics(g):
    """(`<...>`, ` where ...`) of a generics block; synthetic `impl Trait` params omitted."""
    ps = []
    for p in g.get("params", []):
        kind = p["kind"]
        if "lifetime" in kind:
            o = kind["lifetime"].get("outlives", [])
            ps.append(p["name"] + (f": {' + '.join(o)}" if o else ""))
        elif "type" in kind:
            if kind["type"].get("is_synthetic"):
                continue
            b = bounds(kind["type"].get("bounds", []))
            dflt = kind["type"].get("default")
            ps.append(p["name"] + (f": {b}" if b else "") + (f" = {ty(dflt)}" if dflt else ""))
        elif "const" in kind:
            ps.append(f"const {p['name']}: {ty(kind['const']['type'])}")
    wh = []
    for w in g.get("where_predicates", []):
        if "bound_predicate" in w:
            bp = w["bound_predicate"]
            wh.append(f"{hrtb(bp.get('generic_params', []))}{ty(bp['type'])}: {bounds(bp['bounds'])}")
        elif "lifetime_predicate" in w:
            lp = w["lifetime_predicate"]
            wh.append(f"{lp['lifetime']}: {' + '.join(lp['outlives'])}")
        elif "eq_predicate" in w:
            ep = w["eq_predicate"]
            wh.append(f"{ty(ep['lhs'])} = {ty(ep['rhs'].get('type'))}")
    return (f"<{', '.join(ps)}>" if ps else ""), (f" where {', '.join(wh)}" if wh else "")


def fn_line(name, f, prefix="pub fn"):
    h = f["header"]
    quals = "".join(q for q, on in (("const ", h["is_const"]), ("async ", h["is_async"]), ("unsafe ", h["is_unsafe"])) if on)
    g, wh = generics(f["generics"])
    ins = []
    for n, t in f["sig"]["inputs"]:
        if n == "self":
            s = ty(t)
            ins.append({"Self": "self", "&Self": "&self", "&mut Self": "&mut self"}.get(s, f"self: {s}"))
        else:
            ins.append(f"{n}: {ty(t)}")
    return f"{prefix} {quals}{name}{g}({', '.join(ins)}){ret(f['sig'].get('output'))}{wh}"


lines = set()


def deprecated(it):
    return " #[deprecated]" if it.get("deprecation") else ""


def emit_impls(path, impl_ids, self_desc):
    for iid in impl_ids:
        imp = item(iid)
        if imp is None:
            continue
        im = imp["inner"]["impl"]
        if im.get("is_synthetic") or im.get("blanket_impl") is not None:
            continue
        g, wh = generics(im["generics"])
        if im.get("trait") is not None:
            neg = "!" if im.get("is_negative") else ""
            lines.add(f"impl{g} {neg}{path_of(im['trait'])} for {ty(im['for'])}{wh}")
            continue
        for mid in im["items"]:
            m = item(mid)
            if m is None or m.get("visibility") != "public":
                continue
            inner = m["inner"]
            if "function" in inner:
                mname = path + "::" + m["name"]
                lines.add(fn_line(mname, inner["function"]) + deprecated(m))
            elif "assoc_const" in inner:
                lines.add(f"pub const {path}::{m['name']}: {ty(inner['assoc_const']['type'])}")
            elif "assoc_type" in inner:
                lines.add(f"pub type {path}::{m['name']}")


def emit(path, it, seen):
    """Lines for item `it` reached under `path`."""
    key = (path, it["id"])
    if key in seen:
        return
    seen.add(key)
    best = PUBLIC.get(it["id"])
    if best is None or (path.count("::"), path) < (best.count("::"), best):
        PUBLIC[it["id"]] = path
    (k, v), = it["inner"].items() if isinstance(it["inner"], dict) else ((it["inner"], None),)
    dep = deprecated(it)
    if k == "module":
        lines.add(f"pub mod {path}{dep}")
        for cid in v["items"]:
            c = item(cid)
            if c is None or c.get("visibility") != "public":
                continue
            if "use" in c["inner"]:
                u = c["inner"]["use"]
                tgt = item(u["id"]) if u.get("id") is not None else None
                if u.get("is_glob"):
                    if tgt is not None and "module" in tgt["inner"]:
                        for gid in tgt["inner"]["module"]["items"]:
                            g = item(gid)
                            if g is not None and g.get("visibility") == "public" and g.get("name"):
                                emit(f"{path}::{g['name']}", g, seen)
                    else:
                        lines.add(f"pub use {path}::{u['source']}::*")
                elif tgt is not None:
                    emit(f"{path}::{u['name']}", tgt, seen)
                else:
                    lines.add(f"pub use {path}::{u['name']} = {u['source']}")
            elif c.get("name"):
                emit(f"{path}::{c['name']}", c, seen)
    elif k == "struct":
        g, wh = generics(v["generics"])
        kind = v["kind"]
        if kind == "unit":
            lines.add(f"pub struct {path}{g};{wh}{dep}")
        elif "tuple" in kind:
            fields = []
            for fid in kind["tuple"]:
                f = item(fid) if fid is not None else None
                fields.append(f"pub {ty(f['inner']['struct_field'])}" if f and f.get("visibility") == "public" else "_")
            lines.add(f"pub struct {path}{g}({', '.join(fields)}){wh}{dep}")
        else:
            lines.add(f"pub struct {path}{g}{wh}{dep}" + (" {..}" if kind["plain"].get("has_stripped_fields") else ""))
            for fid in kind["plain"]["fields"]:
                f = item(fid)
                if f and f.get("visibility") == "public":
                    lines.add(f"pub {path}::{f['name']}: {ty(f['inner']['struct_field'])}")
        emit_impls(path, v["impls"], path)
    elif k == "union":
        g, wh = generics(v["generics"])
        lines.add(f"pub union {path}{g}{wh}{dep}")
        emit_impls(path, v["impls"], path)
    elif k == "enum":
        g, wh = generics(v["generics"])
        lines.add(f"pub enum {path}{g}{wh}{dep}" + (" {..}" if v.get("has_stripped_variants") else ""))
        for vid in v["variants"]:
            var = item(vid)
            vk = var["inner"]["variant"]["kind"]
            if vk == "plain":
                disc = var["inner"]["variant"].get("discriminant")
                lines.add(f"pub {path}::{var['name']}" + (f" = {disc['expr']}" if disc else ""))
            elif "tuple" in vk:
                fs = [ty(item(f)["inner"]["struct_field"]) if f is not None else "_" for f in vk["tuple"]]
                lines.add(f"pub {path}::{var['name']}({', '.join(fs)})")
            else:
                fs = [f"{item(f)['name']}: {ty(item(f)['inner']['struct_field'])}" for f in vk["struct"]["fields"]]
                lines.add(f"pub {path}::{var['name']} {{ {', '.join(fs)} }}")
        emit_impls(path, v["impls"], path)
    elif k == "function":
        lines.add(fn_line(path, v) + dep)
    elif k == "trait":
        g, wh = generics(v["generics"])
        sup = bounds(v.get("bounds", []))
        lines.add(f"pub {'unsafe ' if v.get('is_unsafe') else ''}trait {path}{g}{': ' + sup if sup else ''}{wh}{dep}")
        for mid in v["items"]:
            m = item(mid)
            inner = m["inner"]
            if "function" in inner:
                lines.add(fn_line(f"{path}::{m['name']}", inner["function"], prefix="fn"))
            elif "assoc_const" in inner:
                lines.add(f"const {path}::{m['name']}: {ty(inner['assoc_const']['type'])}")
            elif "assoc_type" in inner:
                b = bounds(inner["assoc_type"].get("bounds", []))
                lines.add(f"type {path}::{m['name']}{': ' + b if b else ''}")
    elif k == "constant":
        lines.add(f"pub const {path}: {ty(v['type'])}{dep}")
    elif k == "static":
        lines.add(f"pub static {'mut ' if v.get('is_mutable') else ''}{path}: {ty(v['type'])}{dep}")
    elif k == "type_alias":
        g, _ = generics(v["generics"])
        lines.add(f"pub type {path}{g} = {ty(v['type'])}{dep}")
    elif k in ("macro", "proc_macro"):
        lines.add(f"pub macro {path}!")
    else:
        lines.add(f"pub {k} {path}")


root = item(d["root"])
emit(root["name"], root, set())  # finds every item's public paths
lines.clear()
emit(root["name"], root, set())
for line in sorted(lines):
    print(line)
