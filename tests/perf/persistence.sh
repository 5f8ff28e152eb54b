#!/usr/bin/env bash
# tests/perf/persistence.sh - what persisting the registry state costs (issue 12): bytes written
# per one-service change, and the start-up load of a base plus its journal, against the Rust
# Consul stand-in with a generated registry.
#
#   bash tests/perf/persistence.sh                   # 10,000 services x 10 instances x 3 checks
#   GEN=1000,5,3 CHANGES=20 NO_BUILD=1 bash tests/perf/persistence.sh
#
# Starts `consul-standin --generate $GEN`, one `snapdns serve` following it, waits for the
# first save (a whole base), then changes one service CHANGES times (one port each, waiting for
# each to be saved) and prints the bytes each save wrote (`/health` persistence.last_write_bytes)
# beside the base's size (what every save wrote before the journal). Then it restarts snapdns
# with the stand-in still up, changes the service once more and prints what the first save
# after the restart wrote (a journal record when the restart adopted its base, else a whole
# base). Last it stops the stand-in, restarts snapdns on the same state directory and prints
# how long the base and journal took to load (the "serving the persisted registry state" log
# line's time since start).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TGT="${CARGO_TARGET_DIR:-$REPO/target}"
GEN=${GEN:-10000,10,3}; CHANGES=${CHANGES:-10}; WORK=${WORK:-/tmp/snapdns-persistence}
if [ -z "${NO_BUILD:-}" ]; then
    (cd "$REPO" && cargo build --release -j "${JOBS:-2}" -p snapdns --bin snapdns \
        && cargo build --release -j "${JOBS:-2}" -p consul-standin --bins)
fi
SNAPDNS="$TGT/release/snapdns"; STANDIN="$TGT/release/consul-standin"
rm -rf "$WORK"; mkdir -p "$WORK"
PIDS=()
stop_all() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap stop_all EXIT INT TERM
wait_for() {  # wait_for FILE REGEX SECONDS -> prints the first match
    local i
    for i in $(seq $(($3 * 20))); do
        if grep -aoE "$2" "$1" 2>/dev/null | head -1 | grep .; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for $2 in $1" >&2; return 1
}
health() { curl -s "http://$HTTP/health"; }
field() { health | python3 -c "import json,sys; print(json.load(sys.stdin)['persistence']['$1'])"; }

"$STANDIN" --port 0 --generate "$GEN" > "$WORK/standin.log" 2>&1 & PIDS+=($!)
CONSUL=$(wait_for "$WORK/standin.log" 'listening [0-9.:]+' 60 | cut -d' ' -f2)
start_snapdns() {  # start_snapdns LOG REGISTRY
    "$SNAPDNS" serve --registry "$2" --state-dir "$WORK/state" --listen 127.0.0.1:0 \
        --http 127.0.0.1:0 --no-forward --zones-dir "$WORK/no-zones" --log info \
        > /dev/null 2> "$1" & PIDS+=($!); SNAPDNS_PID=$!
    HTTP=$(wait_for "$1" 'listening on http [0-9.:]+' 60 | awk '{print $4}')
}
start_snapdns "$WORK/snapdns.log" "http://$CONSUL"
for i in $(seq 600); do [ "$(field ok)" = True ] && break; sleep 0.1; done
echo "first save (a whole base): $(field last_write_bytes) bytes"
SERVICE=$(curl -s "http://$CONSUL/v1/catalog/services" | python3 -c "import json,sys; print(sorted(json.load(sys.stdin))[1])")
change_port() {  # change_port N: sets the service's first instance's port to 20000+N, waits for the save
    local before i
    before=$(field index)
    curl -s "http://$CONSUL/_standin/service/$SERVICE" | python3 -c "
import json,sys; e=json.load(sys.stdin); e[0]['Service']['Port']=20000+$1; print(json.dumps(e))" \
        | curl -s -X PUT --data-binary @- "http://$CONSUL/_standin/service/$SERVICE" > /dev/null
    for i in $(seq 600); do [ "$(field index)" != "$before" ] && break; sleep 0.05; done
}
for n in $(seq "$CHANGES"); do
    change_port "$n"
    echo "change $n: wrote $(field last_write_bytes) bytes; base + journal $(field bytes) bytes, $(field journal_records) records"
done
ls -l "$WORK/state"
kill "$SNAPDNS_PID"; wait "$SNAPDNS_PID" || true
start_snapdns "$WORK/restart-up.log" "http://$CONSUL"
synced() { health | python3 -c "import json,sys; print(json.load(sys.stdin)['last_success'] is not None)"; }
for i in $(seq 1200); do [ "$(synced)" = True ] && break; sleep 0.1; done
change_port 1000
echo "restart with the registry up, one change: the first save after it wrote $(field last_write_bytes) bytes (generation $(field generation), $(field journal_records) records)"
ls -l "$WORK/state"
stop_all
start_snapdns "$WORK/restart.log" "http://127.0.0.1:1"
# With a zone cache the state is read after the sockets open: wait for it.
wait_for "$WORK/restart.log" '.*serving the persisted registry state.*' 600
echo "load: $(grep -a 'serving the persisted' "$WORK/restart.log" | head -1 | sed -E 's/^([^ ]+).*/\1/') vs start $(head -1 "$WORK/restart.log" | sed -E 's/^([^ ]+).*/\1/')"
