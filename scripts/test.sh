#!/usr/bin/env bash
# Runs every test: formatting and lints, unit tests, integration tests against the real Keycloak,
# and the Playwright tests in Chromium. Installs whatever is missing first. Stops the app and (if
# this script started it) Keycloak when it ends, pass or fail.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/setup.sh"
claim_target_dir

app_pid=""
kc_was_running=false
LOG_DIR="${TEST_LOG_DIR:-$ROOT/target/test-logs}"
mkdir -p "$LOG_DIR"
cleanup() {
  local rc=$?
  if [ -n "$app_pid" ] && kill -0 "$app_pid" 2>/dev/null; then
    kill -TERM "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
  fi
  if [ "$kc_was_running" = false ]; then
    "$ROOT/keycloak/stop.sh" || true
  fi
  if [ "$rc" -ne 0 ]; then
    say "FAILED (exit $rc); logs in $LOG_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

say "formatting and lints"
cargo fmt --check
cargo clippy --all-targets --features ssr -- -D warnings
cargo clippy --lib --target wasm32-unknown-unknown --features hydrate -- -D warnings

. "$ROOT/keycloak/common.sh"
if kc_ready; then kc_was_running=true; fi
"$ROOT/keycloak/start.sh"
export APP_KEYCLOAK_CLIENT_SECRET="${APP_KEYCLOAK_CLIENT_SECRET:-$(dev_client_secret)}"

# The back-channel logout tests and the browser tests use http://localhost:3000, the URL the realm
# registers for the app.
if curl -s -m 2 -o /dev/null http://localhost:3000/; then
  echo "port 3000 is in use (a dev server?); stop it to run the tests" >&2
  exit 1
fi

say "unit and integration tests (real Keycloak)"
cargo test --features ssr

say "building the site (server + WebAssembly)"
cargo leptos build

say "starting the app on http://localhost:3000 (realm demo-short: 10-second access tokens)"
# cargo-leptos writes the site (wasm, JS, CSS, public/) to target/site in the clone.
site_root="$ROOT/target/site"
data_dir="$(mktemp -d)"
LEPTOS_OUTPUT_NAME=kc-leptos LEPTOS_SITE_ROOT="$site_root" LEPTOS_SITE_PKG_DIR=pkg \
  LEPTOS_SITE_ADDR=127.0.0.1:3000 LEPTOS_ENV=PROD APP_APP_DATA_DIR="$data_dir" \
  APP_KEYCLOAK_ISSUER_URL=http://localhost:8080/realms/demo-short APP_SESSION_REFRESH_MARGIN_SECS=3 \
  "$CARGO_TARGET_DIR/debug/kc-leptos" >"$LOG_DIR/app.log" 2>&1 &
app_pid=$!
for _ in $(seq 1 60); do
  curl -s -m 2 -o /dev/null http://localhost:3000/ && break
  kill -0 "$app_pid" 2>/dev/null || { cat "$LOG_DIR/app.log" >&2; exit 1; }
  sleep 0.5
done

say "browser tests (Playwright, Chromium)"
(cd end2end && npx playwright test)

say "scanning the app's log (default level) for tokens and secrets"
if grep -nE 'eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.' "$LOG_DIR/app.log" ||
  grep -nF "$APP_KEYCLOAK_CLIENT_SECRET" "$LOG_DIR/app.log"; then
  echo "the app logged a token or the client secret (above)" >&2
  exit 1
fi
echo "no token or secret in $(wc -l < "$LOG_DIR/app.log") log lines"
say "all tests passed"
