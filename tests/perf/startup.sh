#!/usr/bin/env bash
# tests/perf/startup.sh - start-up from disk (Consul source, registry down) to the first answer,
# with the zone cache and without, for a registry file (a generated data set, say).
#
#   cargo build --release && bash tests/perf/startup.sh /tmp/reg100k.json
#
# `cargo bench --bench startup` saves the registry as a base with its zone cache (and prints
# the library-side times); then snapdns starts on that state directory with an unreachable
# registry, once with the cache and once without it, and the time from start to the first
# answer and to the full state (base and journal read, "serving the persisted registry state")
# is printed. NO_PREPARE=1 reuses the state directory of an earlier run.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/snapdns"
FILE=${1:?usage: startup.sh REGISTRY_FILE}
WORK=${WORK:-/tmp/snapdns-startup}
PORT=${PORT:-5333}
[ -n "${NO_PREPARE:-}" ] || rm -rf "$WORK"; mkdir -p "$WORK"
[ -n "${NO_PREPARE:-}" ] || (cd "$REPO" && cargo bench --bench startup -- "$FILE" "$WORK/state")
# The first service in the file answers once anything is served.
SERVICE=$(head -c 4096 "$FILE" | grep -o '"Service": *"[^"]*"' | cut -d'"' -f4 | head -n1 || true)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT
run() {  # run LABEL -> start, time the first answer and the full state, stop
    local label=$1 start first full i
    start=$(date +%s%N)
    "$BIN" serve --listen 127.0.0.1:"$PORT" --registry http://127.0.0.1:9 --state-dir "$WORK/state" \
        --zones-dir "$WORK/none" --no-forward --udp-workers 1 --http off > "$WORK/$label.log" 2>&1 & PID=$!
    for i in $(seq 6000); do
        dig +time=1 +tries=1 @127.0.0.1 -p "$PORT" "$SERVICE.service.consul" A +short 2>/dev/null | grep -q . && break
        sleep 0.02
    done
    first=$(( ($(date +%s%N) - start) / 1000000 ))
    for i in $(seq 12000); do
        grep -q "serving the persisted registry state" "$WORK/$label.log" && break
        sleep 0.05
    done
    full=$(( ($(date +%s%N) - start) / 1000000 ))
    local rss; rss=$(awk '/VmRSS/{print $2}' /proc/"$PID"/status)
    echo "| $label | $first ms | $full ms | $((rss / 1024)) MiB |"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}
echo "| start-up | first answer | full state served | resident |"
echo "|---|---|---|---|"
run "zone cache"
mkdir -p "$WORK/aside"; mv "$WORK"/state/zone-*.snapdns "$WORK/aside/"
run "no cache"
mv "$WORK"/aside/zone-*.snapdns "$WORK/state/"
