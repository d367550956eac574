#!/usr/bin/env bash
# Stop the Keycloak started by start.sh: TERM, then KILL after 30 s. Does nothing if it is not running.
set -euo pipefail
. "$(dirname "$0")/common.sh"

if ! pid=$(kc_running_pid); then
  rm -f "$KC_PID"
  if kc_ready; then
    kc_log "a Keycloak not started from this checkout answers on port $KC_PORT; stop it where it was started"
    exit 1
  fi
  kc_log "not running"
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
