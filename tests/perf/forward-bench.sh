#!/usr/bin/env bash
# tests/perf/forward-bench.sh - forwarded names answered from the cache: snapdns beside dnsmasq,
# both forwarding to the same Knot upstream, under dnsperf on the same cached names.
#
#   bash tests/perf/forward-bench.sh          (root; after cargo build --release)
#
# Knot serves NAMES names under fwd.test. (A records, TTL 3600) on 127.0.0.1:5320. snapdns
# (port 5321, --upstream Knot) and dnsmasq (port 5322, server=Knot, cache-size 10000) each get
# every name asked once (cache warm), then dnsperf (pinned to CPU 0) asks the same names for
# DURATION s while the forwarder runs pinned to CPU 1. Prints qps and the forwarder's CPU
# microseconds per query, median of REPS runs each. Loopback only; stops what it started.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/snapdns"
NAMES=${NAMES:-5000}; DURATION=${DURATION:-10}; REPS=${REPS:-3}
WORK=${WORK:-/tmp/fwdbench}
command -v dnsperf knotd dnsmasq >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsperf knot dnsmasq-base >/dev/null; }
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK/knot/db" "$WORK/snap"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

{ echo '$ORIGIN fwd.test.'; echo '$TTL 3600'
  echo '@ IN SOA ns hostmaster 1 3600 600 86400 60'; echo '@ IN NS ns'; echo 'ns IN A 127.0.0.1'
  for i in $(seq 1 "$NAMES"); do echo "h$i IN A 10.$((i / 65536 % 256)).$((i / 256 % 256)).$((i % 256))"; done
} > "$WORK/knot/fwd.test.zone"
for i in $(seq 1 "$NAMES"); do echo "h$i.fwd.test A"; done > "$WORK/queries.txt"
cat > "$WORK/knot/knot.conf" <<CONF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@5320
    udp-workers: 1
    background-workers: 1
database:
    storage: "$WORK/knot/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$WORK/knot"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: fwd.test.
    file: fwd.test.zone
CONF
taskset -c 0 knotd -c "$WORK/knot/knot.conf" > "$WORK/knot/log" 2>&1 & PIDS+=($!)
"$BIN" serve --listen 127.0.0.1:5321 --registry file:"$REPO/zones/demo.registry.json" \
    --state-dir "$WORK/snap" --zones-dir "$WORK/none" --upstream 127.0.0.1:5320 \
    --udp-workers 1 --http off > "$WORK/snap/log" 2>&1 & PIDS+=($!)
SNAP_PID=$!
dnsmasq -k --port=5322 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
    --server=127.0.0.1#5320 --cache-size=10000 --user=root --group=root --pid-file= \
    --log-facility=- > "$WORK/dnsmasq.log" 2>&1 & PIDS+=($!)
DNSMASQ_PID=$!
for port in 5320 5321 5322; do
    for _ in $(seq 100); do
        dig +time=1 +tries=1 @127.0.0.1 -p $port h1.fwd.test A +short 2>/dev/null | grep -q . && break
        sleep 0.1
    done
done
ticks() { local t=0 p v; for p in "$@"; do for task in /proc/"$p"/task/*; do
    v=$(sed 's/.*) //' "$task/stat" 2>/dev/null | awk '{print $12+$13}'); t=$((t + ${v:-0})); done; done; echo "$t"; }
run() {  # run NAME PORT PID -> "qps cpu_us_per_query"
    local name=$1 port=$2 pid=$3 out before after qps
    taskset -a -p -c 1 "$pid" > /dev/null
    # Warm: every name once.
    dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -n 1 -c 4 -q 100 > /dev/null 2>&1
    before=$(ticks "$pid")
    out=$(taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -l "$DURATION" -c 8 -q 200 2>&1)
    after=$(ticks "$pid")
    qps=$(awk '/Queries per second/{printf "%.0f", $4}' <<<"$out")
    local completed; completed=$(awk '/Queries completed/{print $3}' <<<"$out")
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v q="$completed" -v qps="$qps" -v n="$name" \
        'BEGIN{printf "%s %s %.2f\n", n, qps, (q > 0 ? t / hz * 1e6 / q : 0)}'
}
echo "forwarded names from the cache: $NAMES names, ${DURATION}s x $REPS runs, forwarder pinned to CPU 1, dnsperf to CPU 0"
for rep in $(seq 1 "$REPS"); do
    run snapdns 5321 "$SNAP_PID"
    run dnsmasq 5322 "$DNSMASQ_PID"
done | tee "$WORK/runs.txt"
echo "| server | qps (median) | CPU µs/query (median) |"
echo "|---|---|---|"
for s in snapdns dnsmasq; do
    awk -v s=$s '$1==s{print $2, $3}' "$WORK/runs.txt" | sort -n | awk -v s=$s '{q[NR]=$1; c[NR]=$2} END{m=int((NR+1)/2); printf "| %s | %s | %s |\n", s, q[m], c[m]}'
done
