#!/usr/bin/env bash
# Scaling of fibo over thread counts, one table, medians of 3 runs.
#   scripts/scaling.sh [FIBO] [THREADS...]
# FIBO defaults to target/release/fibo; THREADS to "1 2 4 8 16" capped at the core count.
# Prints a Markdown table: workload, seconds per thread count, speedup of the largest count.
set -euo pipefail
fibo=${1:-target/release/fibo}
shift || true
cores=$(nproc)
threads=("$@")
if [ ${#threads[@]} -eq 0 ]; then
  for t in 1 2 4 8 16; do [ "$t" -le "$cores" ] && threads+=("$t"); done
fi

# Pure bash (5+) timing, no bc or python needed on the measuring machine.
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
run() { # microseconds of one run of fibo with the given arguments, output to /dev/null
  local s=${EPOCHREALTIME/./} e
  "$fibo" --no-progress "$@" > /dev/null
  e=${EPOCHREALTIME/./}
  echo $((e - s))
}
secs() { printf '%d.%03d' $(($1 / 1000000)) $(($1 % 1000000 / 1000)); }
reps=${REPS:-3}

workloads=(${WORKLOADS:+$WORKLOADS})
[ ${#workloads[@]} -gt 0 ] || workloads=(
  "1e7"                       # one big value, decimal engine (parallel NTT)
  "1e8"
  "1e9"                       # 209 million digits
  "--engine binary 1e7"       # binary engine: parallel products + parallel conversion
  "100000..102000"            # 2,000 consecutive n near 10^5: planner + decimal in parallel
  "1..30001"                  # a dense range of growing values
  "--mod 1000000007 0..3000000"  # machine-word path, 3 million lines
)
printf '| workload (%s cores) |' "$cores"
for t in "${threads[@]}"; do printf ' -j %s |' "$t"; done
printf ' speedup |\n|---|'
for _ in "${threads[@]}"; do printf -- '---|'; done
printf -- '---|\n'
for w in "${workloads[@]}"; do
  printf '| `fibo %s` |' "$w"
  first=""; last=""
  for t in "${threads[@]}"; do
    # shellcheck disable=SC2086
    if [ "$reps" = 1 ]; then m=$(run -j "$t" $w); else
      m=$(median3 "$(run -j "$t" $w)" "$(run -j "$t" $w)" "$(run -j "$t" $w)"); fi
    printf ' %s |' "$(secs "$m")"
    [ -z "$first" ] && first=$m
    last=$m
  done
  printf ' %d.%02dx |\n' $((first / last)) $((first * 100 / last % 100))
done
