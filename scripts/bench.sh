#!/usr/bin/env bash
# The benchmark: builds the release site, starts Keycloak, then end2end/bench/run.mjs starts the
# app (and oauth2-proxy in front of it), signs users in and measures side by side: static files,
# pages signed out and in, the JSON API with a session and with a bearer token, oauth2-proxy, a
# remote API route against its upstream (examples/orders-api) straight and behind oauth2-proxy, a
# refresh storm, an idle tab, memory per session and with 10,000 sessions, the hydrate bundle and
# time to interactive, the library's own footprint in the browser (examples/minimal against
# examples/template), and the bearer check alone (criterion). Writes docs/performance.md and
# docs/performance.png (the chart in the README). Takes about 10 minutes (more the first time).
#
#   scripts/bench.sh           the full run
#   scripts/bench.sh --smoke   seconds-long counts on the debug build, report in target/; the test
#                              command runs this so the benchmark keeps working
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1

if [ "$smoke" = 0 ]; then
  "$ROOT/scripts/setup.sh"
  claim_target_dir
fi
keycloak_was_running
cleanup() {
  local rc=$?
  stop_keycloak_unless_it_was_running
  exit "$rc"
}
trap cleanup EXIT INT TERM

for port in 3000 4001 4180; do
  if curl -s -m 2 -o /dev/null "http://localhost:$port/"; then
    echo "port $port is in use; stop what listens there to run the benchmark" >&2
    exit 1
  fi
done

if [ "$smoke" = 1 ]; then
  profile=debug
  out="$ROOT/target/bench-smoke/performance.md"
  mkdir -p "$(dirname "$out")"
  bench_profile=(--profile dev)
  criterion_args=(--warm-up-time 0.2 --measurement-time 0.5)
else
  profile=release
  out="$ROOT/docs/performance.md"
  bench_profile=()
  criterion_args=()
  say "building the release site (server + WebAssembly, precompressed)"
  leptos build --release --precompress --split --project kc-leptos
  cargo build -q --release -p orders-api
  # The template's style/main.scss: end2end's npm `sass` (cargo-leptos would download dart-sass).
  say "building the floor of a split app (examples/template --lib-features hydrate,floor, --split), release"
  (cd "$ROOT/examples/template" && PATH="$ROOT/end2end/node_modules/.bin:$PATH" \
    leptos build --release --frontend-only --split --lib-features hydrate,floor \
    && rm -rf target/floor-pkg && cp -r target/site/pkg target/floor-pkg)
  say "building the WebAssembly of examples/minimal and examples/template (the same app without keycloak-bff), release"
  for example in minimal template; do
    (cd "$ROOT/examples/$example" && PATH="$ROOT/end2end/node_modules/.bin:$PATH" leptos build --release --frontend-only)
  done
fi

"$ROOT/keycloak/start.sh"
export APP_KEYCLOAK_CLIENT_SECRET="${APP_KEYCLOAK_CLIENT_SECRET:-$(dev_client_secret)}"
export APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET="${APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET:-$(dev_client_secret user-directory)}"

say "the bearer check alone (criterion)"
token="$(curl -s -d grant_type=client_credentials -d client_id=notes-reader \
  -d client_secret=notes-reader-dev-secret \
  http://localhost:8080/realms/demo/protocol/openid-connect/token | jq -r .access_token)"
# The workspace's features (`--workspace --features ssr`, as the test command builds the tests),
# not keycloak-bff's alone: the smoke run inside the test command then reuses the tests' build of
# the library instead of building it again with other features (about a minute on two cores).
criterion="$(BENCH_ISSUER=http://localhost:8080/realms/demo BENCH_TOKEN="$token" \
  cargo bench -q "${bench_profile[@]}" --workspace --features ssr --bench verify -- "${criterion_args[@]}" 2>&1)"
echo "$criterion" | grep -E "time:|bearer" || true

# (wrk --version exits 1.)
wrk_version="$({ wrk --version 2>&1 || true; } | head -1 | cut -d' ' -f1-2)"
chromium_version="$({ /usr/bin/chromium --version 2>/dev/null || true; } | head -1)"
smoke_note=""
[ "$smoke" = 1 ] && smoke_note=" (smoke run: tiny counts on a debug build, figures meaningless)"
versions="Versions: $(rustc --version | cut -d' ' -f1-2), Keycloak $KC_VERSION, oauth2-proxy $OAUTH2_PROXY_VERSION ($(go version | cut -d' ' -f3)), $wrk_version, $chromium_version, cargo-leptos $CARGO_LEPTOS_VERSION; build: $profile$smoke_note."

say "measuring"
(cd end2end && BENCH_SMOKE="$smoke" BENCH_APP_BIN="$(site_bin kc-leptos "$profile")" \
  BENCH_SITE_ROOT="$ROOT/target/site" BENCH_OUT="$out" BENCH_OAUTH2_PROXY="$(oauth2_proxy_bin)" \
  BENCH_ORDERS_API="$CARGO_TARGET_DIR/$profile/orders-api" \
  BENCH_CRITERION="$criterion" BENCH_VERSIONS="$versions" node bench/run.mjs)
say "benchmark done: $out"
