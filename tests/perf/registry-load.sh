#!/usr/bin/env bash
# tests/perf/registry-load.sh - the registry-load benchmark of issue 11: what following Consul
# costs snapdns replicas per change, idle and under churn, against the Rust Consul stand-in
# (tests/consul-standin) with a generated registry.
#
#   bash tests/perf/registry-load.sh
#   SIZES="10000,10" REPLICAS=5 PROTOCOLS=https IDLE=60 CHURN=60 bash tests/perf/registry-load.sh
#
# Per configuration (size x replicas x protocol): starts `consul-standin --generate S,I,CHECKS`
# (over https with a test CA made by openssl, HTTP/2 by ALPN), N `snapdns serve` replicas on
# loopback ephemeral ports following it, runs the `registry-load` driver (first sync, idle,
# single changes, 100 flips in 10 s, 10 flips/s) and tears everything down. Each configuration
# is bounded by CONFIG_TIMEOUT seconds. Tables go to stdout and to $WORK/results.md.
#
# Env: SIZES (default "1000,5 10000,10"; "100000,10" is the large one; S,I or S,I,C),
# REPLICAS ("1 5"), PROTOCOLS ("http https"), IDLE (60 s), CHURN (60 s), CHECKS (3),
# CONFIG_TIMEOUT (900 + IDLE + CHURN), SNAPDNS_ARGS (extra flags for every replica, e.g.
# "--watch-mode cluster"), DRIVER_ARGS (extra driver flags), WORK (/tmp/snapdns-registry-load),
# NO_BUILD=1 to use the binaries already in $CARGO_TARGET_DIR/release.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TGT="${CARGO_TARGET_DIR:-$REPO/target}"
SIZES=${SIZES:-"1000,5 10000,10"}; REPLICAS=${REPLICAS:-"1 5"}; PROTOCOLS=${PROTOCOLS:-"http https"}
IDLE=${IDLE:-60}; CHURN=${CHURN:-60}; CHECKS=${CHECKS:-3}
CONFIG_TIMEOUT=${CONFIG_TIMEOUT:-$((900 + IDLE + CHURN))}
WORK=${WORK:-/tmp/snapdns-registry-load}; SNAPDNS_ARGS=${SNAPDNS_ARGS:-}; DRIVER_ARGS=${DRIVER_ARGS:-}

if [ -z "${NO_BUILD:-}" ]; then
    (cd "$REPO" && cargo build --release -j "${JOBS:-2}" -p snapdns --bin snapdns \
        && cargo build --release -j "${JOBS:-2}" -p consul-standin --bins)
fi
SNAPDNS="$TGT/release/snapdns"; STANDIN="$TGT/release/consul-standin"; DRIVER="$TGT/release/registry-load"
mkdir -p "$WORK"; : > "$WORK/results.md"

PIDS=()
stop_all() {  # kills only the processes this script started
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT INT TERM

make_certs() {  # a CA and a server certificate for 127.0.0.1, as tests/it/support/certs.rs
    local d=$WORK/certs
    [ -f "$d/server.pem" ] && return
    mkdir -p "$d"
    (cd "$d"
     local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
     openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=snapdns bench CA" 2>/dev/null
     printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
     openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=server 2>/dev/null
     openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 30 -extfile server.ext 2>/dev/null)
}

wait_for() {  # wait_for FILE REGEX SECONDS -> prints the first match
    local i
    for i in $(seq $(($3 * 20))); do
        if grep -aoE "$2" "$1" 2>/dev/null | head -1 | grep .; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for /$2/ in $1" >&2; return 1
}

run_config() {  # run_config SIZE N PROTO
    local size=$1 n=$2 proto=$3 dir gen tls=() ca=() url port i replicas=() started
    gen=$size; [ "$(tr -cd , <<< "$size" | wc -c)" -lt 2 ] && gen="$size,$CHECKS"
    dir="$WORK/${gen//,/x}-r$n-$proto"; rm -rf "$dir"; mkdir -p "$dir"
    if [ "$proto" = https ]; then
        make_certs
        tls=(--tls-cert "$WORK/certs/server.pem" --tls-key "$WORK/certs/server.key")
        ca=(--ca-file "$WORK/certs/ca.pem")
    fi
    # Every replica connects from 127.0.0.1, where in production each has its own address:
    # the stand-in allows each of them Consul's default 200 (and the driver's control calls).
    "$STANDIN" --port 0 --generate "$gen" --http-max-conns-per-client $((200 * n + 20)) "${tls[@]}" \
        > "$dir/standin.out" 2> "$dir/standin.err" &
    PIDS+=($!)
    port=$(wait_for "$dir/standin.out" 'listening 127\.0\.0\.1:[0-9]+' 300 | sed 's/.*://')
    url="$proto://127.0.0.1:$port"
    started=$(date +%s%3N)
    for i in $(seq "$n"); do
        # shellcheck disable=SC2086
        NO_COLOR=1 "$SNAPDNS" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 --registry "$url" \
            --state-dir "$dir/state$i" --sync-interval 1h --zones-dir "$dir/no-zones" --no-forward \
            --udp-workers 1 "${ca[@]}" $SNAPDNS_ARGS > "$dir/snapdns$i.log" 2>&1 &
        PIDS+=($!)
        local pid=$!
        local udp http
        udp=$(wait_for "$dir/snapdns$i.log" 'listening on udp [0-9.]+:[0-9]+' 60 | awk '{print $4}')
        http=$(wait_for "$dir/snapdns$i.log" 'listening on http [0-9.]+:[0-9]+' 60 | awk '{print $4}')
        replicas+=(--replica "$udp,$http,$pid")
    done
    local label="### $gen, $n replica(s), $proto (stand-in $url)"
    echo "$label" >&2
    # shellcheck disable=SC2086
    timeout --kill-after=10 "$CONFIG_TIMEOUT" "$DRIVER" --standin "$url" --generate "$gen" \
        --started-ms "$started" --idle "$IDLE" --churn "$CHURN" --label "$label" "${replicas[@]}" \
        $DRIVER_ARGS | tee -a "$WORK/results.md" || echo "driver failed or timed out (rc $?)" | tee -a "$WORK/results.md"
    echo | tee -a "$WORK/results.md"
    stop_all
}

for size in $SIZES; do
    for n in $REPLICAS; do
        for proto in $PROTOCOLS; do
            run_config "$size" "$n" "$proto"
        done
    done
done
