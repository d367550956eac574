#!/usr/bin/env bash
# Start Keycloak in dev mode on http://localhost:8080 with the demo realm, and wait until it is ready.
# Idempotent: when Keycloak is already up, it says so and exits 0. When the realm file changed since
# the last import, the dev database is reset so that the new realm is imported.
set -euo pipefail
. "$(dirname "$0")/common.sh"
timeout_s="${KC_START_TIMEOUT:-240}"

if kc_ready; then
  kc_log "already running at $KC_URL"
  exit 0
fi
if pid=$(kc_running_pid); then
  kc_log "process $pid is starting; waiting for it"
else
  "$KC_DIR/fetch.sh"
  mkdir -p "$KC_HOME/data/import"
  # The imported realms derive from the realm file and from this script (demo-short, demo-brief).
  realm_sum=$(cat "$KC_DIR/demo-realm.json" "$KC_DIR/start.sh" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$KC_RUN/realm.sha256" 2>/dev/null || true)" != "$realm_sum" ]; then
    kc_log "realm file is new or changed: resetting the dev database for a fresh import"
    rm -rf "$KC_HOME/data/h2"
  fi
  cp "$KC_DIR/demo-realm.json" "$KC_HOME/data/import/demo-realm.json"
  # demo-short: the same realm with 10-second access tokens, for the token-lifecycle tests. It
  # records refresh events, so that tests can count the refreshes Keycloak itself saw. demo-app
  # may also come back to http://localhost:3006, the app that end2end/tests/outage.spec.ts starts.
  jq '.realm = "demo-short"
      | .displayName = "kc-leptos demo (short-lived tokens, for tests)"
      | .accessTokenLifespan = 10 | .ssoSessionIdleTimeout = 900 | .ssoSessionMaxLifespan = 3600
      | .eventsEnabled = true | .eventsExpiration = 3600
      | .enabledEventTypes = ["REFRESH_TOKEN", "REFRESH_TOKEN_ERROR", "TOKEN_EXCHANGE"]
      | .clients |= map(if .clientId == "demo-app" then
            .redirectUris += ["http://localhost:3006/auth/callback"]
          else . end)
      | .users |= map(if .realmRoles then .realmRoles |= map(if . == "default-roles-demo" then "default-roles-demo-short" else . end) else . end)' \
    "$KC_DIR/demo-realm.json" > "$KC_HOME/data/import/demo-short-realm.json"
  # demo-brief: sessions that end within minutes, for the expiry warning's browser tests, with
  # demo-app on http://localhost:3004 using front-channel logout instead of back-channel (the
  # app instance of scripts/test.sh that runs with session.frontchannel_logout = true). Idle
  # 130 s and at most 160 s, with the app's default two-minute warning: the banner shows 10 s
  # after a sign-in or a "Stay signed in", each "Stay signed in" moves the end until the maximum
  # caps it, and from 40 s after the sign-in the banner can only ask for a new sign-in. The first
  # click has 30 s to come before that, and the banner stays hidden 10 s after each click, which
  # keeps the browser test safe on a slow machine. Access tokens never expire before the session
  # does.
  jq '.realm = "demo-brief"
      | .displayName = "kc-leptos demo (sessions of two minutes, for tests)"
      | .accessTokenLifespan = 600 | .ssoSessionIdleTimeout = 130 | .ssoSessionMaxLifespan = 160
      | .clients |= map(if .clientId == "demo-app" then
            .rootUrl = "http://localhost:3004"
            | .redirectUris = ["http://localhost:3004/auth/callback"]
            | .frontchannelLogout = true
            | .attributes["post.logout.redirect.uris"] = "http://localhost:3004/"
            | .attributes["frontchannel.logout.url"] = "http://localhost:3004/auth/frontchannel-logout"
            | .attributes["frontchannel.logout.session.required"] = "true"
            | del(.attributes["backchannel.logout.url"])
          else . end)
      | .users |= map(if .realmRoles then .realmRoles |= map(if . == "default-roles-demo" then "default-roles-demo-brief" else . end) else . end)' \
    "$KC_DIR/demo-realm.json" > "$KC_HOME/data/import/demo-brief-realm.json"
  # demo-cluster: demo-short for the cluster of the test command (scripts/cluster.sh on
  # http://localhost:3100), whose browser tests run beside the single process's: a realm of its
  # own, so that neither run's sign-outs touch the other's users.
  jq '.realm = "demo-cluster"
      | .displayName = "kc-leptos demo (the cluster of the test command)"
      | .accessTokenLifespan = 10 | .ssoSessionIdleTimeout = 900 | .ssoSessionMaxLifespan = 3600
      | .eventsEnabled = true | .eventsExpiration = 3600
      | .enabledEventTypes = ["REFRESH_TOKEN", "REFRESH_TOKEN_ERROR", "TOKEN_EXCHANGE"]
      | .clients |= map(if .clientId == "demo-app" then
            .rootUrl = "http://localhost:3100"
            | .redirectUris = ["http://localhost:3100/auth/callback"]
            | .attributes["post.logout.redirect.uris"] = "http://localhost:3100/"
            | .attributes["backchannel.logout.url"] = "http://localhost:3100/auth/backchannel-logout"
          else . end)
      | .users |= map(if .realmRoles then .realmRoles |= map(if . == "default-roles-demo" then "default-roles-demo-cluster" else . end) else . end)' \
    "$KC_DIR/demo-realm.json" > "$KC_HOME/data/import/demo-cluster-realm.json"
  if curl -s -m 2 -o /dev/null "http://localhost:$KC_PORT/" ; then
    kc_log "port $KC_PORT is taken by something that is not a ready Keycloak; stop it first"
    exit 1
  fi
  export JAVA_HOME; JAVA_HOME=$(kc_java_home)
  export KC_BOOTSTRAP_ADMIN_USERNAME="${KC_ADMIN_USER:-admin}"
  export KC_BOOTSTRAP_ADMIN_PASSWORD="${KC_ADMIN_PASSWORD:-admin}"
  export JAVA_OPTS_KC_HEAP="${JAVA_OPTS_KC_HEAP:--Xms128m -Xmx768m}"
  kc_log "starting Keycloak $KC_VERSION (log: $KC_LOG)"
  # setsid: Keycloak gets its own process group, so stop.sh can end it and its children together.
  setsid nohup "$KC_HOME/bin/kc.sh" start-dev \
    --http-port="$KC_PORT" --http-management-port="$KC_MGMT_PORT" \
    --hostname="$KC_URL" --import-realm --health-enabled=true \
    >"$KC_LOG" 2>&1 < /dev/null &
  echo $! > "$KC_PID"
  echo "$realm_sum" > "$KC_RUN/realm.sha256"
fi

deadline=$((SECONDS + timeout_s))
until kc_ready; do
  if ! kc_running_pid >/dev/null; then
    kc_log "Keycloak exited during start-up; last lines of $KC_LOG:"
    tail -n 40 "$KC_LOG" >&2 || true
    rm -f "$KC_RUN/realm.sha256"
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    kc_log "not ready after ${timeout_s}s; last lines of $KC_LOG:"
    tail -n 40 "$KC_LOG" >&2 || true
    exit 1
  fi
  sleep 2
done
kc_log "ready at $KC_URL (realm $KC_REALM)"
