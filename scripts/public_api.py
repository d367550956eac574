#!/usr/bin/env python3
"""The public API of a crate, one item per line, from rustdoc's JSON.

Why: every public item is semver surface and, in a security library, a possible way around an
invariant. The lists in `crates/*/public-api.txt` are committed; `scripts/public_api.sh --check`
(run by the test command) regenerates them and fails on any difference, so a change to the
surface is a visible diff in review (issue 18, "The public API" 1).

Usage: public_api.py <rustdoc.json>   (prints the list on stdout)

Walks from the crate root through public modules and re-exports, the way a user of the crate can
name things: modules, structs (and their public fields), enums (and variants), traits, functions,
constants, statics, type aliases, macros, the inherent methods of public types, and the trait
impls written in the crate (not the auto and blanket ones the compiler adds).
"""

import json
import sys


def render_path(p):
    name = p.get("path") or p.get("name") or "?"
    return name + render_args(p.get("args"))


def render_args(args):
    if not args:
        return ""
    if "angle_bracketed" in args:
        parts = []
        for a in args["angle_bracketed"]["args"]:
            if "type" in a:
                parts.append(ty(a["type"]))
            elif "lifetime" in a:
                parts.append(a["lifetime"])
            elif "const" in a:
                parts.append(str(a["const"].get("expr", "_")))
            else:
                parts.append("_")
        for c in args["angle_bracketed"].get("constraints", []):
            binding = c.get("binding", {})
            if "equality" in binding and "type" in binding["equality"]:
                parts.append(f'{c["name"]} = {ty(binding["equality"]["type"])}')
            else:
                parts.append(c["name"])
        return "<" + ", ".join(parts) + ">" if parts else ""
    if "parenthesized" in args:
        p = args["parenthesized"]
        out = "(" + ", ".join(ty(t) for t in p["inputs"]) + ")"
        if p.get("output"):
            out += " -> " + ty(p["output"])
        return out
    return ""


def bound(b):
    if "trait_bound" in b:
        return render_path(b["trait_bound"]["trait"])
    if "outlives" in b:
        return b["outlives"]
    if "use" in b:
        return "use<..>"
    return "?"


def ty(t):
    if t is None:
        return "()"
    k, v = next(iter(t.items()))
    if k == "resolved_path":
        return render_path(v)
    if k == "generic":
        return v
    if k == "primitive":
        return v
    if k == "borrowed_ref":
        lt = (v["lifetime"] + " ") if v.get("lifetime") else ""
        return "&" + lt + ("mut " if v["is_mutable"] else "") + ty(v["type"])
    if k == "raw_pointer":
        return ("*mut " if v["is_mutable"] else "*const ") + ty(v["type"])
    if k == "tuple":
        return "(" + ", ".join(ty(x) for x in v) + ")"
    if k == "slice":
        return "[" + ty(v) + "]"
    if k == "array":
        return "[" + ty(v["type"]) + "; " + str(v["len"]) + "]"
    if k == "impl_trait":
        return "impl " + " + ".join(bound(b) for b in v)
    if k == "dyn_trait":
        return "dyn " + " + ".join(render_path(x["trait"]) for x in v["traits"])
    if k == "qualified_path":
        return f'<{ty(v["self_type"])}>::{v["name"]}'
    if k == "function_pointer":
        return "fn(..)"
    if k == "infer":
        return "_"
    return k


def generics(g):
    ps = []
    for p in g.get("params", []):
        kind = p["kind"]
        if "lifetime" in kind:
            ps.append(p["name"])
        elif "type" in kind:
            if kind["type"].get("is_synthetic"):
                continue
            bs = kind["type"].get("bounds", [])
            ps.append(p["name"] + (": " + " + ".join(bound(b) for b in bs) if bs else ""))
        elif "const" in kind:
            ps.append("const " + p["name"])
    return "<" + ", ".join(ps) + ">" if ps else ""


def fn_sig(name, f):
    h = f["header"]
    head = ("const " if h["is_const"] else "") + ("async " if h["is_async"] else "")
    head += ("unsafe " if h["is_unsafe"] else "") + "fn "
    args = []
    for arg_name, t in f["sig"]["inputs"]:
        args.append("self" if arg_name == "self" else f"{arg_name}: {ty(t)}")
    out = f["sig"].get("output")
    ret = f" -> {ty(out)}" if out else ""
    return f"{head}{name}{generics(f['generics'])}({', '.join(args)}){ret}"


