#!/usr/bin/env bash
# tests/perf/memory.sh - resident memory and time to first answer of snapdns and Knot on the
# same generated data set (N services x K instances; ../shared/bench/gen_dataset.py).
#
#   N=10000 K=10 bash tests/perf/memory.sh     (after cargo build --release)
#
# Starts each server on loopback, waits until a service name answers, then reads its RSS from
# /proc. snapdns serves the Consul-format registry file; Knot the equivalent zone file.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$(cd "$REPO/../shared/bench" && pwd)"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/snapdns"
N=${N:-10000}; K=${K:-10}; WORK=${WORK:-/tmp/snapdns-memory}
rm -rf "$WORK"; mkdir -p "$WORK/knot/db" "$WORK/state"
N=$N K=$K NQUERIES=10 python3 "$BENCH/gen_dataset.py" -o "$WORK/data" > /dev/null
python3 "$BENCH/to_consul_registry.py" "$WORK/data" > /dev/null
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT
measure() {  # measure NAME PORT -> waits for an answer, prints RSS and time to first answer
    local name=$1 port=$2 start=$3 i
    for i in $(seq 1200); do
        dig +time=1 +tries=1 @127.0.0.1 -p "$port" "web-$((N - 1)).service.consul" A +short 2>/dev/null | grep -qE "^[0-9]+\.[0-9]+\." && break
        sleep 0.05
    done
    local ms=$(( ($(date +%s%N) - start) / 1000000 ))
    local rss; rss=$(awk '/VmRSS/{print $2}' /proc/"$PID"/status)
    awk -v n="$name" -v N="$N" -v K="$K" -v rss="$rss" -v ms="$ms" \
        'BEGIN { printf "| %s | %d x %d | %.1f MiB | %.0f B | %d ms |\n", n, N, K, rss / 1024, rss * 1024 / (N * K), ms }'
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}
echo "| server | data | resident | per instance | start to first answer |"
echo "|---|---|---|---|---|"
cat > "$WORK/knot/knot.conf" <<CONF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@5331
    udp-workers: 1
    background-workers: 1
database:
    storage: "$WORK/knot/db"
template:
  - id: default
    storage: "$WORK/data"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: consul.
    file: consul.zone
CONF
start=$(date +%s%N); knotd -c "$WORK/knot/knot.conf" > "$WORK/knot.log" 2>&1 & PID=$!
measure knot 5331 "$start"
start=$(date +%s%N)
"$BIN" serve --listen 127.0.0.1:5332 --registry file:"$WORK/data/consul-registry.json" --state-dir "$WORK/state" \
    --zones-dir "$WORK/none" --no-forward --udp-workers 1 --http off > "$WORK/snapdns.log" 2>&1 & PID=$!
measure snapdns 5332 "$start"
