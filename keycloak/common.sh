# Shared settings for the Keycloak scripts. Sourced, not run.
# Everything Keycloak writes lives under keycloak/.run (git-ignored).
KC_VERSION="26.5.6"
# SHA-256 of org.keycloak:keycloak-quarkus-dist:26.5.6:zip as served by Maven Central.
KC_SHA256="490189d9dff05272432d51f71a069462eeca97f2920a694d539a1e6c26a5a347"
KC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KC_RUN="${KC_RUN_DIR:-$KC_DIR/.run}"
KC_HOME="$KC_RUN/keycloak-$KC_VERSION"
KC_PORT="${KC_PORT:-8080}"
KC_MGMT_PORT="${KC_MGMT_PORT:-9000}"
KC_URL="http://localhost:$KC_PORT"
KC_REALM="demo"
KC_LOG="$KC_RUN/keycloak.log"
KC_PID="$KC_RUN/keycloak.pid"

kc_log() { printf '[keycloak] %s\n' "$*" >&2; }

kc_java_home() {
  # Keycloak 26.5 runs on JDK 17 or 21.
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME"; return; fi
  for d in /usr/lib/jvm/java-21-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-amd64; do
    [ -x "$d/bin/java" ] && { echo "$d"; return; }
  done
  dirname "$(dirname "$(readlink -f "$(command -v java)")")"
}

kc_ready() {
  curl -fsS -m 3 "http://localhost:$KC_MGMT_PORT/health/ready" >/dev/null 2>&1 &&
    curl -fsS -m 3 "$KC_URL/realms/$KC_REALM/.well-known/openid-configuration" >/dev/null 2>&1 &&
    curl -fsS -m 3 "$KC_URL/realms/$KC_REALM-short/.well-known/openid-configuration" >/dev/null 2>&1 &&
    curl -fsS -m 3 "$KC_URL/realms/$KC_REALM-brief/.well-known/openid-configuration" >/dev/null 2>&1 &&
    curl -fsS -m 3 "$KC_URL/realms/$KC_REALM-cluster/.well-known/openid-configuration" >/dev/null 2>&1
}

kc_running_pid() {
  [ -f "$KC_PID" ] || return 1
  local pid
  pid=$(cat "$KC_PID" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { echo "$pid"; return 0; }
  return 1
}
