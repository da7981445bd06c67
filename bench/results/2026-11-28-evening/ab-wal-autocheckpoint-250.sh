#!/usr/bin/env bash
# A/B: main (wal_autocheckpoint default 1000) vs /tmp/wt-ckpt (250), gthread 1x2, 10k and 1M stores,
# retrieve interleaved by the harness's compare.sh.
# The exact script of this run, kept as a record (paths of that machine and a throwaway worktree);
# it repeats bench/shared_compare.sh's scaling-ab step with a second code tree, which is the
# maintained way to ask this question: if the experiment is repeated, give scaling-ab a
# BEFORE_DIR target there rather than reviving this copy.
set -euo pipefail
H=/work/shared/bench OUT=${OUT:-/work/exp/ab-ckpt}
export REPS=${REPS:-3} BENCH_TMP=/tmp/bench BENCH_WORKERS=1 BENCH_WORKER_CLASS=gthread BENCH_THREADS=2
export PWP__THROTTLING__MINUTE=0 PWP__THROTTLING__SECOND=0
PREFIX=$(python3 -c 'import sys; print(sys.prefix)')
mkdir -p "$OUT"; trap '"$H/servers.sh" stop-all >/dev/null 2>&1 || true' EXIT
tok=$(mktemp -d /tmp/pwpush-bench-tokens-XXXX) stores=()
for spec in 8020:10000:/work/main 8021:1000000:/work/main 8030:10000:/tmp/wt-ckpt 8031:1000000:/tmp/wt-ckpt; do
  IFS=: read -r port n dir <<<"$spec"
  inst=$(mktemp -d /tmp/pwpush-bench-inst-XXXX); stores+=("$inst")
  label=main-$n; [[ $dir == /tmp/wt-ckpt ]] && label=ckpt250-$n
  (cd "$dir" && PWPUSH_INSTANCE_PATH=$inst SERVER_LABEL=$label "$H/servers.sh" gunicorn "$port" pwpush:app "$PREFIX")
  PWPUSH_INSTANCE_PATH=$inst python3 /work/main/bench/fill_direct.py "$n" "$tok/$port"
  printf 'TOKEN_SOURCE=%s\nFILL_CMD=%s\n' "$tok/$port" /work/main/bench/sample_tokens.sh >>"$BENCH_TMP/servers/$port.env"
done
WORKLOADS=retrieve OUT=$OUT/compare.jsonl "$H/compare.sh" \
  pwpush-v2 http://127.0.0.1:8020 pwpush-v2 http://127.0.0.1:8021 \
  pwpush-v2 http://127.0.0.1:8030 pwpush-v2 http://127.0.0.1:8031 >"$OUT/compare.md"
"$H/servers.sh" stop-all
rm -rf "$tok" "${stores[@]}"
echo finished
