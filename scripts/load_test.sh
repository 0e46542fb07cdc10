#!/usr/bin/env bash
# The load test of `fibo serve` (issue 13): a benchmark, not a timed test. Loopback only,
# bounded in time (about 3 minutes with the defaults, after the build), starting and stopping
# every server itself. Prints a summary table and writes it, with the raw tool outputs, to
# target/load_test.txt.
#
# Measured, side by side in one run:
#   1. cached GET /fib/1000: requests/s against a minimal axum "hello world" server
#      (examples/hello_server.rs) under identical wrk settings, in ROUNDS alternating rounds
#      (the median round's ratio counts); goal: ratio >= 0.8. Also each one's server CPU per
#      request, which other load on the machine disturbs less than requests/s.
#   2. CONNECTIONS (10,000) concurrent keep-alive connections for CONN_SECONDS (30 s) on the
#      cached /fib/1000: errors (connect, read, write, timeout, non-2xx) and p50/p99; the same
#      against the hello world server, to tell the machine's limits from fibo's.
#   3. cached small n (scripts/load/small.lua) while distinct uncached n in 10^6..10^7
#      (scripts/load/heavy.lua) run beside them, each in its own wrk: p99 of the small
#      requests (goal < 20 ms) and the heavy requests' figures; plus the small ones alone.
#      wrk has no rate control: the heavy side runs HEAVY_CONNECTIONS requests back to back, as
#      many as the server computes (a 1% share of ~20,000 req/s would be 200 F(n ~ 5*10^6)
#      a second, far past 2 cores); the summary gives the share reached.
#   4. PARALLEL (1,000) concurrent requests for one uncached F(BIG_N = 10^7) on a fresh
#      server: total wall time against one request's on another fresh server (goal <= 1.5x),
#      and /metrics' miss and shared counts (one computation, everyone else waiting on it); then
#      the same requests again, the value cached, to show what moving PARALLEL such bodies
#      (2 MB each for F(10^7)) costs by itself.
#   5. the figures of a capacity model (server CPU per request, memory per connection) and the
#      model itself: instances at 2 and at 16 cores for USERS concurrent users each sending a
#      request every THINK_SECONDS, with HIT_RATIO of the requests cached.
#
# The load generators share the machine with the server: on few cores they take part of
# its CPU, the same for fibo and for the baseline.
#
# Environment (defaults in brackets):
#   LOAD_SECONDS [10] ROUNDS [3] WRK_THREADS [2] WRK_CONNECTIONS [64]  measurement 1
#   CONNECTIONS [10000] CONN_SECONDS [30] CONN_THREADS [2]        measurement 2
#   CONN_BASELINE [1]        also run measurement 2 against the hello world server
#   MIX_SECONDS [20] SMALL_MAX [1000] SMALL_CONNECTIONS [32]
#   HEAVY_CONNECTIONS [2] HEAVY_LO [1000000] HEAVY_HI [10000000]  measurement 3
#   PARALLEL [1000] BIG_N [10000000]                              measurement 4
#   USERS [1000000] THINK_SECONDS [10] HIT_RATIO [0.99] TARGET_UTILIZATION [0.7]
#   MAX_CONCURRENCY [10000]  fibo serve's --max-concurrency (high, so nothing is shed)
#   FIBO_ARGS                more `fibo serve` flags
#   SKIP_BUILD=1             use the binaries already built
#   BUILD_FLAGS              more cargo build flags (e.g. --all-features, to reuse such a build)

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LOAD_SECONDS=${LOAD_SECONDS:-10}
ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
CONNECTIONS=${CONNECTIONS:-10000}
CONN_SECONDS=${CONN_SECONDS:-30}
CONN_THREADS=${CONN_THREADS:-2}
MIX_SECONDS=${MIX_SECONDS:-20}
SMALL_MAX=${SMALL_MAX:-1000}
SMALL_CONNECTIONS=${SMALL_CONNECTIONS:-32}
HEAVY_CONNECTIONS=${HEAVY_CONNECTIONS:-2}
HEAVY_LO=${HEAVY_LO:-1000000}
HEAVY_HI=${HEAVY_HI:-10000000}
PARALLEL=${PARALLEL:-1000}
BIG_N=${BIG_N:-10000000}
USERS=${USERS:-1000000}
THINK_SECONDS=${THINK_SECONDS:-10}
HIT_RATIO=${HIT_RATIO:-0.99}
TARGET_UTILIZATION=${TARGET_UTILIZATION:-0.7}
MAX_CONCURRENCY=${MAX_CONCURRENCY:-10000}
FIBO_ARGS=${FIBO_ARGS:-}
BUILD_FLAGS=${BUILD_FLAGS:-}

