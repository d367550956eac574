# Shared by the scripts in this folder. Sourced, not run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One build cache outside the clone, so a fresh clone builds incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kc-leptos/target}"
export PATH="$HOME/.cargo/bin:$PATH"
CARGO_LEPTOS_VERSION="0.3.10"
BINARYEN_VERSION="132"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The dev client secret comes from the realm file Keycloak imports (development only).
dev_client_secret() {
  jq -r '.clients[] | select(.clientId == "demo-app") | .secret' "$ROOT/keycloak/demo-realm.json"
}

wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
