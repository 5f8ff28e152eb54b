#!/usr/bin/env bash
# tests/perf/registry-by-hand.sh - one snapdns replica following a large generated registry,
# measured step by step where the registry-load driver cannot finish (1,000,000 instances):
# one cluster-wide check list read on its own, the first sync, resident memory after it, then a
# few check flips made with curl and seen with dig (the delay, and the replica's CPU per flip).
#
#   GEN=100000,10,3 FLIPS=3 bash tests/perf/registry-by-hand.sh
#
# Env: GEN (stand-in --generate, default 100000,10,3), FLIPS (3), PROTO (https), SNAPDNS_ARGS
# (extra replica flags, e.g. "--request-timeout 120s"), VISIBLE_TIMEOUT (180 s per flip),
# SYNC_TIMEOUT (1800 s), WORK (/tmp/snapdns-by-hand). Uses the release binaries in
# $CARGO_TARGET_DIR (build them first, or run tests/perf/registry-load.sh once).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TGT="${CARGO_TARGET_DIR:-$REPO/target}"
GEN=${GEN:-100000,10,3}; FLIPS=${FLIPS:-3}; PROTO=${PROTO:-https}; SNAPDNS_ARGS=${SNAPDNS_ARGS:-}
VISIBLE_TIMEOUT=${VISIBLE_TIMEOUT:-180}; SYNC_TIMEOUT=${SYNC_TIMEOUT:-1800}
WORK=${WORK:-/tmp/snapdns-by-hand}
rm -rf "$WORK"; mkdir -p "$WORK"

PIDS=()
stop_all() {  # kills only the processes this script started
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT INT TERM

now_ms() { date +%s%3N; }
say() { echo "$(date -u +%T) $*"; }
mem() { grep -E 'VmRSS|VmHWM' "/proc/$1/status" | awk '{printf "%s %d MiB  ", $1, $2/1024}'; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }

wait_for() {  # wait_for FILE REGEX SECONDS -> prints the first match
    local i
    for i in $(seq $(($3 * 20))); do
        if grep -aoE "$2" "$1" 2>/dev/null | head -1 | grep .; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for /$2/ in $1" >&2; return 1
}

tls=(); ca=(); curl=(curl -sS)
if [ "$PROTO" = https ]; then
    d=$WORK/certs; mkdir -p "$d"
    (cd "$d"
     ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
     openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=snapdns bench CA" 2>/dev/null
     printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
     openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=server 2>/dev/null
     openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 30 -extfile server.ext 2>/dev/null)
    tls=(--tls-cert "$d/server.pem" --tls-key "$d/server.key"); ca=(--ca-file "$d/ca.pem")
    curl+=(-k)
fi

say "uptime: $(uptime)"
t=$(now_ms)
"$TGT/release/consul-standin" --port 0 --generate "$GEN" "${tls[@]}" > "$WORK/standin.out" 2> "$WORK/standin.err" &
PIDS+=($!); standin=$!
port=$(wait_for "$WORK/standin.out" 'listening 127\.0\.0\.1:[0-9]+' 600 | sed 's/.*://')
url="$PROTO://127.0.0.1:$port"
say "stand-in up in $(( $(now_ms) - t )) ms, $(mem $standin)"

# One cluster-wide check list read, alone: what cluster mode pays per change.
"${curl[@]}" --compressed -o /dev/null -w "%{time_total} s, %{size_download} B on the wire\n" \
    "$url/v1/health/state/any?stale" | sed "s/^/$(date -u +%T) health\/state\/any read alone: /"

started=$(now_ms)
# shellcheck disable=SC2086
NO_COLOR=1 RUST_LOG=${RUST_LOG:-info,snapdns::source=debug} "$TGT/release/snapdns" serve \
    --listen 127.0.0.1:0 --http 127.0.0.1:0 --registry "$url" --state-dir "$WORK/state" \
    --sync-interval 1h --zones-dir "$WORK/no-zones" --no-forward --udp-workers 1 "${ca[@]}" \
    $SNAPDNS_ARGS > "$WORK/snapdns.log" 2>&1 &
PIDS+=($!); pid=$!
dns=$(wait_for "$WORK/snapdns.log" 'listening on udp [0-9.]+:[0-9]+' 60 | awk '{print $4}')
http=$(wait_for "$WORK/snapdns.log" 'listening on http [0-9.]+:[0-9]+' 60 | awk '{print $4}')
target=$("${curl[@]}" "$url/_standin/index" | jq .index)
services=${GEN%%,*}
last=$(printf 'svc-%05d' $((services - 1)))
answers() {  # answers NAME -> the sorted A answer of the replica
    dig +short +tries=1 +time=1 -p "${dns##*:}" @"${dns%:*}" "$1.service.consul" A | sort | tr '\n' ' '
}
for _ in $(seq $((SYNC_TIMEOUT * 5))); do
    index=$(curl -s "http://$http/health" | jq '.snapshot.index // 0' 2>/dev/null || echo 0)
    if [ "${index:-0}" -ge "$target" ] && [ -n "$(answers "$last")" ]; then break; fi
    sleep 0.2
done
say "first sync: $(( $(now_ms) - started )) ms; $(mem $pid)CPU $(cpu_s $pid) s; stand-in $(mem $standin)"
grep -E 'first registry sync done|slow snapshot build|watch mode' "$WORK/snapdns.log" | cut -c1-220 || true

for k in $(seq "$FLIPS"); do
    svc=$(printf 'svc-%05d' $((k * 997 % services))); inst="$svc-$((k % 10))"
    before=$(answers "$svc"); c0=$(cpu_s "$pid"); t=$(now_ms)
    "${curl[@]}" -o /dev/null -X PUT "$url/_standin/flip?service=$svc&instance=$inst&status=critical"
    put=$(( $(now_ms) - t ))
    seen=never
    for _ in $(seq $((VISIBLE_TIMEOUT * 50))); do
        if [ "$(answers "$svc")" != "$before" ]; then seen="$(( $(now_ms) - t )) ms"; break; fi
        sleep 0.02
    done
    say "flip $k ($inst critical): control PUT $put ms, visible after $seen; CPU $(echo "$(cpu_s "$pid") - $c0" | bc) s; $(mem $pid)"
done
grep -E 'WARN|registry sync done kind="changes"' "$WORK/snapdns.log" | tail -n 20 | cut -c1-260 || true
say "uptime: $(uptime)"
