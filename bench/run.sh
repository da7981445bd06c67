#!/usr/bin/env bash
# bench/run.sh BASE_URL [create|retrieve|flow|all]   — load-test a running pwpush with wrk.
#
# Prints one JSON line per workload: req/s (flows/s for flow), p50/p90/p99 latency, errors,
# peak RSS of the gunicorn master + workers and server CPU ms per request (Linux /proc).
# Needs: wrk (Debian: apt-get install wrk), python3, ss (iproute2). Loopback targets only.
# Env: DURATION=10 WARMUP=2 CONNS=16 THREADS=1 TOKENS=10000 FILL_VIEWS=100 FILL_DAYS=7
#      LOADGEN_CPUS=0 (wrk is pinned there; pin the server elsewhere: taskset -c 1 gunicorn ...)
#      FILL_CMD="python bench/fill_direct.py" (with the server's environment) to fill the
#      retrieve pool directly; by default it is created through the API (bench/http_fill.py).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export BENCH_LUA_DIR=$HERE/lua
BASE_URL=${1:?usage: bench/run.sh BASE_URL [create|retrieve|flow|all]}
WORKLOAD=${2:-all}
BASE_URL=${BASE_URL%/}
DURATION=${DURATION:-10} WARMUP=${WARMUP:-2} CONNS=${CONNS:-16} THREADS=${THREADS:-1}
TOKENS=${TOKENS:-10000} LOADGEN_CPUS=${LOADGEN_CPUS:-0}
export FILL_VIEWS=${FILL_VIEWS:-100} FILL_DAYS=${FILL_DAYS:-7}
[[ $BASE_URL =~ ^http://(127\.[0-9.]+|localhost):([0-9]+)$ ]] || { echo "BASE_URL must be http://127.x.x.x:PORT" >&2; exit 2; }
PORT=${BASH_REMATCH[2]}
MASTER=$(ss -Hltnp "sport = :$PORT" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -n | head -1)
[[ -n $MASTER ]] || { echo "nothing listens on port $PORT" >&2; exit 1; }
# The listening socket is shared by master and workers: the master is the workers' parent.
PARENT=$(ps -o ppid= -p "$MASTER" | tr -d ' ')
if [[ $(ps -o comm= -p "$PARENT") == *gunicorn* || $(ps -o args= -p "$PARENT") == *gunicorn* ]]; then MASTER=$PARENT; fi
TMP=$(mktemp -d /tmp/pwpush-bench-XXXX)
trap 'rm -rf "$TMP"' EXIT

wrk_json() {  # SCRIPT DURATION [args...]: prints the RESULT line of one wrk run
  local script=$1 d=$2; shift 2
  taskset -c "$LOADGEN_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"${d}s" --timeout 10s \
    -s "$HERE/lua/$script" "$BASE_URL" -- "$@" | sed -n 's/^RESULT //p'
}

measure() {  # NAME SCRIPT [args...]
  local name=$1 script=$2; shift 2
  ((WARMUP > 0)) && wrk_json "$script" "$WARMUP" "$@" >/dev/null
  python3 "$HERE/sample.py" "$MASTER" "$TMP/sample.json" & local sampler=$!
  local result; result=$(wrk_json "$script" "$DURATION" "$@")
  kill -TERM "$sampler"; wait "$sampler" || true
  python3 - "$name" "$result" "$TMP/sample.json" <<'PY'
import json, sys
name, w, s = sys.argv[1], json.loads(sys.argv[2]), json.load(open(sys.argv[3]))
r = {"workload": name, "rps": round(w["requests"] / w["duration_s"], 1)}
if name == "flow":
    r["flows_per_s"] = round(w["flows"] / w["duration_s"], 1)
r.update({k: w[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "requests")})
r["errors"] = w["errors"] + w["bad_body"]
r.update(s)
r["cpu_ms_per_req"] = round(s["server_cpu_s"] * 1e3 / max(w["requests"], 1), 3)
print(json.dumps(r))
PY
}

run() {
  case $1 in
    create) measure create create.lua ;;
    flow) measure flow flow.lua ;;
    retrieve)
      if [[ -n ${FILL_CMD:-} ]]; then $FILL_CMD "$TOKENS" "$TMP/tokens.raw"
      else python3 "$HERE/http_fill.py" "$BASE_URL" "$TOKENS" "$TMP/tokens.raw"; fi
      shuf "$TMP/tokens.raw" >"$TMP/tokens"
      measure retrieve retrieve.lua "$TMP/tokens" "$THREADS" ;;
    *) echo "unknown workload $1" >&2; exit 2 ;;
  esac
}

if [[ $WORKLOAD == all ]]; then for w in create retrieve flow; do run "$w"; done; else run "$WORKLOAD"; fi
