#!/usr/bin/env bash
# The public API of both library crates, one item per line, in crates/<crate>/public-api.txt.
# `scripts/public_api.sh` writes the lists; `--check` (the test command) regenerates them and
# fails on any difference, so a change to what adopters can name is a visible diff in review; it
# also builds the documentation with warnings as errors (a public item without docs, a broken link).
# rustdoc's JSON output is unstable: RUSTC_BOOTSTRAP=1 lets the stable toolchain write it (used
# for this listing only, never for a build). keycloak-bff is listed with `ssr` (the server side);
# `test-support` is left out on purpose: it is not part of the API apps depend on.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
check=false
[ "${1:-}" = "--check" ] && check=true
doc_target="$KC_CACHE/doc-target"
status=0
for crate in keycloak-bff-core keycloak-bff; do
  features=()
  [ "$crate" = keycloak-bff ] && features=(--features ssr)
  CARGO_TARGET_DIR="$doc_target" RUSTC_BOOTSTRAP=1 cargo rustdoc -q -p "$crate" "${features[@]}" \
    --lib -- -Z unstable-options --output-format json 2>/dev/null
  json="$doc_target/doc/${crate//-/_}.json"
  list="crates/$crate/public-api.txt"
  if $check; then
    if ! python3 scripts/public_api.py "$json" | diff -u "$list" - ; then
      echo "public_api: the public API of $crate changed; run scripts/public_api.sh and commit $list" >&2
      status=1
    fi
  else
    python3 scripts/public_api.py "$json" > "$list"
    echo "$list: $(grep -vc '^impl' "$list") items, $(grep -c '^impl' "$list") trait impls"
  fi
done
if $check; then
  # Every public item documented (#![warn(missing_docs)] in both crates) and every intra-doc
  # link resolved, as docs.rs would build them (keycloak-bff with `ssr`).
  CARGO_TARGET_DIR="$doc_target" RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="-D warnings" \
    cargo doc -q --no-deps -p keycloak-bff-core -p keycloak-bff --features keycloak-bff/ssr || status=1
fi
exit $status
