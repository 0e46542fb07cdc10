#!/usr/bin/env bash
# fibo against Python's gmpy2 (GMP) on the same work, printed in decimal, side by side.
#   scripts/gmpy2_compare.sh [RUNS]      (default 3 runs each, medians; not run in CI)
# Makes a venv under target/gmpy2-venv, installs gmpy2, builds fibo in release.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
venv=target/gmpy2-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet gmpy2
fi
cargo build --release --quiet --bin fibo
fibo=target/release/fibo
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cat > "$out/gm.py" <<'PY'
import sys, gmpy2
w = sys.argv[1]
with open(sys.argv[2], "w") as f:
    if ".." in w:
        a, b = map(int, w.split(".."))
        for n in range(a, b):
            f.write(str(gmpy2.fib(n))); f.write("\n")
    else:
        f.write(str(gmpy2.fib(int(float(w))))); f.write("\n")
PY

secs() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '| work (%s cores, %s runs, medians) | gmpy2 s | fibo s | fibo / gmpy2 |\n|---|---|---|---|\n' "$(nproc)" "$runs"
for w in "100000..102000" "1e7" "1e8"; do
  g=(); f=()
  for _ in $(seq "$runs"); do
    # Interleaved so machine noise hits both alike.
    g+=("$(secs "$venv/bin/python" "$out/gm.py" "$w" "$out/g.txt")")
    f+=("$(secs sh -c "$fibo --no-progress $w > $out/f.txt")")
  done
  if ! cmp -s "$out/g.txt" "$out/f.txt"; then
    echo "outputs differ for $w" >&2; exit 1
  fi
  gm=$(median "${g[@]}"); fm=$(median "${f[@]}")
  printf '| `%s` | %.3f | %.3f | %.2f |\n' "$w" "$gm" "$fm" "$(echo "$fm / $gm" | bc -l)"
done
