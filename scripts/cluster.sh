#!/usr/bin/env bash
# Runs the app as a cluster on http://localhost:3000 (CLUSTER_PORT: another port, for a realm whose
# client is registered there, as the test command does): Redis (append-only, so sessions survive its
# restart) on 127.0.0.1:6390, two replicas of the app on 127.0.0.1:3101 and :3102 sharing it, and
# Debian's nginx load-balancing them round-robin, against the same Keycloak as scripts/dev.sh.
#
#   scripts/cluster.sh          start everything and stay in the foreground (Ctrl-C stops it)
#   scripts/cluster.sh start    start everything and return (the test command uses this)
#   scripts/cluster.sh stop     stop what `start` started
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

if [ "${1:-}" = stop ]; then
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

if [ ! -x "$(site_bin kc-leptos)" ] || [ "${CLUSTER_BUILD:-1}" = 1 ]; then
  say "building the app (server + WebAssembly)"
  leptos build --project kc-leptos
fi

say "starting Redis on 127.0.0.1:$REDIS_PORT (append-only: $RUN/redis)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --appendonly yes --dir "$RUN/redis" \
  --save "" --loglevel warning >"$RUN/redis.log" 2>&1 &
echo $! >"$RUN/redis.pid"
for _ in $(seq 1 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

# Every replica must seal pending sign-ins with the same key: a sign-in started on one replica
# finishes on the other.
secret_file="$RUN/session-secret"
[ -s "$secret_file" ] || head -c 48 /dev/urandom | base64 -w0 >"$secret_file"
for port in "${REPLICAS[@]}"; do
  say "starting a replica on 127.0.0.1:$port"
  LEPTOS_OUTPUT_NAME=kc-leptos LEPTOS_SITE_ROOT="$ROOT/target/site" LEPTOS_SITE_PKG_DIR=pkg LEPTOS_HASH_FILES=true \
    LEPTOS_SITE_ADDR="127.0.0.1:$port" LEPTOS_ENV=PROD APP_APP_DATA_DIR="$RUN/data" \
    APP_AUTH_PUBLIC_URL="http://localhost:$PORT" \
    APP_SESSION_STORE=redis APP_SESSION_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    APP_SESSION_SECRET="$(cat "$secret_file")" APP_AUTH_METRICS_ADDR="127.0.0.1:$((port + 6200))" \
    "$(site_bin kc-leptos)" >"$RUN/replica-$port.log" 2>&1 &
  echo $! >"$RUN/replica-$port.pid"
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
say "cluster up: http://localhost:$PORT -> ${REPLICAS[*]}; Redis 127.0.0.1:$REDIS_PORT; logs in $RUN"

if [ "${1:-}" = start ]; then
  exit 0
fi
trap 'stop_all; say "cluster stopped"' EXIT INT TERM
wait
