#!/usr/bin/env bash
# tests/perf/transfer.sh - a full zone transfer (AXFR) of a large registry zone: its time, the
# records and messages, and the primary's memory before and after; then Knot as a secondary
# loading the same transfer. N services x K instances (../shared/bench/gen_dataset.py).
#
#   N=10000 K=10 bash tests/perf/transfer.sh     (after cargo build --release)
#
# The record count is checked three ways: what snapdns logs it sent, what kdig received and
# verified (TSIG chain), and what Knot reports it loaded.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$(cd "$REPO/../shared/bench" && pwd)"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/snapdns"
N=${N:-10000}; K=${K:-10}; WORK=${WORK:-/tmp/snapdns-transfer}
KEY="xfr:hmac-sha256:c25hcGRucyB0cmFuc2ZlciBwZXJmIGtleSAzMiBieXRlcyE="
rm -rf "$WORK"; mkdir -p "$WORK/knot/db" "$WORK/state"
N=$N K=$K NQUERIES=10 python3 "$BENCH/gen_dataset.py" -o "$WORK/data" > /dev/null
python3 "$BENCH/to_consul_registry.py" "$WORK/data" > /dev/null
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; true' EXIT
rss() { awk '/VmRSS/{printf "%.1f MiB", $2 / 1024}' /proc/"$1"/status; }
hwm() { awk '/VmHWM/{printf "%.1f MiB", $2 / 1024}' /proc/"$1"/status; }

"$BIN" serve --listen 127.0.0.1:5342 --registry file:"$WORK/data/consul-registry.json" \
    --state-dir "$WORK/state" --zones-dir "$WORK/none" --no-forward --udp-workers 1 --http off \
    --allow-transfer 127.0.0.1/32 --tsig-key "$KEY" > "$WORK/snapdns.log" 2>&1 & PID=$!
PIDS+=("$PID")
for _ in $(seq 2400); do
    dig +time=1 +tries=1 @127.0.0.1 -p 5342 consul SOA +short 2>/dev/null | grep -q hostmaster && break
    sleep 0.05
done
echo "snapdns serving $N x $K: resident $(rss "$PID"), peak so far $(hwm "$PID")"
alg_key="hmac-sha256:${KEY#*:}"; alg_key="hmac-sha256:xfr:${KEY##*:}"
start=$(date +%s%N)
kdig @127.0.0.1 -p 5342 +tcp AXFR consul -y "$alg_key" > "$WORK/axfr.txt"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
received=$(grep -o ';; Received [0-9]* B ([0-9]* messages, [0-9]* records)' "$WORK/axfr.txt")
echo "kdig AXFR: $ms ms; $received; errors: $(grep -c ';; ERROR' "$WORK/axfr.txt" || true)"
echo "snapdns after the transfer: resident $(rss "$PID"), peak $(hwm "$PID")"
grep -o 'zone transfer sent.*' "$WORK/snapdns.log" | tail -1

cat > "$WORK/knot/knot.conf" <<CONF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@5343
database:
    storage: "$WORK/knot/db"
log:
  - target: "$WORK/knot/knot.log"
    any: info
key:
  - id: xfr
    algorithm: hmac-sha256
    secret: ${KEY##*:}
remote:
  - id: snapdns
    address: 127.0.0.1@5342
    key: xfr
template:
  - id: default
    storage: "$WORK/knot"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: consul
    master: snapdns
CONF
start=$(date +%s%N)
knotd -c "$WORK/knot/knot.conf" > /dev/null 2>&1 & PIDS+=("$!")
for _ in $(seq 6000); do
    grep -q 'AXFR, incoming.*finished' "$WORK/knot/knot.log" 2>/dev/null && break
    sleep 0.1
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "Knot as a secondary: $ms ms to load it; $(grep -o 'finished.*' "$WORK/knot/knot.log" | head -1)"
echo "snapdns after Knot's transfer: resident $(rss "$PID"), peak $(hwm "$PID")"
