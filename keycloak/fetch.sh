#!/usr/bin/env bash
# Fetch the pinned Keycloak server distribution from Maven Central, verify its SHA-256 and unpack it
# into keycloak/.run. Idempotent: a second run neither downloads nor unpacks again.
set -euo pipefail
. "$(dirname "$0")/common.sh"

if [ -f "$KC_HOME/.unpacked-ok" ]; then
  exit 0
fi
mkdir -p "$KC_RUN"
zip="$HOME/.m2/repository/org/keycloak/keycloak-quarkus-dist/$KC_VERSION/keycloak-quarkus-dist-$KC_VERSION.zip"
if [ ! -f "$zip" ]; then
  kc_log "downloading keycloak-quarkus-dist $KC_VERSION from Maven Central"
  mvn -q -B dependency:get -Dartifact="org.keycloak:keycloak-quarkus-dist:$KC_VERSION:zip" -Dtransitive=false
fi
actual=$(sha256sum "$zip" | cut -d' ' -f1)
if [ "$actual" != "$KC_SHA256" ]; then
  kc_log "checksum mismatch for $zip: expected $KC_SHA256, got $actual; deleting it"
  rm -f "$zip"
  exit 1
fi
kc_log "unpacking Keycloak $KC_VERSION into $KC_RUN"
rm -rf "$KC_HOME"
unzip -q "$zip" -d "$KC_RUN"
chmod +x "$KC_HOME"/bin/*.sh
touch "$KC_HOME/.unpacked-ok"
