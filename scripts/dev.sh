#!/usr/bin/env bash
# Installs what is missing, starts Keycloak with the demo realm, and runs the app on
# http://localhost:3000 with live rebuilds. Ctrl-C stops the app; Keycloak keeps running
# (keycloak/stop.sh stops it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/setup.sh"
claim_target_dir
"$ROOT/keycloak/start.sh"
export APP_KEYCLOAK_CLIENT_SECRET="${APP_KEYCLOAK_CLIENT_SECRET:-$(dev_client_secret)}"
export APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET="${APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET:-$(dev_client_secret user-directory)}"
# The demo's resource server behind /remote/orders (the Orders page); it ends with this script.
mkdir -p "$ROOT/target"
start_orders_api "$ROOT/target/orders-api.log"
trap 'kill "$ORDERS_API_PID" 2>/dev/null || true' EXIT
say "app: http://localhost:3000   Keycloak: http://localhost:8080 (admin/admin)   orders-api: http://127.0.0.1:4001"
say "development users (see README): alice, erin, paul, nora; password <name>-dev-pw"
CARGO_TARGET_DIR="$SITE_TARGET_DIR" cargo leptos watch --split --project kc-leptos
