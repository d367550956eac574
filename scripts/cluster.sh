#!/usr/bin/env bash
# Runs the app as a cluster on http://localhost:3000 (CLUSTER_PORT: another port, for a realm whose
# client is registered there, as the test command does): Redis (append-only, so sessions survive its
# restart) on 127.0.0.1:6390, two replicas of the app on 127.0.0.1:3101 and :3102 sharing it, and
# Debian's nginx load-balancing them round-robin, against the same Keycloak as scripts/dev.sh.
#
#   scripts/cluster.sh          start everything and stay in the foreground (Ctrl-C stops it)
#   scripts/cluster.sh start    start everything and return (the test command uses this)
#   scripts/cluster.sh stop     stop what `start` started
#   --sentinel (after start, or alone): Redis behind Sentinel instead of one Redis: a master on
#               :6390 and a replica on :6391 (both append-only) and three sentinels on
#               :26390-26392 (`redis-server --sentinel`) watching the master `kcbff`; the replicas
#               use redis+sentinel://127.0.0.1:26390,127.0.0.1:26391,127.0.0.1:26392/kcbff.
#               `redis-cli -p 26390 SENTINEL get-master-addr-by-name kcbff` names the master;
#               `kill -9 $(cat target/cluster/redis.pid)` kills the first one to see a failover.
#
# Each process (Redis, the sentinels, the replicas) starts from a script of its own,
# target/cluster/start-<name>.sh, which scripts/soak.sh runs again to restart one it killed.
# Redis writes every change to its append-only file before it acknowledges it (appendfsync always).
#
# Each replica serves its metrics and detailed readiness on 127.0.0.1:<its port + 6200> (9301,
# 9302), never through nginx.
# Keycloak keeps running either way (keycloak/stop.sh stops it). Settings of the replicas can be
# overridden through the environment (APP_KEYCLOAK_ISSUER_URL, APP_SESSION_REFRESH_MARGIN_SECS...).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

RUN="$ROOT/target/cluster"
REDIS_PORT=6390
SENTINEL=0
ACTION=""
for arg in "$@"; do
  case "$arg" in
    --sentinel) SENTINEL=1 ;;
    start | stop) ACTION="$arg" ;;
    *) echo "usage: scripts/cluster.sh [start|stop] [--sentinel]" >&2; exit 2 ;;
  esac
done
REPLICAS=(3101 3102)
PORT="${CLUSTER_PORT:-3000}"

