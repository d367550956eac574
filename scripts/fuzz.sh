#!/usr/bin/env bash
# Fuzzes the auth core with cargo-fuzz (libFuzzer), each target for a bounded time, and prints what
# was reached. Not part of the test command. Usage: scripts/fuzz.sh [seconds per target, default 60]
# A crash stops the script; its input is kept under fuzz/artifacts/<target>/ and should become a
# regression test.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
secs="${1:-60}"
targets=(token callback_query return_to logout_token session_cookie)

if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd "$ROOT/fuzz"
mkdir -p logs
printf '%-16s %14s %10s %8s\n' target executions exec/s crashes
for t in "${targets[@]}"; do
  log="logs/$t.log"
  if ! cargo +nightly fuzz run "$t" -O -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "target $t crashed: see fuzz/artifacts/$t/ and $log" >&2
    exit 1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  printf '%-16s %14s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" 0
done
