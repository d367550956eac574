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

if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian; the benchmark, scripts/bench.sh)"
  as_root apt-get update -qq && as_root apt-get install -y -qq wrk
fi

# What the benchmark compares with: oauth2-proxy in front of the app, built from the Go module
# proxy (about 5 minutes, once).
# (`go install` leaves the version out of --version; the binary's module record has it.)
if ! go version -m "$(oauth2_proxy_bin)" 2>/dev/null | grep -qE "^\s+mod\s.*\s$OAUTH2_PROXY_VERSION\s"; then
  if command -v go >/dev/null; then
    say "installing oauth2-proxy $OAUTH2_PROXY_VERSION (go install, about 5 minutes, once)"
    go install "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION"
  else
    echo "Go is missing: the benchmark cannot build oauth2-proxy (install Go 1.22 or later)" >&2
    exit 1
  fi
fi

lock_sum="$(sha256sum end2end/package-lock.json | cut -d' ' -f1)"
if [ "$(cat end2end/node_modules/.kc-lock-sum 2>/dev/null || true)" != "$lock_sum" ]; then
  say "installing the end-to-end test packages (npm ci)"
  (cd end2end && npm ci --no-audit --no-fund && echo "$lock_sum" > node_modules/.kc-lock-sum)
fi

"$ROOT/keycloak/fetch.sh"
say "set-up complete"
