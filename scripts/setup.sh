#!/usr/bin/env bash
# Installs whatever is missing to build, run and test kc-leptos. Idempotent: when everything is
# there it only checks, in a few seconds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

if ! command -v jq >/dev/null || ! command -v unzip >/dev/null || ! command -v curl >/dev/null; then
  say "installing jq, unzip and curl (Debian)"
  as_root apt-get update -qq && as_root apt-get install -y -qq jq unzip curl
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 20 minutes on 2 cores, once)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
fi

wb="$(wasm_bindgen_version)"
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wb"; then
  say "installing wasm-bindgen-cli $wb (matches Cargo.lock)"
  # Not --locked: the tool's own lock names a crate version the registry lacks.
  cargo install wasm-bindgen-cli --version "$wb" --force
fi

if ! command -v wasm-opt >/dev/null; then
  say "installing wasm-opt (binaryen@$BINARYEN_VERSION from npm)"
  npm install -g "binaryen@$BINARYEN_VERSION" --no-audit --no-fund
fi

if [ ! -x /usr/bin/chromium ]; then
  say "installing Chromium (Debian)"
  as_root apt-get update -qq && as_root apt-get install -y -qq chromium
fi

if ! command -v redis-server >/dev/null || ! command -v nginx >/dev/null; then
  say "installing Redis and nginx (Debian; the Redis session store, the cluster)"
  as_root apt-get update -qq && as_root apt-get install -y -qq redis-server nginx
fi

lock_sum="$(sha256sum end2end/package-lock.json | cut -d' ' -f1)"
if [ "$(cat end2end/node_modules/.kc-lock-sum 2>/dev/null || true)" != "$lock_sum" ]; then
  say "installing the end-to-end test packages (npm ci)"
  (cd end2end && npm ci --no-audit --no-fund && echo "$lock_sum" > node_modules/.kc-lock-sum)
fi

"$ROOT/keycloak/fetch.sh"
say "set-up complete"
