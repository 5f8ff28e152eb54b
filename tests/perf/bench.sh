#!/usr/bin/env bash
# tests/perf/bench.sh - load benchmark: snapdns beside Knot, NSD, Unbound and
# dnsmasq under dnsperf, on the same generated Consul-style data set.
#
#   sudo bash tests/perf/bench.sh                  (from anywhere; needs root)
#   SERVERS=knot REPS=1 DURATION=10 bash tests/perf/bench.sh   (quick look)
#
# Builds snapdns (cargo build --release), then runs ../shared/bench/anchors.sh
# with snapdns as its extra server ("CUSTOM_*", see the header of anchors.sh and
# ../shared/bench/README.md). anchors.sh generates the data set itself, so the
# conversion to a Consul registry file (to_consul_registry.py) happens inside
# CUSTOM_CMD, once per data set, right before snapdns starts. Takes many
# minutes: (number of servers) x (REPS + 1) x (DURATION + ~6) s.
#
# Every knob of anchors.sh passes through from the environment, e.g.
#   N=1000 K=5  DURATION=15 REPS=3  QUERIES=mix  CLIENTS=8 OUTSTANDING=200
#   SERVERS="knot nsd unbound unbound-auth dnsmasq" (snapdns is appended)
#   BOTH_ROUND=1 BOTH_THREADS=2  SERVER_CPU=1 CLIENT_CPU=0  REF=knot
#   WORK=/tmp/dnsbench  RESULTS=<dir>  INSTALL=1  NICE=-10
# Knobs of this script:
#   BUILD=1          0 skips cargo build (uses the existing release binary)
#   SNAPDNS_PORT=5310
#   PYTHON=python3
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

BENCH_DIR="$(cd "$REPO/../shared/bench" 2>/dev/null && pwd)" \
    || { echo "bench.sh: ../shared/bench not found beside $REPO" >&2; exit 1; }
ANCHORS="$BENCH_DIR/anchors.sh"
CONVERT="$BENCH_DIR/to_consul_registry.py"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/snapdns"
PY="$(command -v "${PYTHON:-python3}")" || { echo "bench.sh: ${PYTHON:-python3} not found" >&2; exit 1; }
BUILD=${BUILD:-1}

WORK=${WORK:-/tmp/dnsbench}
RESULTS=${RESULTS:-${TMPDIR:-/tmp}/dnsbench-results/$(date -u +%Y%m%dT%H%M%SZ)}
export WORK RESULTS

# The paths go inside a single-quoted `sh -c '...'` (anchors.sh runs the whole
# command through `bash -c "exec ..."`) and there in double quotes, so spaces are
# fine but quotes, `$`, backquotes and backslashes are not.
for p in "$BIN" "$CONVERT" "$PY" "$WORK"; do
    case $p in *[\'\"\$\`\\]*) echo "bench.sh: unsupported character in path: $p" >&2; exit 1 ;; esac
done

echo "== build: cargo build --release"
if [ "$BUILD" = 1 ]; then
    cargo build --release
fi
[ -x "$BIN" ] || { echo "bench.sh: $BIN missing (build failed or BUILD=0 without a build)" >&2; exit 1; }

# anchors.sh replaces {port} {data} {threads} {workdir} and starts the result
# with `bash -c "exec nice ... taskset ... $CUSTOM_CMD"`; the final exec makes
# snapdns itself the process anchors.sh pins, measures and stops by PID.
# {data} is regenerated (rm -rf) at the start of every anchors.sh run, so the
# converted file is made by the first start and reused by the later rounds.
# The double quotes below are literal on purpose: they belong to the inner sh.
# shellcheck disable=SC2089
REG='"{data}/consul-registry.json"'
# shellcheck disable=SC2089
STATE='"{workdir}/state"'
CUSTOM_CMD="sh -c '{ [ -s $REG ] || \"$PY\" \"$CONVERT\" \"{data}\" >/dev/null; }"
CUSTOM_CMD+=" && mkdir -p $STATE"
CUSTOM_CMD+=" && exec \"$BIN\" serve --listen 127.0.0.1:{port} --registry file:$REG"
CUSTOM_CMD+=" --state-dir $STATE --udp-workers {threads} --http 127.0.0.1:0'"

CUSTOM_NAME=snapdns
CUSTOM_PORT=${SNAPDNS_PORT:-5310}
CUSTOM_VERSION=$(git describe --always --dirty 2>/dev/null || echo dev)
# shellcheck disable=SC2090
export CUSTOM_NAME CUSTOM_PORT CUSTOM_VERSION CUSTOM_CMD

echo "== anchors: $ANCHORS"
echo "   snapdns $CUSTOM_VERSION on 127.0.0.1:$CUSTOM_PORT"
echo "   CUSTOM_CMD=$CUSTOM_CMD"
echo "   results -> $RESULTS"

rc=0
bash "$ANCHORS" || rc=$?

echo
echo "== results (anchors.sh exit $rc): $RESULTS"
echo "   summary:   $RESULTS/summary.json"
echo "   log:       $RESULTS/run.log"
echo "   raw runs:  $RESULTS/raw/  (snapdns server log: $WORK/run/snapdns/server.log)"
exit "$rc"
