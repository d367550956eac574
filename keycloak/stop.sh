#!/usr/bin/env bash
# Stop the Keycloak started by start.sh: TERM, then KILL after 30 s. Does nothing if it is not running.
set -euo pipefail
. "$(dirname "$0")/common.sh"

if ! pid=$(kc_running_pid); then
  kc_log "not running"
  rm -f "$KC_PID"
  exit 0
fi
kc_log "stopping process group $pid"
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 30); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
done
if kill -0 "$pid" 2>/dev/null; then
  kc_log "still running after 30 s; killing"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$KC_PID"
kc_log "stopped"
