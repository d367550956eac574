#!/usr/bin/env python3
"""Fails when a code block of README.md that names a file differs from that file.

A block is named by the line right before its opening fence: `<!-- file: examples/minimal/… -->`
(the block is the whole file) or `<!-- part of: examples/minimal/… -->` (the file contains it).
The README's "Add Keycloak to your Leptos app" shows examples/minimal's files this way, and the test
command builds and signs in to that example: a README change that is not the example's breaks it.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(
        r"<!-- (file|part of): (\S+) -->\n```[a-z]*\n(.*?)```\n", text, flags=re.S
    )
    if not blocks:
        print("README.md names no file in a code block")
        return 1
    failed = False
    for kind, name, body in blocks:
        path = ROOT / name
        if not path.exists():
            print(f"README.md shows {name}, which does not exist")
            failed = True
        elif kind == "file" and path.read_text() != body:
            print(f"README.md's block of {name} differs from the file")
            failed = True
        elif kind == "part of" and body not in path.read_text():
            print(f"README.md's block from {name} is not in the file")
            failed = True
    if not failed:
        print(f"README.md's {len(blocks)} file blocks match the files")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
