#!/usr/bin/env bash
# The pictures in BENCHMARKS.md (issue 15): measures, writes docs/plots/data/*.csv, then draws
# docs/plots/*.svg with examples/plots.rs (plotters, SVG only).
#   scripts/plots.sh                         measure everything, then render (about 2 minutes
#                                            on 2 cores, plus the builds)
#   scripts/plots.sh --only SECTION          measure one of fibo_vs_gmp, scaling, granularity
#                                            (repeatable), keep the other CSV files, render
#   scripts/plots.sh --render-only           render the CSV files as they are
#   scripts/plots.sh --scaling-table FILE    convert a table printed by scripts/scaling.sh
#                                            (any thread counts, e.g. a 16-core run) into
#                                            docs/plots/data/scaling.csv, then render
# Environment: REPS (default 3, medians), PY_MAX (largest n for the pure-Python loop, default
# 1000000), GMP_MAX (largest n for gmpy2, default 100000000), FIBO_MAX (default 100000000).
# Makes a venv under target/gmpy2-venv with gmpy2, as scripts/gmpy2_compare.sh does.
# Each CSV records how much of the CPUs other processes used while it was measured (Linux
# /proc/stat); above 5% a warning says its numbers are skewed.
set -euo pipefail
cd "$(dirname "$0")/.."
data=docs/plots/data
usage="usage: scripts/plots.sh [--only SECTION]... | --render-only | --scaling-table FILE"
sections=()
measure=1
table=""
while [ $# -gt 0 ]; do
  case "$1" in
    --render-only) measure=0 ;;
    --scaling-table) measure=0; table=${2:?--scaling-table needs a FILE}; shift ;;
    --only)
      case "${2:-}" in
        fibo_vs_gmp|scaling|granularity) sections+=("$2") ;;
        *) echo "--only takes fibo_vs_gmp, scaling or granularity" >&2; exit 2 ;;
      esac
      shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