TARGET=${CARGO_TARGET_DIR:-target}
FIBO=$TARGET/release/fibo
HELLO=$TARGET/release/examples/hello_server
REPORT=$TARGET/load_test.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fibo-load.XXXXXX")
CLK_TCK=$(getconf CLK_TCK)
CORES=$(nproc)

# shellcheck source=scripts/procs.sh
. scripts/procs.sh
cleanup() {
    stop_pids 50
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$*" | tee -a "$WORK/summary"; }
die() { echo "load_test: $*" >&2; exit 1; }

# --- tools and limits --------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    echo "load_test: installing wrk (Debian package)" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        sudo apt-get install -y wrk >/dev/null
    fi
fi
command -v curl >/dev/null || die "curl is needed"
# Each side of measurement 2 holds CONNECTIONS sockets.
need_fds=$((CONNECTIONS + 1024))
ulimit -n "$need_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
    echo "load_test: ulimit -n is $(ulimit -n), below the $need_fds measurement 2 needs" >&2
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # shellcheck disable=SC2086  # BUILD_FLAGS is a list of flags
    cargo build --release --bin fibo --example hello_server $BUILD_FLAGS >&2
fi
[ -x "$FIBO" ] || die "no $FIBO"
[ -x "$HELLO" ] || die "no $HELLO"

# --- processes ---------------------------------------------------------------------------
# start NAME CMD...: runs CMD in the background, waits for "listening on http://ADDR" as its
# first stderr line; sets PID and ADDR.
start() {
    local name=$1 log line
    shift
    log=$WORK/$name.log
    "$@" >/dev/null 2>"$log" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 1 300); do
        line=$(head -n 1 "$log" 2>/dev/null || true)
        case $line in
            *"listening on http://"*)
                ADDR=${line##*http://}
                return 0
                ;;
        esac
        kill -0 "$PID" 2>/dev/null || die "$name exited at start: $(cat "$log")"
        sleep 0.1
    done
    die "$name printed no address within 30 s: $(cat "$log")"
}

# stop PID: SIGTERM, then SIGKILL after 15 s.
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

start_fibo() {
    # shellcheck disable=SC2086  # FIBO_ARGS is a list of flags
    start "$1" "$FIBO" serve --listen 127.0.0.1:0 --max-concurrency "$MAX_CONCURRENCY" --grace 2 $FIBO_ARGS
}

# CPU seconds (user + system) a process has used, in clock ticks.
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

now() { date +%s.%N; }

# --- wrk output --------------------------------------------------------------------------
# ms VALUE: wrk's "1.23ms", "456.00us", "1.10s", "2.00m" in milliseconds.
to_ms() {
    awk '{
        v = $1; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : 1;
        printf "%.3f\n", v * f
    }'
}
wrk_rps() { awk '/^Requests\/sec:/ {v = $2} END {print v + 0}' "$1"; }
wrk_requests() { awk '/ requests in / {v = $1} END {print v + 0}' "$1"; }
wrk_pct() { awk -v q="$2%" '$1 == q {print $2}' "$1" | to_ms; }
# Socket errors and non-2xx/3xx answers, e.g. "connect 0, read 0, write 0, timeout 0, non-2xx 0".
wrk_errors() {
    awk '
        /Socket errors:/ { gsub(/,/, ""); c = $4; r = $6; w = $8; t = $10 }
        /Non-2xx or 3xx responses:/ { n = $5 }
        END { printf "connect %d, read %d, write %d, timeout %d, non-2xx %d\n", c, r, w, t, n }' "$1"
}
wrk_error_total() { wrk_errors "$1" | awk '{gsub(/,/, ""); print $2 + $4 + $6 + $8 + $10}'; }

