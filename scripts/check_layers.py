#!/usr/bin/env python3
"""Fails when a file of a crate imports, directly or through others, a file that imports it back.

Every `crate::…` path in a crate's sources (in `use` trees and inline) becomes an edge from its file
to the file of the deepest module the path names. A cycle in that graph is an import cycle between
files: the sign of a module that reaches into a higher layer. Crates cannot import each other in a
circle (Cargo forbids it), so each crate is checked on its own: the demo (src/), the libraries
(crates/*/src) and the example (examples/*/src).
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


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


def crate_paths(text: str) -> set[str]:
    text = strip_comments(text)
    paths = set()
    for tree in re.findall(r"\buse\s+(crate::[^;]+);", text, flags=re.S):
        paths.update(p for p in expand(re.sub(r"\s+", " ", tree)) if p.startswith("crate::"))
    text = re.sub(r"\buse\s+crate::[^;]+;", "", text, flags=re.S)
    paths.update(re.findall(rf"\bcrate(?:::{IDENT})+", text))
    return paths


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


def check(src: Path) -> list[list[Path]]:
    files = sorted(p for p in src.rglob("*.rs"))
    graph: dict[Path, set[Path]] = {f: set() for f in files}
    for f in files:
        for path in crate_paths(f.read_text()):
            target = module_file(src, path.split("::")[1:])
            if target and target != f:
                graph[f].add(target)
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
    if not failed:
        print(f"no import cycles between files in {len(roots)} crates")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