[ ${#sections[@]} -gt 0 ] || sections=(fibo_vs_gmp scaling granularity)
wants() { [[ " ${sections[*]} " == *" $1 "* ]]; }
mkdir -p "$data"

# Markdown table of scripts/scaling.sh (stdin) -> workload,threads,seconds (stdout).
scaling_csv() {
  awk -F'|' '
    function trim(s) { gsub(/^[ \t`]+|[ \t`]+$/, "", s); return s }
    NR == 1 {
      for (i = 3; i < NF; i++) { h = trim($i); if (h ~ /^-j [0-9]+$/) { sub(/^-j /, "", h); t[i] = h } }
      print "workload,threads,seconds"; next
    }
    /^\|---/ { next }
    /^\|/ {
      w = trim($2)
      if (w ~ /,/) { print "workload with a comma: " w > "/dev/stderr"; exit 1 }
      for (i = 3; i < NF; i++) if (i in t) print w "," t[i] "," trim($i)
    }'
}

if [ -n "$table" ]; then
  { echo "# converted from $(basename "$table") by scripts/plots.sh --scaling-table, $(date -u +%Y-%m-%d)"
    scaling_csv < "$table"; } > "$data/scaling.csv.tmp"
  mv "$data/scaling.csv.tmp" "$data/scaling.csv"
fi

if [ "$measure" = 1 ]; then
  reps=${REPS:-3}
  py_max=${PY_MAX:-1000000}
  gmp_max=${GMP_MAX:-100000000}
  fibo_max=${FIBO_MAX:-100000000}
  venv=target/gmpy2-venv
  if wants fibo_vs_gmp && [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet gmpy2
  fi
  cargo build --release --quiet --bin fibo --example plots
  fibo=target/release/fibo
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT

  # Other processes' share of the CPUs between cpu_start and cpu_note: the machine's busy
  # time from /proc/stat less this script's own and its finished children's (/proc/$$/stat).
  cpu_sample() {
    if [ -r /proc/stat ] && [ -r /proc/$$/stat ]; then
      echo "$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)" \
        "$(sed 's/.*) //' /proc/$$/stat | awk '{print $12+$13+$14+$15}')"
    else echo "0 0 0"; fi
  }
  cpu_start() { read -r busy0 total0 own0 <<< "$(cpu_sample)"; }
  cpu_note() { # $1: what was measured. Prints a CSV comment line, warns on stderr.
    local busy1 total1 own1 pct=0
    read -r busy1 total1 own1 <<< "$(cpu_sample)"
    if [ $((total1 - total0)) -gt 0 ]; then
      pct=$(( (busy1 - busy0 - (own1 - own0)) * 100 / (total1 - total0) ))
    fi
    if [ "$pct" -lt 0 ]; then pct=0; fi
    if [ "$pct" -gt 5 ]; then
      echo "warning: other processes used ${pct}% of the CPUs while $1 was measured; its numbers are skewed" >&2
    fi
    echo "# other processes used ${pct}% of the CPUs during this measurement"
  }
  # Microseconds of one whole process, output to /dev/null (bash 5 EPOCHREALTIME).
  run() { local s=${EPOCHREALTIME/./} e; "$@" > /dev/null; e=${EPOCHREALTIME/./}; echo $((e - s)); }
  median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  secs() { printf '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000)); }
  stamp="$(nproc) cores, $(date -u +%Y-%m-%d)"

  if wants fibo_vs_gmp; then
    cat > "$tmp/gm.py" <<'PY'
import sys, gmpy2
sys.stdout.write(str(gmpy2.fib(int(sys.argv[1])))); sys.stdout.write("\n")
PY
    cat > "$tmp/loop.py" <<'PY'
import sys
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)
n = int(sys.argv[1])
a, b = 0, 1
for _ in range(n):
    a, b = b, a + b
sys.stdout.write(str(a)); sys.stdout.write("\n")
PY
    # The three print the same F(n).
    for n in 1000 30000; do
      "$fibo" --no-progress "$n" > "$tmp/f.txt"
      "$venv/bin/python" "$tmp/gm.py" "$n" > "$tmp/g.txt"
      "$venv/bin/python" "$tmp/loop.py" "$n" > "$tmp/p.txt"
      cmp -s "$tmp/f.txt" "$tmp/g.txt" || { echo "fibo and gmpy2 differ at $n" >&2; exit 1; }
      cmp -s "$tmp/f.txt" "$tmp/p.txt" || { echo "fibo and the Python loop differ at $n" >&2; exit 1; }
    done
    echo "measuring fibo, gmpy2, Python loop ($reps runs each, interleaved) ..." >&2
    cpu_start
    {
      echo "tool,n,seconds"
      for n in 1000 3000 10000 30000 100000 300000 1000000 3000000 10000000 30000000 100000000; do
        f=(); g=(); p=()
        for _ in $(seq "$reps"); do
          if [ "$n" -le "$fibo_max" ]; then f+=("$(run "$fibo" --no-progress "$n")"); fi
          if [ "$n" -le "$gmp_max" ]; then g+=("$(run "$venv/bin/python" "$tmp/gm.py" "$n")"); fi
          if [ "$n" -le "$py_max" ]; then p+=("$(run "$venv/bin/python" "$tmp/loop.py" "$n")"); fi
        done
        if [ ${#f[@]} -gt 0 ]; then echo "fibo,$n,$(secs "$(median "${f[@]}")")"; fi
        if [ ${#g[@]} -gt 0 ]; then echo "gmpy2 (GMP),$n,$(secs "$(median "${g[@]}")")"; fi
        if [ ${#p[@]} -gt 0 ]; then echo "pure Python loop,$n,$(secs "$(median "${p[@]}")")"; fi
      done
    } > "$tmp/body"
    { echo "# $stamp, medians of $reps whole-process runs; scripts/plots.sh"
      cpu_note fibo_vs_gmp; cat "$tmp/body"; } > "$data/fibo_vs_gmp.csv"
  fi

  if wants scaling; then
    echo "measuring scaling (scripts/scaling.sh) ..." >&2
    cpu_start
    REPS=$reps scripts/scaling.sh "$fibo" | tee "$tmp/scaling.md" >&2
    { echo "# $stamp, medians of $reps; scripts/scaling.sh via scripts/plots.sh"
      cpu_note scaling; scaling_csv < "$tmp/scaling.md"; } > "$tmp/scaling.csv"
    mv "$tmp/scaling.csv" "$data/scaling.csv"
  fi

  if wants granularity; then
    echo "measuring the granularity sweep ..." >&2
    cpu_start
    target/release/examples/plots granularity > "$tmp/body"
    { echo "# $stamp"; cpu_note granularity; cat "$tmp/body"; } > "$data/granularity.csv"
  fi
fi

cargo run --release --quiet --example plots -- render "$data" docs/plots
echo "wrote $(ls docs/plots/*.svg | tr '\n' ' ')" >&2