# run_wrk NAME SECONDS WRK-ARGS...: wrk --latency, bounded, output kept as $WORK/NAME.wrk.
run_wrk() {
    local name=$1 secs=$2
    shift 2
    echo "### wrk $name: wrk --latency -d ${secs}s $*" >"$WORK/$name.wrk"
    timeout $((secs + 60)) wrk --latency -d "${secs}s" "$@" >>"$WORK/$name.wrk" 2>&1 || true
}

calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

metrics_lines() {
    curl -s --max-time 10 "http://$1/metrics" |
        grep -E '^fibo_(values|coalesced_waiters|cache_misses|cache_hits|requests_shed|http_requests)' || true
}

: >"$WORK/summary"
say "fibo serve load test, $(date -u +%Y-%m-%dT%H:%M:%SZ), $CORES cores, $(uname -sr)"
say "load average before: $(cut -d" " -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
say "wrk $(wrk -v 2>&1 | head -n 1 | awk '{print $2}'), $(curl --version | head -n 1 | awk '{print $1, $2}'), ulimit -n $(ulimit -n)"
say ""

# --- 1. cached /fib/1000 against hello world ---------------------------------------------
start hello "$HELLO" --listen 127.0.0.1:0
HELLO_PID=$PID HELLO_ADDR=$ADDR
start_fibo fibo
FIBO_PID=$PID FIBO_ADDR=$ADDR
curl -sf --max-time 30 "http://$FIBO_ADDR/fib/1000" >/dev/null || die "GET /fib/1000 failed"
curl -sf --max-time 10 "http://$HELLO_ADDR/" >/dev/null || die "hello server does not answer"

wrk1=(-t "$WRK_THREADS" -c "$WRK_CONNECTIONS")
run_wrk hello-warm 2 "${wrk1[@]}" "http://$HELLO_ADDR/"
run_wrk fibo-warm 2 "${wrk1[@]}" "http://$FIBO_ADDR/fib/1000"
# Alternating rounds, so that a change in the machine's other load hits both sides alike.
HELLO_CPU=0 FIB1000_CPU=0 HELLO_REQS=0 FIB1000_REQS=0 RATIOS=""
for r in $(seq 1 "$ROUNDS"); do
    c0=$(cpu_ticks "$HELLO_PID")
    run_wrk "hello-$r" "$LOAD_SECONDS" "${wrk1[@]}" "http://$HELLO_ADDR/"
    HELLO_CPU=$(calc "$HELLO_CPU + ($(cpu_ticks "$HELLO_PID") - $c0) / $CLK_TCK" 3)
    c0=$(cpu_ticks "$FIBO_PID")
    run_wrk "fib1000-$r" "$LOAD_SECONDS" "${wrk1[@]}" "http://$FIBO_ADDR/fib/1000"
    FIB1000_CPU=$(calc "$FIB1000_CPU + ($(cpu_ticks "$FIBO_PID") - $c0) / $CLK_TCK" 3)
    HELLO_REQS=$((HELLO_REQS + $(wrk_requests "$WORK/hello-$r.wrk")))
    FIB1000_REQS=$((FIB1000_REQS + $(wrk_requests "$WORK/fib1000-$r.wrk")))
    RATIOS="$RATIOS $(calc "$(wrk_rps "$WORK/fib1000-$r.wrk") / ($(wrk_rps "$WORK/hello-$r.wrk") + 1e-9)" 3)"