stop_all() {
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

if [ "$ACTION" = stop ]; then
  stop_all
  say "cluster stopped"
  exit 0
fi

"$ROOT/scripts/setup.sh"
claim_target_dir
"$ROOT/keycloak/start.sh"
export APP_KEYCLOAK_CLIENT_SECRET="${APP_KEYCLOAK_CLIENT_SECRET:-$(dev_client_secret)}"
export APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET="${APP_KEYCLOAK_DIRECTORY_CLIENT_SECRET:-$(dev_client_secret user-directory)}"
stop_all
for port in "$PORT" "${REPLICAS[@]}"; do
  if curl -s -m 2 -o /dev/null "http://localhost:$port/"; then
    echo "port $port is in use; stop what runs there first" >&2
    exit 1
  fi
done
mkdir -p "$RUN/redis" "$RUN/data" "$RUN/nginx"

# CLUSTER_PROFILE=release: the release build (scripts/soak.sh); the default is the debug build.
PROFILE="${CLUSTER_PROFILE:-debug}"
if [ ! -x "$(site_bin kc-leptos "$PROFILE")" ] || [ "${CLUSTER_BUILD:-1}" = 1 ]; then
  say "building the app (server + WebAssembly, $PROFILE)"
  if [ "$PROFILE" = release ]; then
    leptos build --release --precompress --split --project kc-leptos
  else
    leptos build --split --project kc-leptos
  fi
fi

# Each process starts from a script of its own in $RUN (start-<name>.sh, extra arguments passed
# on), which writes its pid file and appends to its log: scripts/soak.sh restarts a process it
# killed exactly as it was started.
start_script() {
  local name="$1"
  shift
  {
    echo '#!/usr/bin/env bash'
    printf 'echo $$ >%q\n' "$RUN/$name.pid"
    printf 'exec'
    printf ' %q' "$@"
    printf ' "$@" >>%q 2>&1\n' "$RUN/$name.log"
  } >"$RUN/start-$name.sh"
  chmod +x "$RUN/start-$name.sh"
}
run_script() {
  local name="$1"
  shift
  rm -f "$RUN/$name.pid"
  "$RUN/start-$name.sh" "$@" </dev/null &
  for _ in $(seq 1 50); do [ -s "$RUN/$name.pid" ] && return 0; sleep 0.05; done
}

say "starting Redis on 127.0.0.1:$REDIS_PORT (append-only, each write on disk before it is acknowledged: $RUN/redis)"
rm -f "$RUN"/*.log
# appendfsync always: a write Redis acknowledged survives Redis being killed (kill -9), as a
# session's token rotation must (scripts/soak.sh kills it).
start_script redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --appendonly yes --appendfsync always \
  --dir "$RUN/redis" --save "" --loglevel warning
run_script redis
# PONG, not "LOADING": a large append-only file takes a while to load, and a replica that
# starts meanwhile cannot connect.
for _ in $(seq 1 600); do
  [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
  sleep 0.1
done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
if [ "$SENTINEL" = 1 ]; then
  replica_port=$((REDIS_PORT + 1))
  say "starting its replica on 127.0.0.1:$replica_port and three sentinels on :26390-26392"
  rm -rf "$RUN/redis-replica" && mkdir -p "$RUN/redis-replica"
  # Either server can be the master after a failover: the soak restarts a killed one with
  # --replicaof <the new master> after these arguments.
  start_script redis-replica redis-server --port "$replica_port" --bind 127.0.0.1 --appendonly yes \
    --appendfsync always --dir "$RUN/redis-replica" --save "" --loglevel warning
  run_script redis-replica --replicaof 127.0.0.1 "$REDIS_PORT"
  hosts=""
  for port in 26390 26391 26392; do
    printf '%s\n' "port $port" "bind 127.0.0.1" "dir $RUN" \
      "sentinel monitor kcbff 127.0.0.1 $REDIS_PORT 2" \
      "sentinel down-after-milliseconds kcbff 1000" \
      "sentinel failover-timeout kcbff 10000" \
      "sentinel parallel-syncs kcbff 1" >"$RUN/sentinel-$port.conf"
    start_script "sentinel-$port" redis-server "$RUN/sentinel-$port.conf" --sentinel
    run_script "sentinel-$port"
    hosts="$hosts${hosts:+,}127.0.0.1:$port"
  done
  # Ready once every sentinel knows the replica and the two others (a failover can happen).
  ready=0
  for _ in $(seq 1 300); do
    ready=1
    for port in 26390 26391 26392; do
      info="$(redis-cli -p "$port" SENTINEL master kcbff 2>/dev/null | tr '\n' ' ')"
      case "$info" in
        *"num-slaves 1 "*"num-other-sentinels 2 "*) ;;
        *) ready=0 ;;
      esac
    done
    [ "$ready" = 1 ] && break
    sleep 0.1
  done
  if [ "$ready" != 1 ]; then
    echo "the sentinels did not find each other; see $RUN/sentinel-*.log" >&2
    exit 1
  fi
  REDIS_URL="redis+sentinel://$hosts/kcbff"
fi

# Every replica must seal pending sign-ins with the same key: a sign-in started on one replica
# finishes on the other.
secret_file="$RUN/session-secret"
[ -s "$secret_file" ] || head -c 48 /dev/urandom | base64 -w0 >"$secret_file"
for port in "${REPLICAS[@]}"; do
  say "starting a replica on 127.0.0.1:$port"
  # The environment (the session secret too) is passed to the start script, never written into
  # it: scripts/soak.sh restarts a replica it killed with the environment the replica had.
  start_script "replica-$port" "$(site_bin kc-leptos "$PROFILE")"
  LEPTOS_OUTPUT_NAME=kc-leptos LEPTOS_SITE_ROOT="$ROOT/target/site" LEPTOS_SITE_PKG_DIR=pkg LEPTOS_HASH_FILES=true \
    LEPTOS_SITE_ADDR="127.0.0.1:$port" LEPTOS_ENV=PROD APP_APP_DATA_DIR="$RUN/data" \
    APP_AUTH_PUBLIC_URL="http://localhost:$PORT" \
    APP_SESSION_STORE=redis APP_SESSION_REDIS_URL="$REDIS_URL" \
    APP_SESSION_SECRET="$(cat "$secret_file")" APP_AUTH_METRICS_ADDR="127.0.0.1:$((port + 6200))" \
    run_script "replica-$port"
  wait_for "$port" "$(cat "$RUN/replica-$port.pid")" "$RUN/replica-$port.log"
done

say "starting nginx on 127.0.0.1:$PORT (round-robin over ${REPLICAS[*]})"
servers=""
for port in "${REPLICAS[@]}"; do servers="$servers    server 127.0.0.1:$port max_fails=0;
"; done
cat >"$RUN/nginx/nginx.conf" <<EOF
daemon off;
pid $RUN/nginx/nginx.pid.internal;
error_log $RUN/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $RUN/nginx/body;
  proxy_temp_path $RUN/nginx/proxy;
  fastcgi_temp_path $RUN/nginx/fastcgi;
  uwsgi_temp_path $RUN/nginx/uwsgi;
  scgi_temp_path $RUN/nginx/scgi;
  upstream app {
$servers    keepalive 32;
  }
  server {
    listen 127.0.0.1:$PORT;
    # Keycloak pools back-channel connections and does not retry a delivery: like the app,
    # close each one (nginx does not pass the app's hop-by-hop Connection: close on).
    location = /auth/backchannel-logout {
      keepalive_timeout 0;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
    }
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_next_upstream error timeout;
    }
  }
}
EOF
nginx -c "$RUN/nginx/nginx.conf" -p "$RUN/nginx" >"$RUN/nginx/stdout.log" 2>&1 &
echo $! >"$RUN/nginx.pid"
wait_for "$PORT" "$(cat "$RUN/nginx.pid")" "$RUN/nginx/error.log"
say "cluster up: http://localhost:$PORT -> ${REPLICAS[*]}; Redis $REDIS_URL; logs in $RUN"

if [ "$ACTION" = start ]; then
  exit 0
fi
trap 'stop_all; say "cluster stopped"' EXIT INT TERM
wait
