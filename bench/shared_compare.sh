#!/usr/bin/env bash
# bench/shared_compare.sh — reproduce bench/RESULTS.md with the shared harness beside the
# project (../shared/bench: wrk, server on CPU 1, load on CPU 0, quiet gate, medians of REPS).
#
#   bench/shared_compare.sh [STEP...]     steps: sqlite pg scaling scaling-ab gunicorn recommended threads
#                                         procfile cold maint
#                                         (default: all but recommended, threads, procfile and scaling-ab)
#
# sqlite   pwpush (SQLite) vs snappass vs the ceiling flask-sqlite-fernet: create, retrieve, flow
# BEFORE_DIR=path/to/another/checkout (sqlite, scaling-ab, threads, recommended) runs that
#          checkout's code beside this one's in the same interleaved run, for an A/B of a change
# pg       pwpush on PostgreSQL (a fresh throwaway database) vs pwpush on SQLite, with 2 sync
#          workers each and with gunicorn.conf.py's setting for each (gthread 1x2 / 1x4)
# scaling  retrieve with 10 000 then 1 000 000 stored pushes (fill: bench/fill_direct.py)
# scaling-ab  the same question without the drift of a sequential run: pwpush and the ceiling,
#          each with a 10 000 and a 1 000 000 push store filled first, retrieve interleaved by
#          compare.sh (tokens sampled uniformly from each store: bench/sample_tokens.sh)
# gunicorn create + flow with sync x1, sync x2 (the default), sync x4, gthread 1x4
# threads  one gthread worker with THREADS (default "2 3 4") threads each and 2 sync workers,
#          on SQLite with the ceiling beside them, or with THREADS_DB=pg on a throwaway
#          PostgreSQL database: create, retrieve, flow (gunicorn.conf.py's thread count)
# recommended  `threads` with gunicorn.conf.py's setting on SQLite (gthread 1x2): it against 2
#          sync workers and the ceiling (2 sync workers, the harness's setting)
# procfile pwpush as the Procfile's web process runs it, with this checkout's gunicorn.conf.py
#          (its logger, its defaults) instead of the harness's settings file: the default 1 x 2
#          gthread and WEB_CONCURRENCY=2 sync workers, beside the ceiling (harness settings);
#          BEFORE_DIR works here too. What an admin's server costs, master process included.
# cold     cold start (bench/coldstart.py);  maint: purge-expired / rotate-key on 100 000 pushes
# Env: HARNESS (../shared/bench), OUT (/tmp/pwpush-results), REPS (3), PG_ADMIN_URL
#      (postgresql://postgres@127.0.0.1:5432/postgres). Run from anywhere; stops what it starts.
#      OO=1: pwpush's servers (not the peer's, not the ceiling's) run under PYTHONOPTIMIZE=2 with
#      their bytecode compiled first into $BENCH_TMP/pycache-opt2 (PYTHONPYCACHEPREFIX: without
#      cached bytecode, e.g. under PYTHONDONTWRITEBYTECODE=1, every worker compiles its modules
#      from source at each start: seconds, and more memory than it saves). README "Memory".
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
H=${HARNESS:-$(cd "$ROOT/../shared/bench" && pwd)}
OUT=${OUT:-/tmp/pwpush-results}
export REPS=${REPS:-3}
BENCH_TMP=${BENCH_TMP:-/tmp/bench} BENCH_VENV=${BENCH_VENV:-/tmp/bench-venv}  # as the harness's
PG_ADMIN_URL=${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
PREFIX=$(python3 -c 'import sys; print(sys.prefix)')   # the Python that has requirements.txt
export PWP__THROTTLING__MINUTE=0 PWP__THROTTLING__SECOND=0
mkdir -p "$OUT"
cd "$ROOT"
OO_ENV=()
if [[ ${OO:-} == 1 ]]; then
  OO_ENV=(PYTHONOPTIMIZE=2 PYTHONPYCACHEPREFIX="$BENCH_TMP/pycache-opt2")
  env "${OO_ENV[@]}" python3 -m compileall -q -o 2 "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
    "$(python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" ${BEFORE_DIR:+"$BEFORE_DIR"} "$ROOT" >/dev/null || true
fi
STEPS=${*:-sqlite scaling pg cold maint gunicorn}
log() { echo "[shared_compare $(date +%T)] $*" | tee -a "$OUT/log.txt" >&2; }
trap '"$H/servers.sh" stop-all >/dev/null 2>&1 || true' EXIT

pwpush() {  # PORT LABEL [VAR=value...]: start pwpush on a fresh SQLite instance (or DATABASE_URL);
  local port=$1 label=$2; shift 2  # CODE=dir runs another checkout's code
  (cd "${CODE:-$ROOT}"
   # The harness runs gunicorn with its own settings file; take the environment that the
   # checkout's gunicorn.conf.py gives its workers for this process count and database.
   conf_env=$(env "$@" python3 -c '
import os, runpy, sys, types; before = dict(os.environ); conf = runpy.run_path("gunicorn.conf.py")
if "on_starting" in conf:  # as gunicorn calls it, with the final worker count (the arbiter
    conf["on_starting"](types.SimpleNamespace(  # method it wraps: never called here)
        cfg=types.SimpleNamespace(workers=int(sys.argv[1])), reap_workers=None))
print(" ".join(f"{k}={v}" for k, v in os.environ.items() if before.get(k) != v))' "${BENCH_WORKERS:-2}")
   env PWPUSH_INSTANCE_PATH="$(mktemp -d /tmp/pwpush-bench-inst-XXXX)" SERVER_LABEL="$label" \
     $conf_env "${OO_ENV[@]}" "$@" "$H/servers.sh" gunicorn "$port" pwpush:app "$PREFIX")
}

procfile() {  # PORT LABEL [VAR=value...]: pwpush started as the Procfile's `gunicorn pwpush:app`
  local port=$1 label=$2 sd=$BENCH_TMP/servers; shift 2  # (CODE=dir: another checkout), pinned
  mkdir -p "$sd"                                         # as the harness pins its targets
  printf 'SERVER_LABEL=%s\n' "$label" >"$sd/$port.env"   # (run.sh reads it; stop-all stops the pid)
  (cd "${CODE:-$ROOT}"
   env PWPUSH_INSTANCE_PATH="$(mktemp -d /tmp/pwpush-bench-inst-XXXX)" BIND="127.0.0.1:$port" "${OO_ENV[@]}" "$@" \
     nohup taskset -c "${SERVER_CPUS:-1}" "$PREFIX/bin/gunicorn" --pid "$sd/$port.pid" pwpush:app \
     >"$sd/$port.log" 2>&1 &)
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/api/v2/version" && [[ -s $sd/$port.pid ]] && return 0; sleep 0.2; done
  echo "pwpush did not start on $port (see $sd/$port.log)" >&2; return 1
}

codes() {  # this checkout, then BEFORE_DIR if set: "offset:dir:label-prefix" (port offset 0 / 200)
  echo "0:$ROOT:"
  if [[ -n ${BEFORE_DIR:-} ]]; then echo "200:$(cd "$BEFORE_DIR" && pwd):before-"; fi
}

pg_db() {  # create a throwaway database; print its URL
  local name=pwpush_bench_$$_$RANDOM
  python3 -c "import psycopg,sys; psycopg.connect(sys.argv[1], autocommit=True).execute('CREATE DATABASE $name')" "$PG_ADMIN_URL"
  echo "${PG_ADMIN_URL%/*}/$name"
}

pg_drop() {  # URL: drop a database made by pg_db
  python3 -c "import psycopg,sys; psycopg.connect(sys.argv[1], autocommit=True).execute('DROP DATABASE ${1##*/} WITH (FORCE)')" "$PG_ADMIN_URL"
}

for step in $STEPS; do
  log "step $step"
  case $step in
    sqlite)
      pwpush 8000 pwpush-sqlite
      "$H/servers.sh" redis 6390 && "$H/servers.sh" snappass 8101 6390
      "$H/servers.sh" ceiling flask-sqlite-fernet 8116
      targets=(pwpush-v2 http://127.0.0.1:8000 snappass http://127.0.0.1:8101 ceiling http://127.0.0.1:8116)
      if [[ -n ${BEFORE_DIR:-} ]]; then
        CODE=$BEFORE_DIR pwpush 8200 pwpush-before
        targets+=(pwpush-v2 http://127.0.0.1:8200)
      fi
      OUT=$OUT/compare-sqlite.jsonl "$H/compare.sh" "${targets[@]}" >"$OUT/compare-sqlite.md"
      "$H/servers.sh" stop-all ;;
    pg)  # 2 sync workers on each database, then gunicorn.conf.py's setting for each
      url=$(pg_db) url2=$(pg_db)
      pwpush 8001 pwpush-postgresql DATABASE_URL="$url" AUX_PORTS=5432
      pwpush 8000 pwpush-sqlite
      BENCH_WORKERS=1 BENCH_WORKER_CLASS=gthread BENCH_THREADS=2 pwpush 8052 pwpush-sqlite-gthread-1x2
      BENCH_WORKERS=1 BENCH_WORKER_CLASS=gthread BENCH_THREADS=4 \
        pwpush 8054 pwpush-postgresql-gthread-1x4 DATABASE_URL="$url2" AUX_PORTS=5432
      OUT=$OUT/compare-pg.jsonl "$H/compare.sh" pwpush-v2 http://127.0.0.1:8000 pwpush-v2 http://127.0.0.1:8001 \
        pwpush-v2 http://127.0.0.1:8052 pwpush-v2 http://127.0.0.1:8054 >"$OUT/compare-pg.md"
      "$H/servers.sh" stop-all
      pg_drop "$url"; pg_drop "$url2" ;;
    scaling)
      inst=$(mktemp -d /tmp/pwpush-bench-inst-XXXX)
      PWPUSH_INSTANCE_PATH=$inst SERVER_LABEL=pwpush-sqlite "$H/servers.sh" gunicorn 8002 pwpush:app "$PREFIX"
      FILL_CMD="env PWPUSH_INSTANCE_PATH=$inst python3 $HERE/fill_direct.py" RESULTS=$OUT/scaling.jsonl \
        "$H/run.sh" pwpush-v2 http://127.0.0.1:8002 scaling >"$OUT/scaling.txt"
      ls -l "$inst" >>"$OUT/scaling.txt"
      "$H/servers.sh" stop-all ;;
    scaling-ab)
      tok=$(mktemp -d /tmp/pwpush-bench-tokens-XXXX) stores=() targets=()
      for port_n in 8020:10000 8021:1000000; do  # pwpush on 8020 / 8021 (BEFORE_DIR 8220 / 8221),
        base=${port_n%:*} n=${port_n#*:}         # the ceiling on 8120 / 8121
        for c in $(codes); do
          IFS=: read -r off code pre <<<"$c"
          port=$((base + off)) inst=$(mktemp -d /tmp/pwpush-bench-inst-XXXX)
          stores+=("$inst")
          CODE=$code pwpush "$port" "${pre}pwpush-$n" PWPUSH_INSTANCE_PATH="$inst"
          (cd "$code" && PWPUSH_INSTANCE_PATH=$inst python3 bench/fill_direct.py "$n" "$tok/$port")
          targets+=(pwpush-v2 "http://127.0.0.1:$port")
        done
        "$H/servers.sh" ceiling flask-sqlite-fernet $((base + 100))
        (set -a; source "$BENCH_TMP/servers/$((base + 100)).env"
         "$BENCH_VENV/bin/python" "$H/fill/ceiling_sqlite.py" "$n" "$tok/$((base + 100))")
        echo "SERVER_LABEL=ceiling-$n" >>"$BENCH_TMP/servers/$((base + 100)).env"
        targets+=(ceiling "http://127.0.0.1:$((base + 100))")
      done
      for t in "${targets[@]}"; do  # run.sh reads these with the server's label
        [[ $t == http* ]] || continue
        p=${t##*:}; printf 'TOKEN_SOURCE=%s\nFILL_CMD=%s\n' "$tok/$p" "$HERE/sample_tokens.sh" >>"$BENCH_TMP/servers/$p.env"
      done
      WORKLOADS=retrieve OUT=$OUT/compare-scaling-ab.jsonl "$H/compare.sh" "${targets[@]}" \
        >"$OUT/compare-scaling-ab.md"
      "$H/servers.sh" stop-all
      rm -rf "$tok" "${stores[@]}" ;;  # 440 MB for each large one
    gunicorn)
      BENCH_WORKERS=1 pwpush 8010 sync-x1
      pwpush 8011 sync-x2
      BENCH_WORKERS=4 pwpush 8012 sync-x4
      BENCH_WORKERS=1 BENCH_WORKER_CLASS=gthread BENCH_THREADS=4 pwpush 8013 gthread-1x4
      WORKLOADS=${GUNICORN_WORKLOADS:-create flow} OUT=$OUT/compare-gunicorn.jsonl "$H/compare.sh" \
        pwpush-v2 http://127.0.0.1:8010 pwpush-v2 http://127.0.0.1:8011 \
        pwpush-v2 http://127.0.0.1:8012 pwpush-v2 http://127.0.0.1:8013 >"$OUT/compare-gunicorn.md"
      "$H/servers.sh" stop-all ;;
    threads|recommended)
      db=${THREADS_DB:-sqlite} threads=${THREADS:-2 3 4} targets=() urls=()
      [[ $step == recommended ]] && db=sqlite threads=2  # gunicorn.conf.py's setting on SQLite
      for c in $(codes); do  # each code tree its own database (BEFORE_DIR: ports +200)
        IFS=: read -r off code pre <<<"$c"
        on_db=()
        if [[ $db == pg ]]; then urls+=("$(pg_db)"); on_db=(DATABASE_URL="${urls[-1]}" AUX_PORTS=5432); fi
        for n in $threads; do
          CODE=$code BENCH_WORKERS=1 BENCH_WORKER_CLASS=gthread BENCH_THREADS=$n \
            pwpush $((8030 + n + off)) "${pre}pwpush-$db-gthread-1x$n" "${on_db[@]}"
          targets+=(pwpush-v2 "http://127.0.0.1:$((8030 + n + off))")
        done
        CODE=$code pwpush $((8000 + off)) "${pre}pwpush-$db-sync-x2" "${on_db[@]}"
        targets+=(pwpush-v2 "http://127.0.0.1:$((8000 + off))")
      done
      if [[ $db == sqlite ]]; then
        "$H/servers.sh" ceiling flask-sqlite-fernet 8116
        targets+=(ceiling http://127.0.0.1:8116)
      fi
      OUT=$OUT/compare-$step-$db.jsonl "$H/compare.sh" "${targets[@]}" >"$OUT/compare-$step-$db.md"
      "$H/servers.sh" stop-all
      for u in "${urls[@]}"; do pg_drop "$u"; done ;;
    procfile)
      targets=()
      for c in $(codes); do
        IFS=: read -r off code pre <<<"$c"
        CODE=$code procfile $((8060 + off)) "${pre}pwpush-procfile-gthread-1x2"
        CODE=$code procfile $((8061 + off)) "${pre}pwpush-procfile-sync-x2" WEB_CONCURRENCY=2 GUNICORN_THREADS=1 \
          GUNICORN_CMD_ARGS="-k sync"
        targets+=(pwpush-v2 "http://127.0.0.1:$((8060 + off))" pwpush-v2 "http://127.0.0.1:$((8061 + off))")
      done
      "$H/servers.sh" ceiling flask-sqlite-fernet 8116
      targets+=(ceiling http://127.0.0.1:8116)
      OUT=$OUT/compare-procfile.jsonl "$H/compare.sh" "${targets[@]}" >"$OUT/compare-procfile.md"
      "$H/servers.sh" stop-all ;;
    cold) taskset -c 1 python3 "$HERE/coldstart.py" --reps 5 | tee "$OUT/coldstart.txt" ;;
    maint) python3 "$HERE/maintenance.py" all -n 100000 | tee "$OUT/maintenance.txt" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
log "done"