done
# The round with the median ratio stands for the run.
MEDIAN_ROUND=$(for r in $(seq 1 "$ROUNDS"); do
    echo "$r $(echo "$RATIOS" | awk -v r="$r" '{print $r}')"
done | sort -k2 -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
cp "$WORK/hello-$MEDIAN_ROUND.wrk" "$WORK/hello.wrk"
cp "$WORK/fib1000-$MEDIAN_ROUND.wrk" "$WORK/fib1000.wrk"
HELLO_RPS=$(wrk_rps "$WORK/hello.wrk")
FIB_RPS=$(wrk_rps "$WORK/fib1000.wrk")
RATIO1=$(calc "$FIB_RPS / ($HELLO_RPS + 1e-9)" 3)
# Server CPU seconds per request: the basis of the capacity model.
HIT_CPU_US=$(calc "$FIB1000_CPU / ($FIB1000_REQS + 1e-9) * 1e6" 1)
HELLO_CPU_US=$(calc "$HELLO_CPU / ($HELLO_REQS + 1e-9) * 1e6" 1)

# --- 2. 10,000 keep-alive connections ----------------------------------------------------
rss0=$(rss_kb "$FIBO_PID")
(sleep $((CONN_SECONDS * 2 / 3 + 1)) && rss_kb "$FIBO_PID" >"$WORK/rss_mid") 2>/dev/null &
PIDS+=("$!")
c0=$(cpu_ticks "$FIBO_PID")
run_wrk conn "$CONN_SECONDS" -t "$CONN_THREADS" -c "$CONNECTIONS" --timeout 10s "http://$FIBO_ADDR/fib/1000"
CONN_CPU=$(calc "($(cpu_ticks "$FIBO_PID") - $c0) / $CLK_TCK" 3)
rss1=$(cat "$WORK/rss_mid" 2>/dev/null || rss_kb "$FIBO_PID")
CONN_KB=$(calc "($rss1 - $rss0) / $CONNECTIONS" 2)
CONN_ERRORS=$(wrk_error_total "$WORK/conn.wrk")
curl -sf --max-time 10 "http://$FIBO_ADDR/healthz" >/dev/null || die "fibo serve stopped answering after measurement 2"
if [ "${CONN_BASELINE:-1}" = 1 ]; then
    run_wrk hello-conn "$CONN_SECONDS" -t "$CONN_THREADS" -c "$CONNECTIONS" --timeout 10s "http://$HELLO_ADDR/"
fi
stop "$HELLO_PID"

# --- 3. small cached requests beside heavy uncached ones ---------------------------------
URL=http://$FIBO_ADDR
run_wrk small-warm 3 -t 1 -c "$SMALL_CONNECTIONS" -s scripts/load/small.lua "$URL" -- "$SMALL_MAX"
run_wrk small-alone 5 -t 1 -c "$SMALL_CONNECTIONS" -s scripts/load/small.lua "$URL" -- "$SMALL_MAX"
c0=$(cpu_ticks "$FIBO_PID")
run_wrk heavy "$MIX_SECONDS" -t 1 -c "$HEAVY_CONNECTIONS" --timeout 120s -s scripts/load/heavy.lua "$URL" -- "$HEAVY_LO" "$HEAVY_HI" &
heavy_job=$!
sleep 0.5
run_wrk small "$MIX_SECONDS" -t 1 -c "$SMALL_CONNECTIONS" -s scripts/load/small.lua "$URL" -- "$SMALL_MAX"
wait "$heavy_job" || true
MIX_CPU=$(calc "($(cpu_ticks "$FIBO_PID") - $c0) / $CLK_TCK" 3)
SMALL_N=$(wrk_requests "$WORK/small.wrk")
HEAVY_N=$(wrk_requests "$WORK/heavy.wrk")
SMALL_P99=$(wrk_pct "$WORK/small.wrk" 99)
HEAVY_SHARE=$(calc "100 * ${HEAVY_N:-0} / (${SMALL_N:-0} + ${HEAVY_N:-0} + 1e-9)" 3)
# CPU of one heavy request: the mixed run's CPU less what the small ones cost (at the
# cached rate of measurement 1).
MISS_CPU_S=$(calc "(${MIX_CPU} - ${SMALL_N:-0} * $HIT_CPU_US / 1e6) / (${HEAVY_N:-0} + 1e-9)" 4)
metrics_lines "$FIBO_ADDR" >"$WORK/metrics-mix"
stop "$FIBO_PID"

# --- 4. PARALLEL requests for one uncached F(BIG_N) --------------------------------------
start_fibo fresh-one
ONE_PID=$PID
t0=$(now)
ONE_OUT=$(curl -s --max-time 300 -o /dev/null -D "$WORK/one.headers" \
    -w '%{http_code} %{size_download} %{time_starttransfer}' "http://$ADDR/fib/$BIG_N" || true)
ONE_S=$(calc "$(now) - $t0" 3)
ONE_CACHE=$(awk 'tolower($1) == "x-fibo-cache:" {print $2}' "$WORK/one.headers" | tr -d '\r')
stop "$ONE_PID"

start_fibo fresh-many
MANY_PID=$PID MANY_ADDR=$ADDR
# curl runs at most 300 transfers at once per process: enough processes for PARALLEL.
per=250
procs=$(((PARALLEL + per - 1) / per))
for p in $(seq 1 "$procs"); do
    count=$((p < procs ? per : PARALLEL - per * (procs - 1)))
    for _ in $(seq 1 "$count"); do
        printf 'url = "http://%s/fib/%s"\noutput = "/dev/null"\n' "$MANY_ADDR" "$BIG_N"
    done >"$WORK/many-$p.cfg"
done
# parallel_round NAME: all PARALLEL requests at once; sets ROUND_S (wall seconds) and leaves
# "http_code time_total time_to_first_byte" lines in $WORK/NAME.out.
parallel_round() {
    local name=$1 p t0 jobs=()
    t0=$(now)
    for p in $(seq 1 "$procs"); do
        curl -s --parallel --parallel-immediate --parallel-max "$per" --max-time 300 \
            --no-progress-meter -K "$WORK/many-$p.cfg" \
            -w '%{http_code} %{time_total} %{time_starttransfer}\n' \
            >"$WORK/$name-$p.out" 2>"$WORK/$name-$p.err" &
        jobs+=("$!")
    done
    for p in "${jobs[@]}"; do wait "$p" || true; done
    ROUND_S=$(calc "$(now) - $t0" 3)
    cat "$WORK/$name"-*.out >"$WORK/$name.out"
    cat "$WORK/$name"-*.err >"$WORK/$name.err"
}
# column_stat FILE COLUMN: "median max" of a column over the 200 answers.
column_stat() {
    awk -v c="$2" '$1 == 200 {print $c}' "$1" | sort -n |
        awk '{a[NR] = $1} END {if (NR) printf "median %.3f s, max %.3f s", a[int((NR + 1) / 2)], a[NR]}'
}
parallel_round many
MANY_S=$ROUND_S
MANY_OK=$(awk '$1 == 200' "$WORK/many.out" | wc -l)
MANY_BAD=$(awk '$1 != 200' "$WORK/many.out" | wc -l)
MANY_TOTAL=$(column_stat "$WORK/many.out" 2)
MANY_TTFB=$(column_stat "$WORK/many.out" 3)
RATIO4=$(calc "$MANY_S / ($ONE_S + 1e-9)" 2)
metrics_lines "$MANY_ADDR" >"$WORK/metrics-many"
MANY_MISS=$(awk '/^fibo_values(_total)?\{kind="miss"\}/ {print $2}' "$WORK/metrics-many")
MANY_SHARED=$(awk '/^fibo_values(_total)?\{kind="shared"\}/ {print $2}' "$WORK/metrics-many")
MANY_HIT=$(awk '/^fibo_values(_total)?\{kind="hit"\}/ {print $2}' "$WORK/metrics-many")
# The same again, F(BIG_N) now cached: what serving PARALLEL such bodies costs by itself.
c0=$(cpu_ticks "$MANY_PID")
parallel_round again
AGAIN_S=$ROUND_S
AGAIN_CPU_MS=$(calc "($(cpu_ticks "$MANY_PID") - $c0) / $CLK_TCK / $PARALLEL * 1000" 2)
AGAIN_TTFB=$(column_stat "$WORK/again.out" 3)
stop "$MANY_PID"
{
    echo "### metrics after measurement 3"
    cat "$WORK/metrics-mix"
    echo
    echo "### metrics after measurement 4"
    cat "$WORK/metrics-many"
    echo
    echo "### measurement 4, curl's errors"
    head -n 20 "$WORK/many.err" "$WORK/again.err"
    echo "### measurement 4, one request: http_code bytes time_to_first_byte: $ONE_OUT"
    cat "$WORK/one.headers"
} >"$WORK/raw"

# --- summary -----------------------------------------------------------------------------
verdict() { if awk "BEGIN { exit !($1) }"; then echo "ok"; else echo "MISSED"; fi; }
row() { printf '%-58s %-30s %s\n' "$1" "$2" "$3" | tee -a "$WORK/summary"; }

say "== summary =="
row "measurement" "result" "goal"
row "1. hello world, GET / (-t$WRK_THREADS -c$WRK_CONNECTIONS ${LOAD_SECONDS}s)" "$HELLO_RPS req/s" "median round of $ROUNDS"
row "1. fibo, cached GET /fib/1000 (same settings)" "$FIB_RPS req/s" ""
row "1. ratio fibo / hello" "$RATIO1" ">= 0.8: $(verdict "$RATIO1 >= 0.8")"
row "1. ratios of the rounds" "${RATIOS# }" ""
row "1. server CPU per request: hello / fibo" "$HELLO_CPU_US / $HIT_CPU_US us" "ratio $(calc "$HELLO_CPU_US / ($HIT_CPU_US + 1e-9)" 3)"
row "   p50 / p99 hello" "$(wrk_pct "$WORK/hello.wrk" 50) / $(wrk_pct "$WORK/hello.wrk" 99) ms" ""
row "   p50 / p99 fibo" "$(wrk_pct "$WORK/fib1000.wrk" 50) / $(wrk_pct "$WORK/fib1000.wrk" 99) ms" ""
row "2. $CONNECTIONS keep-alive connections, ${CONN_SECONDS}s" "$(wrk_rps "$WORK/conn.wrk") req/s" ""
row "2. errors" "$(wrk_errors "$WORK/conn.wrk")" "zero: $(verdict "${CONN_ERRORS:-1} == 0")"
row "2. p50 / p99" "$(wrk_pct "$WORK/conn.wrk" 50) / $(wrk_pct "$WORK/conn.wrk" 99) ms" ""
if [ -f "$WORK/hello-conn.wrk" ]; then
    row "2. baseline: hello world, same settings" "$(wrk_rps "$WORK/hello-conn.wrk") req/s" ""
    row "2. baseline errors" "$(wrk_errors "$WORK/hello-conn.wrk")" ""
    row "2. baseline p50 / p99" "$(wrk_pct "$WORK/hello-conn.wrk" 50) / $(wrk_pct "$WORK/hello-conn.wrk" 99) ms" ""
fi
row "3. small cached n alone (-c$SMALL_CONNECTIONS, 5s): p50 / p99" \
    "$(wrk_pct "$WORK/small-alone.wrk" 50) / $(wrk_pct "$WORK/small-alone.wrk" 99) ms" \
    "$(wrk_rps "$WORK/small-alone.wrk") req/s"
row "3. small cached n beside heavy: p50 / p99" "$(wrk_pct "$WORK/small.wrk" 50) / ${SMALL_P99} ms" \
    "p99 < 20 ms: $(verdict "${SMALL_P99:-1e9} < 20")"
row "3. small: requests, req/s, errors" "$SMALL_N, $(wrk_rps "$WORK/small.wrk")" "$(wrk_errors "$WORK/small.wrk")"
row "3. heavy uncached n in [$HEAVY_LO, $HEAVY_HI) (-c$HEAVY_CONNECTIONS): p50 / p99" \
    "$(wrk_pct "$WORK/heavy.wrk" 50) / $(wrk_pct "$WORK/heavy.wrk" 99) ms" ""
row "3. heavy: requests, share of all requests" "$HEAVY_N, ${HEAVY_SHARE}%" "$(wrk_errors "$WORK/heavy.wrk")"
row "4. one GET /fib/$BIG_N, fresh server" "${ONE_S} s (x-fibo-cache ${ONE_CACHE:-?})" "$ONE_OUT"
row "4. $PARALLEL concurrent GET /fib/$BIG_N, fresh server" "${MANY_S} s" "total: $MANY_TOTAL"
row "4. ratio many / one" "$RATIO4" "<= 1.5: $(verdict "$RATIO4 <= 1.5")"
row "4. their time to first byte" "$MANY_TTFB" "one request: $(echo "$ONE_OUT" | awk '{printf "%.3f s", $3}')"
row "4. answers: 200 / other" "$MANY_OK / $MANY_BAD" ""
row "4. /metrics values: miss / shared / hit" "${MANY_MISS:-?} / ${MANY_SHARED:-?} / ${MANY_HIT:-?}" "miss = 1"
row "4. the same $PARALLEL again, F($BIG_N) cached" "${AGAIN_S} s" "first byte: $AGAIN_TTFB"
row "4. server CPU per cached F($BIG_N) response" "$AGAIN_CPU_MS ms" "$(calc "$(echo "$ONE_OUT" | awk '{print $2}') / 1048576" 1) MiB each"
row "4. ratio many / (one + cached round)" "$(calc "$MANY_S / ($ONE_S + $AGAIN_S + 1e-9)" 2)" "1 = computed once, then only bytes to move"
say ""

# --- 5. capacity model -------------------------------------------------------------------
RATE=$(calc "$USERS / $THINK_SECONDS" 0)
CORE_S=$(calc "$RATE * ($HIT_RATIO * $HIT_CPU_US / 1e6 + (1 - $HIT_RATIO) * $MISS_CPU_S)" 2)
say "== 5. capacity model =="
say "Figures (server CPU only, from /proc; the load generators' CPU is not counted):"
say "  cached request (GET /fib/1000):    ${HIT_CPU_US} us CPU  -> $(calc "1e6 / ($HIT_CPU_US + 1e-9)" 0) req/s per core"
say "  hello world request:               ${HELLO_CPU_US} us CPU"
say "  cached request, $CONNECTIONS connections open: $(calc "$CONN_CPU / ($(wrk_requests "$WORK/conn.wrk") + 1e-9) * 1e6" 1) us CPU"
say "  uncached n in [$HEAVY_LO, $HEAVY_HI): ${MISS_CPU_S} s CPU   -> $(calc "1 / ($MISS_CPU_S + 1e-9)" 2) req/s per core"
say "  memory per open keep-alive connection: ${CONN_KB} KiB (RSS growth with $CONNECTIONS open)"
say "  measurement 2 served $(wrk_rps "$WORK/conn.wrk") req/s with $CONNECTIONS connections on $CORES cores"
say "Model: $USERS concurrent users, one request every $THINK_SECONDS s each = $RATE req/s,"
say "  $HIT_RATIO of them cached, the rest uncached like measurement 3's heavy ones (distinct n in"
say "  [$HEAVY_LO, $HEAVY_HI): a pessimistic miss), CPU per request as measured, scaling linearly"
say "  with cores, each instance run at $TARGET_UTILIZATION of its CPU:"
say "  CPU needed: $CORE_S cores"
for cores in 2 16; do
    inst=$(awk -v need="$CORE_S" -v c="$cores" -v u="$TARGET_UTILIZATION" \
        'BEGIN { x = need / (c * u); i = int(x); if (i < x) i++; if (i < 1) i = 1; print i }')
    conns=$(calc "$USERS / $inst" 0)
    say "  $cores cores: $inst instances, $conns connections each (~$(calc "$conns * $CONN_KB / 1024" 0) MiB for them)"
done
say "  Cache hits alone would need $(calc "$RATE * $HIT_RATIO * $HIT_CPU_US / 1e6" 2) cores; misses decide the count."
say "  With nginx and a shared Redis cache in front, the hit ratio is the fleet's, not one instance's."

mkdir -p "$(dirname "$REPORT")"
{
    cat "$WORK/summary"
    echo
    echo "== raw outputs =="
    for name in $(for r in $(seq 1 "$ROUNDS"); do echo "hello-$r fib1000-$r"; done) \
        conn hello-conn small-alone small heavy; do
        [ -f "$WORK/$name.wrk" ] || continue
        cat "$WORK/$name.wrk"
        echo
    done
    cat "$WORK/raw"
} >"$REPORT"
echo "written: $REPORT"
