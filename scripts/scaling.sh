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

median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
run() { # seconds of one run of fibo with the given arguments, output to /dev/null
  local s e
  s=$(date +%s.%N)
  "$fibo" --no-progress "$@" > /dev/null
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}

workloads=(
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
    m=$(median3 "$(run -j "$t" $w)" "$(run -j "$t" $w)" "$(run -j "$t" $w)")
    printf ' %.3f |' "$m"
    [ -z "$first" ] && first=$m
    last=$m
  done
  printf ' %.2fx |\n' "$(echo "$first / $last" | bc -l)"
done
