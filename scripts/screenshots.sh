#!/usr/bin/env bash
# Updates the README's pictures (docs/screenshots/) from the last test run, on purpose only: the
# browser tests render them into target/screenshots/ (ignored by git), so that a test run leaves
# `git status` clean. Run the test command first (./scripts/test.sh), look at the pictures, then
# this script; commit what changed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
src="$ROOT/target/screenshots"
shopt -s nullglob
shots=("$src"/*.png)
if [ ${#shots[@]} -eq 0 ]; then
  echo "no pictures in $src: run ./scripts/test.sh first" >&2
  exit 1
fi
mkdir -p docs/screenshots
for shot in "${shots[@]}"; do
  name="$(basename "$shot")"
  if [ ! -f "docs/screenshots/$name" ]; then
    echo "new: docs/screenshots/$name (not shown in the README until it links it)"
  fi
  cp "$shot" "docs/screenshots/$name"
done
say "copied ${#shots[@]} pictures to docs/screenshots/; git status shows which changed"
