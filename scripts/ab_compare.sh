#!/usr/bin/env bash
# A/B check of two fibo builds: byte-equal output on a few hundred inputs in every engine,
# format and kind, then interleaved timings (median of R runs each).
# Usage: scripts/ab_compare.sh OLD_FIBO NEW_FIBO [R]
set -euo pipefail
old=$1 new=$2 runs=${3:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Inputs: small, mid and large n, duplicates, out of order, close and far apart.
python3 - > "$work/ns.txt" <<'PY'
import random
random.seed(12)
ns = list(range(0, 200)) + [random.randrange(200, 2_000_000) for _ in range(150)]
ns += [1_000_000 + i for i in range(40)] + [5, 5, 3_000_000, 186, 187, 10**7]
random.shuffle(ns)
print("\n".join(map(str, ns)))
PY
echo "inputs: $(wc -l < "$work/ns.txt")"
fail=0
for engine in auto binary decimal; do
  for kind in "" "--digits" "--last 5" "--last 40" "--mod 1000000007"; do
    for format in value tsv json; do
      # --engine binary on 10^7 takes long: skip that input for the binary engine.
      if [ "$engine" = binary ]; then grep -v '^10000000$' "$work/ns.txt" > "$work/in.txt"; else cp "$work/ns.txt" "$work/in.txt"; fi
      # shellcheck disable=SC2086
      "$old" -i "$work/in.txt" --engine "$engine" --format "$format" $kind > "$work/a" 2>/dev/null
      # shellcheck disable=SC2086
      "$new" -i "$work/in.txt" --engine "$engine" --format "$format" $kind > "$work/b" 2>/dev/null
      if cmp -s "$work/a" "$work/b"; then
        printf 'same  %-8s %-18s %-6s %s bytes\n' "$engine" "${kind:-value}" "$format" "$(wc -c < "$work/a")"
      else
        printf 'DIFF  %-8s %-18s %-6s\n' "$engine" "${kind:-value}" "$format"; fail=1
      fi
    done
  done
done
[ "$fail" = 0 ] || { echo "outputs differ"; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
t() { local s e; s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
echo
printf '%-58s %9s %9s %7s\n' "command (interleaved, median of $runs)" "old s" "new s" "new/old"
while IFS= read -r args; do
  [ -z "$args" ] && continue
  : > "$work/to"; : > "$work/tn"
  for _ in $(seq "$runs"); do
    # shellcheck disable=SC2086
    t "$old" $args >> "$work/to"
    # shellcheck disable=SC2086
    t "$new" $args >> "$work/tn"
  done
  a=$(median < "$work/to"); b=$(median < "$work/tn")
  printf '%-58s %9.3f %9.3f %7.3f\n' "fibo $args" "$a" "$b" "$(echo "$b / $a" | bc -l)"
done <<'CMDS'
1e7
1e8
10000000 7000000 5000000 3000000 2500000..2500040 900000..905000 20000000
900000..905000
200..20200
--engine binary 1e6
--engine binary 100000..100400
10000000..10000004 --last 10000000
1..=200000 --mod 1000000007
1..=20000 --last 30
CMDS