class Walker:
    def __init__(self, doc):
        self.index = doc["index"]
        self.paths = doc["paths"]
        self.lines = set()
        self.seen = set()

    def item(self, i):
        return self.index.get(str(i))

    def walk(self, item_id, path):
        it = self.item(item_id)
        if it is None:
            return
        key = (item_id, path)
        if key in self.seen:
            return
        self.seen.add(key)
        kind, v = next(iter(it["inner"].items()))
        if kind == "module":
            self.lines.add(f"pub mod {path}")
            for child in v["items"]:
                c = self.item(child)
                if c is None or c.get("visibility") != "public":
                    continue
                ck = next(iter(c["inner"]))
                if ck == "use":
                    self.reexport(c["inner"]["use"], path)
                elif ck == "impl":
                    continue
                else:
                    self.walk(child, f"{path}::{c['name']}")
        elif kind == "struct":
            self.lines.add(f"pub struct {path}{generics(v['generics'])}")
            sk = v["kind"]
            fields = []
            if isinstance(sk, dict) and "plain" in sk:
                fields = [(f, None) for f in sk["plain"]["fields"]]
            elif isinstance(sk, dict) and "tuple" in sk:
                fields = [(f, n) for n, f in enumerate(sk["tuple"]) if f is not None]
            for f, n in fields:
                fi = self.item(f)
                if fi and fi.get("visibility") == "public":
                    fname = fi["name"] if n is None else str(n)
                    self.lines.add(f"pub {path}::{fname}: {ty(fi['inner']['struct_field'])}")
            self.impls(v["impls"], path)
        elif kind == "enum":
            self.lines.add(f"pub enum {path}{generics(v['generics'])}")
            for var in v["variants"]:
                vi = self.item(var)
                if vi:
                    self.lines.add(f"pub {path}::{vi['name']}")
            self.impls(v["impls"], path)
        elif kind == "trait":
            self.lines.add(f"pub trait {path}{generics(v['generics'])}")
            for m in v["items"]:
                mi = self.item(m)
                if mi:
                    self.assoc(mi, path)
        elif kind == "function":
            self.lines.add(f"pub {fn_sig(path, v)}")
        elif kind == "constant":
            self.lines.add(f"pub const {path}: {ty(v['type'])}")
        elif kind == "static":
            self.lines.add(f"pub static {path}: {ty(v['type'])}")
        elif kind == "type_alias":
            self.lines.add(f"pub type {path} = {ty(v['type'])}")
        elif kind in ("macro", "proc_macro"):
            self.lines.add(f"pub macro {path}!")
        else:
            self.lines.add(f"pub {kind} {path}")

    def reexport(self, use, parent):
        target = use.get("id")
        name = use["name"]
        if use.get("is_glob"):
            it = self.item(target) if target is not None else None
            if it and "module" in it["inner"]:
                for child in it["inner"]["module"]["items"]:
                    c = self.item(child)
                    if c and c.get("visibility") == "public" and "impl" not in c["inner"]:
                        if "use" in c["inner"]:
                            self.reexport(c["inner"]["use"], parent)
                        else:
                            self.walk(child, f"{parent}::{c['name']}")
            else:
                self.lines.add(f"pub use {parent}::{use['source']}::*")
            return
        if target is not None and self.item(target) is not None:
            self.walk(target, f"{parent}::{name}")
        else:
            self.lines.add(f"pub use {parent}::{name} = {use['source']}")

    def assoc(self, mi, path):
        kind, v = next(iter(mi["inner"].items()))
        if kind == "function":
            self.lines.add(f"pub {fn_sig(path + '::' + mi['name'], v)}")
        elif kind == "assoc_const":
            self.lines.add(f"pub const {path}::{mi['name']}: {ty(v['type'])}")
        elif kind == "assoc_type":
            self.lines.add(f"pub type {path}::{mi['name']}")

    def impls(self, impl_ids, path):
        for i in impl_ids:
            im = self.item(i)
            if im is None:
                continue
            v = im["inner"]["impl"]
            if v.get("is_synthetic") or v.get("blanket_impl") is not None:
                continue
            if v.get("trait") is None:
                for m in v["items"]:
                    mi = self.item(m)
                    if mi and mi.get("visibility") == "public":
                        self.assoc(mi, path)
            else:
                neg = "!" if v.get("is_negative") else ""
                self.lines.add(
                    f"impl{generics(v['generics'])} {neg}{render_path(v['trait'])} for {ty(v['for'])}"
                )


def main():
    doc = json.load(open(sys.argv[1]))
    w = Walker(doc)
    root = doc["root"]
    w.walk(root, doc["index"][str(root)]["name"])
    for line in sorted(w.lines):
        print(line)


if __name__ == "__main__":
    main()
