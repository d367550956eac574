#!/usr/bin/env bash
# The chaos soak: the cluster (two replicas of the release build on Redis with its append-only file,
# nginx round-robin in front, Keycloak on realm demo-short: 10-second access tokens) and 200
# simulated users signing in through Keycloak's form, then 10 minutes of pages, server functions,
# notes and event streams, while a chaos loop kills a replica (kill -9) and restarts it, kills Redis
# (or, with --sentinel, the Sentinel master: a failover) and restarts it, and restarts Keycloak.
# end2end/soak/run.mjs does the load, the faults and the checks. Writes docs/reliability.md (the
# section of its mode) and its chart (docs/reliability.png, docs/reliability-sentinel.png); exits 1
# when a sign-out nobody asked for, a lost write or an unexpected answer happened.
#
#   scripts/soak.sh                  the full run (about 13 minutes; more the first time)
#   scripts/soak.sh --sentinel       the same with Redis behind Sentinel, failovers for Redis faults
#   scripts/soak.sh --smoke          seconds long, against the cluster already running on
#                                    CLUSTER_PORT (the test command's, realm SOAK_REALM), no
#                                    Keycloak restart; report in target/soak-smoke/
# SOAK_USERS, SOAK_SECONDS, SOAK_FAULT_EVERY (s) and SOAK_SEED override the run's figures.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

smoke=0
sentinel=0
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    --sentinel) sentinel=1 ;;
    *) echo "usage: scripts/soak.sh [--sentinel] [--smoke]" >&2; exit 2 ;;
  esac
done

versions="Versions: $(rustc --version | cut -d' ' -f1-2), Keycloak $(. keycloak/common.sh; echo "$KC_VERSION"), $(redis-server --version | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), Node $(node --version)"
if [ "$smoke" = 1 ]; then
  out="$ROOT/target/soak-smoke/reliability.md"
  mkdir -p "$(dirname "$out")"
  rm -f "$out"
  (cd end2end && SOAK_APP="http://localhost:${CLUSTER_PORT:-3100}" SOAK_REALM="${SOAK_REALM:-demo-cluster}" \
    SOAK_USERS="${SOAK_USERS:-6}" SOAK_SECONDS="${SOAK_SECONDS:-24}" SOAK_FAULT_EVERY="${SOAK_FAULT_EVERY:-9}" \
    SOAK_SENTINEL="$sentinel" SOAK_KEYCLOAK=0 SOAK_OUT="$out" \
    SOAK_VERSIONS="$versions; build: debug (smoke run: seconds long, figures meaningless)." node soak/run.mjs)
  exit 0
fi

"$ROOT/scripts/setup.sh"
claim_target_dir
keycloak_was_running
cleanup() {
  local rc=$?
  "$ROOT/scripts/cluster.sh" stop >/dev/null 2>&1 || true
  stop_keycloak_unless_it_was_running
  exit "$rc"
}
trap cleanup EXIT INT TERM

# A fresh start: no sessions, notes or append-only files of an earlier run.
"$ROOT/scripts/cluster.sh" stop >/dev/null
rm -rf "$ROOT/target/cluster/redis" "$ROOT/target/cluster/redis-replica" "$ROOT/target/cluster/data"
args=(start)
[ "$sentinel" = 1 ] && args+=(--sentinel)
CLUSTER_PROFILE=release CLUSTER_PORT=3000 APP_KEYCLOAK_ISSUER_URL=http://localhost:8080/realms/demo-short \
  APP_SESSION_REFRESH_MARGIN_SECS=3 RUST_LOG="${RUST_LOG:-info}" "$ROOT/scripts/cluster.sh" "${args[@]}"
say "the soak: ${SOAK_USERS:-200} users, ${SOAK_SECONDS:-600} s"
(cd end2end && SOAK_APP=http://localhost:3000 SOAK_REALM=demo-short SOAK_SENTINEL="$sentinel" SOAK_MARGIN=3 \
  SOAK_OUT="$ROOT/docs/reliability.md" SOAK_VERSIONS="$versions; build: release." node soak/run.mjs)
say "soak done: docs/reliability.md"
