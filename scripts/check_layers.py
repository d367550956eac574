#!/usr/bin/env python3
"""Fails when a file of a crate imports, directly or through others, a file that imports it back,
or when a wing of the library's server side imports a wing above it.

Every `crate::…` and `super::…` path in a crate's sources (in `use` trees and inline) becomes an
edge from its file to the file of the deepest module the path names. A cycle in that graph is an
import cycle between files: the sign of a module that reaches into a higher layer. Crates cannot
import each other in a circle (Cargo forbids it), so each crate is checked on its own: the demo
(src/), the libraries (crates/*/src) and the example (examples/*/src).

The server side of keycloak-bff is in wings (`crates/keycloak-bff/src/server/<wing>/`), ordered
from the bottom up in WINGS: a file of one wing may import its own wing and those before it, never
one after it, and no wing imports the browser side (`ui/`).
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
SERVER = ROOT / "crates/keycloak-bff/src/server"
# The server's wings, bottom first (crates/keycloak-bff/src/server/mod.rs says what each holds).
WINGS = ["base", "session", "oidc", "keycloak_api", "web"]


def strip_comments(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def expand(tree: str, prefix: str = "") -> list[str]:
    """Expands a `use` tree (`a::{b, c::{d, e}}`) into paths."""
    tree = tree.strip()
    if not tree:
        return []
    brace = tree.find("{")
    if brace == -1:
        return [prefix + tree.split(" as ")[0].strip()]
    head, body = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    parts, depth, current = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current += ch
    parts.append(current)
    out = []
    for part in parts:
        out += expand(part, prefix + head)
    return out


def module_path(src: Path, f: Path) -> list[str]:
    """The module segments of file `f` from the crate root (`a/b.rs` and `a/b/mod.rs`: a, b)."""
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts and parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return parts


def crate_paths(text: str, here: list[str]) -> set[str]:
    """The `crate::…` paths a file names, its `super::…` ones made absolute from module `here`."""
    text = strip_comments(text)
    text = re.sub(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*mod tests\s*\{.*", "", text, flags=re.S)
    paths = set()
    for tree in re.findall(r"\buse\s+((?:crate|super)::[^;]+);", text, flags=re.S):
        paths.update(expand(re.sub(r"\s+", " ", tree)))
    text = re.sub(r"\buse\s+(?:crate|super)::[^;]+;", "", text, flags=re.S)
    paths.update(re.findall(rf"\b(?:crate|super)(?:::{IDENT})+", text))
    out = set()
    for path in paths:
        segs = path.split("::")
        if segs[0] == "crate":
            out.add(path)
            continue
        base = list(here)
        while segs and segs[0] == "super":
            segs.pop(0)
            if base:
                base.pop()
        out.add("::".join(["crate"] + base + segs))
    return out


def module_file(src: Path, segments: list[str]) -> Path | None:
    """The file of the deepest module that `segments` names, from the crate root."""
    best = src / "lib.rs" if (src / "lib.rs").exists() else src / "main.rs"
    here = src
    for seg in segments:
        for candidate in (here / f"{seg}.rs", here / seg / "mod.rs"):
            if candidate.exists():
                best = candidate
                here = here / seg
                break
        else:
            break
    return best


def wing(f: Path) -> int | None:
    """The rank of the server wing `f` belongs to; None outside the wings."""
    try:
        rel = f.relative_to(SERVER)
    except ValueError:
        return None
    return WINGS.index(rel.parts[0]) if len(rel.parts) > 1 and rel.parts[0] in WINGS else None


def layering(src: Path, graph: dict[Path, set[Path]]) -> list[str]:
    """Imports from a server wing into a wing above it, or into the browser side."""
    wrong = []
    ui = src / "ui"
    for f, targets in graph.items():
        low = wing(f)
        if low is None:
            continue
        for t in sorted(targets):
            high = wing(t)
            if high is not None and high > low:
                wrong.append(f"{f.relative_to(ROOT)} ({WINGS[low]}) imports {t.relative_to(ROOT)} ({WINGS[high]}), a wing above it")
            elif t.is_relative_to(ui):
                wrong.append(f"{f.relative_to(ROOT)} ({WINGS[low]}) imports the browser side: {t.relative_to(ROOT)}")
    return wrong


def graph_of(src: Path) -> dict[Path, set[Path]]:
    files = sorted(p for p in src.rglob("*.rs"))
    graph: dict[Path, set[Path]] = {f: set() for f in files}
    for f in files:
        for path in crate_paths(f.read_text(), module_path(src, f)):
            target = module_file(src, path.split("::")[1:])
            if target and target != f:
                graph[f].add(target)
    return graph


def check(src: Path) -> list[list[Path]]:
    graph = graph_of(src)
    files = sorted(graph)
    cycles, state, stack = [], {}, []

    def visit(node: Path) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for f in files:
        if f not in state:
            visit(f)
    return cycles


def main() -> int:
    roots = [ROOT / "src"] + sorted(ROOT.glob("crates/*/src")) + sorted(ROOT.glob("examples/*/src"))
    failed = False
    for src in roots:
        for cycle in check(src):
            failed = True
            print("import cycle: " + " -> ".join(str(p.relative_to(ROOT)) for p in cycle))
        if src == SERVER.parent:
            for line in layering(src, graph_of(src)):
                failed = True
                print("layering: " + line)
    if not failed:
        print(f"no import cycles between files in {len(roots)} crates; the server's wings import only downwards ({' < '.join(WINGS)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
