# Shared by the scripts in this folder. Sourced, not run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Build caches outside the clone, so a fresh clone builds incrementally. Two of them: the tests'
# and lints' (cargo test builds the server binary with the dev-dependencies' features unified in)
# and the sites' (cargo leptos: the server binary that is run, and the WebAssembly). Apart, neither
# build overwrites the other's binary: a `cargo test` never leaves behind a server whose HTML the
# WebAssembly cannot hydrate.
KC_CACHE="${KC_CACHE_DIR:-$HOME/.cache/kc-leptos}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KC_CACHE/target}"
SITE_TARGET_DIR="${KC_SITE_TARGET_DIR:-$KC_CACHE/site-target}"
export PATH="$HOME/.cargo/bin:$PATH"
CARGO_LEPTOS_VERSION="0.3.10"
BINARYEN_VERSION="132"
OAUTH2_PROXY_VERSION="v7.15.6"
# Where `go install` puts oauth2-proxy.
oauth2_proxy_bin() { echo "$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin/oauth2-proxy"; }

# Each step says how long the script has run (seconds), so slow steps show in every log.
say() { printf '\033[1m==> [%4ss] %s\033[0m\n' "$SECONDS" "$*" >&2; }

# cargo leptos, building into the sites' cache (see above).
leptos() { CARGO_TARGET_DIR="$SITE_TARGET_DIR" cargo leptos "$@"; }

# The server binary `name` that `leptos build` made (profile debug, or $2).
site_bin() { echo "$SITE_TARGET_DIR/${2:-debug}/$1"; }

# A dev client secret (of demo-app, or of the client named) comes from the realm file Keycloak
# imports (development only).
dev_client_secret() {
  jq -r --arg id "${1:-demo-app}" '.clients[] | select(.clientId == $id) | .secret' \
    "$ROOT/keycloak/demo-realm.json"
}

# Waits until the app on localhost:$1 answers; fails with its log ($3) if process $2 died.
wait_for() {
  local port="$1" pid="$2" log="$3"
  for _ in $(seq 1 60); do
    curl -s -m 2 -o /dev/null "http://localhost:$port/" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.5
  done
  echo "nothing answers on port $port after 30 s; log: $log" >&2
  return 1
}

wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The shared target directory holds one copy of the un-hashed outputs (debug/kc-leptos, the
# site's wasm) whichever checkout built them last; cargo does not copy them again for a checkout
# whose sources did not change since its own last build. When another checkout built last, touch
# this crate so that its outputs are rebuilt (dependencies stay cached).
claim_target_dir() {
  local dir marker
  for dir in "$CARGO_TARGET_DIR" "$SITE_TARGET_DIR"; do
    marker="$dir/.kc-leptos-checkout"
    mkdir -p "$dir"
    if [ "$(cat "$marker" 2>/dev/null || true)" != "$ROOT" ]; then
      # Cargo gives a workspace crate the same artifact name in every checkout, and judges it
      # fresh by the files of the checkout that built it: every crate of this one is touched, or a
      # library built from another checkout would be used as it is.
      touch "$ROOT/src/lib.rs" "$ROOT/src/main.rs" "$ROOT/examples/minimal/src/lib.rs" \
        "$ROOT/examples/minimal/src/main.rs" "$ROOT"/crates/*/src/lib.rs \
        "$ROOT"/crates/keycloak-bff/src/bin/*.rs "$ROOT/examples/orders-api/src/main.rs"
      echo "$ROOT" > "$marker"
    fi
  done
}

# The build caches grow with every combination of features and every checkout, and nothing
# trims them: a full disk failed a test run once (62 GB of target/debug). When less than
# KC_MIN_FREE_GB (default 20) is left where they live, drop what cargo rebuilds by itself:
# incremental state, outputs not written for KC_PRUNE_DAYS (default 1) days, and executables not
# linked in the last hour (a missing output only makes cargo build that unit again). Run before any build of the run starts.
prune_build_caches() {
  local min_gb="${KC_MIN_FREE_GB:-20}" days="${KC_PRUNE_DAYS:-1}" dir free_gb
  mkdir -p "$KC_CACHE"
  free_gb=$(( $(df -Pk "$KC_CACHE" | awk 'NR == 2 { print $4 }') / 1024 / 1024 ))
  [ "$free_gb" -ge "$min_gb" ] && return 0
  say "only $free_gb GB free under $KC_CACHE: pruning the build caches (incremental state, outputs older than $days days)"
  for dir in "$CARGO_TARGET_DIR" "$SITE_TARGET_DIR" "$KC_CACHE/doc-target"; do
    [ -d "$dir" ] || continue
    find "$dir" -type d -name incremental -prune -exec rm -rf {} +
    find "$dir" -path '*/deps/*' -type f -mtime +"$((days - 1))" -delete
    # Test and binary executables (about 1.2 GB each with debug info, one per build of every
    # checkout) not linked in the last hour: cargo links them again when a test runs.
    find "$dir" -path '*/deps/*' -type f -perm -u+x ! -name '*.*' -mmin +60 -delete
  done
  free_gb=$(( $(df -Pk "$KC_CACHE" | awk 'NR == 2 { print $4 }') / 1024 / 1024 ))
  say "now $free_gb GB free"
}

# Keycloak is stopped at the end only if it was not running at the start: `keycloak_was_running`
# first, then `stop_keycloak_unless_it_was_running` in the script's exit trap.
keycloak_was_running() {
  . "$ROOT/keycloak/common.sh"
  KC_WAS_RUNNING=false
  if kc_ready; then KC_WAS_RUNNING=true; fi
}
stop_keycloak_unless_it_was_running() {
  if [ "${KC_WAS_RUNNING:-true}" = false ]; then "$ROOT/keycloak/stop.sh" || true; fi
}

# The demo's resource server (examples/orders-api) on 127.0.0.1:4001, where Leptos.toml's remote
# API route /remote/orders forwards, accepting the tokens of every realm the scripts use. Builds it
# first (debug) unless told `--no-build`. Logs to $1; the pid is in ORDERS_API_PID.
start_orders_api() {
  local log="$1" build="${2:-}" kc="${KC_URL:-http://localhost:8080}"
  if [ "$build" != "--no-build" ]; then
    cargo build -q -p orders-api
  fi
  ORDERS_API_ADDR=127.0.0.1:4001 \
    ORDERS_API_ISSUERS="$kc/realms/demo,$kc/realms/demo-short,$kc/realms/demo-brief,$kc/realms/demo-cluster" \
    "$CARGO_TARGET_DIR/debug/orders-api" >"$log" 2>&1 &
  ORDERS_API_PID=$!
  for _ in $(seq 1 40); do
    curl -s -m 1 -o /dev/null http://127.0.0.1:4001/health && return 0
    kill -0 "$ORDERS_API_PID" 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.25
  done
  echo "orders-api does not answer on 127.0.0.1:4001; log: $log" >&2
  return 1
}
