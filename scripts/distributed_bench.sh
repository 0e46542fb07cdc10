#!/usr/bin/env bash
# fibo submit through a local Redis and W local workers, against plain fibo, side by side.
#
#   scripts/distributed_bench.sh [REPS] [WORKERS] [JOBS_PER_WORKER]
#
# CACHE_MB (default 0) is the workers' --cache-mb: with a cache, repeats of a workload are
# answered from it, which is the point of a long-lived worker but not a fair race.
# Builds fibo with the `distributed` feature, starts redis-server on a free loopback port
# (no persistence) and the workers, then times each workload REPS times, interleaved: plain
# `fibo -j W*J` and `fibo submit`. Prints medians and the ratio, checks that the outputs are
# byte-identical, and stops what it started (by PID). Needs redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-5}
WORKERS=${2:-2}
JOBS=${3:-1}
CACHE_MB=${CACHE_MB:-0}
cargo build --release --features distributed --bin fibo -q
FIBO=target/release/fibo
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" >/dev/null &
PIDS+=($!)
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done
B="redis://127.0.0.1:$PORT/0"
R="redis://127.0.0.1:$PORT/1"
for w in $(seq "$WORKERS"); do
  "$FIBO" worker --broker "$B" --backend "$R" -j "$JOBS" --cache-mb "$CACHE_MB" \
    2>"$DIR/worker$w.log" &
  PIDS+=($!)
done
sleep 1
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { echo "$EPOCHREALTIME"; }
THREADS=$((WORKERS * JOBS))
printf '%-44s %10s %10s %7s\n' "workload ($WORKERS workers x -j $JOBS, cache $CACHE_MB MB)" \
  "fibo -j $THREADS" submit ratio
for workload in "100000..102000" "--chunk 1 $(seq -s ' ' 5000000 100000 7300000)" "1e8" "--last 20 1..200000"; do
  args=${workload#--chunk 1 }
  extra=""
  [ "$args" != "$workload" ] && extra="--chunk 1"
  : >"$DIR/plain.t"
  : >"$DIR/submit.t"
  for _ in $(seq "$REPS"); do
    t0=$(now); "$FIBO" -j "$THREADS" $args >"$DIR/plain.out"; t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$DIR/plain.t"
    t0=$(now); "$FIBO" submit --broker "$B" --backend "$R" $extra $args >"$DIR/submit.out"; t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$DIR/submit.t"
    cmp -s "$DIR/plain.out" "$DIR/submit.out" || { echo "OUTPUTS DIFFER: $workload" >&2; exit 1; }
  done
  p=$(median <"$DIR/plain.t")
  s=$(median <"$DIR/submit.t")
  label=$workload
  [ ${#label} -gt 44 ] && label="${label:0:40}..."
  printf '%-44s %9.3fs %9.3fs %7.2f\n' "$label" "$p" "$s" "$(echo "$s / $p" | bc -l)"
done
for w in $(seq "$WORKERS"); do
  printf 'worker %d ran %d tasks\n' "$w" "$(grep -c ' done in ' "$DIR/worker$w.log" || true)"
done
