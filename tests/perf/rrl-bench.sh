#!/usr/bin/env bash
# tests/perf/rrl-bench.sh - what response rate limiting costs legitimate traffic: snapdns on the
# demo registry under dnsperf, with RRL off (--rrl-rate 0) and on at a rate that limits nothing
# (--rrl-rate 1000000), alternating, REPS rounds each; then one round at the default rate to
# show that it does limit.
#
#   bash tests/perf/rrl-bench.sh          (after cargo build --release; needs dnsperf)
#
# dnsperf runs from 127.0.0.1 while --allow-recursion is 127.0.0.2/32, so every query goes
# through the limiter. The ten query names all come from one /24, so all the traffic lands on
# ten buckets: the most contended case for the shared table. Prints dnsperf's summary, the
# server's CPU microseconds per answered query and its RRL counters. Loopback only; stops
# what it started.
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/snapdns}
REPS=${REPS:-2}
DURATION=${DURATION:-10}
QPS=${QPS:-50000}
PORT=${PORT:-8653}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
REPO=$(cd "$(dirname "$0")/../.." && pwd)

for service in web api db cache; do
    echo "$service.service.consul A"
    echo "_$service._tcp.service.consul SRV"
done > "$WORK/queries.txt"
echo "v6svc.service.consul AAAA" >> "$WORK/queries.txt"
echo "nope.service.consul A" >> "$WORK/queries.txt"

run() {
    local label=$1
    shift
    rm -rf "$WORK/state"
    "$BIN" serve --registry "file:$REPO/zones/demo.registry.json" --state-dir "$WORK/state" \
        --listen "127.0.0.1:$PORT" --http "127.0.0.1:$((PORT + 1))" --no-forward \
        --allow-recursion 127.0.0.2/32 "$@" > "$WORK/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 50); do
        grep -q "listening on udp" "$WORK/server.log" && break
        sleep 0.1
    done
    timeout $((DURATION + 20)) dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" \
        -l "$DURATION" -c 2 -Q "$QPS" -t 1 > "$WORK/dnsperf.txt" 2>&1 || true
    local ticks completed
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    completed=$(awk '/Queries completed/ {print $3}' "$WORK/dnsperf.txt")
    echo "== $label ($*)"
    grep -E "Queries (completed|lost)|Queries per second" "$WORK/dnsperf.txt"
    awk -v t="$ticks" -v c="$completed" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "  server CPU us/query:  %.2f\n", t * 1e6 / hz / c }'
    curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E "^snapdns_rrl" | sed 's/^/  /'
    kill "$pid"
    wait "$pid" 2> /dev/null || true
}

for round in $(seq "$REPS"); do
    run "off $round" --rrl-rate 0
    run "on $round" --rrl-rate 1000000
done
run "default rate"
