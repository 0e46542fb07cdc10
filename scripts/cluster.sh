#!/usr/bin/env bash
# A cluster on one machine (issue 14): Redis, nginx (deploy/nginx.conf), SERVES `fibo serve`
# instances sharing a cache in Redis (--cache-redis) and WORKERS `fibo worker`s. Loopback only,
# bounded in time (about LOAD_SECONDS + 30 s after the build), stopping everything it started.
#
#   1. starts redis-server (password in a 0600 config file, never on a command line; fibo gets
#      its URLs in FIBO_CACHE_REDIS, FIBO_BROKER (db 0) and FIBO_BACKEND (db 1)), the
#      instances (--listen 127.0.0.1:0, address read from their first stderr line), the
#      workers and nginx; waits for /healthz through nginx;
#   2. runs wrk through nginx for LOAD_SECONDS with scripts/load/mixed.lua (cached small n and
#      uncached n >= 30000 mixed), and halfway through SIGKILLs one instance and one worker;
#   3. reports requests, errors by kind (wrk's socket errors and non-2xx; nginx's access log:
#      5xx, 429, requests nginx retried on another instance), latency p50/p99, and each
#      surviving instance's /metrics (values by source, engine cache misses, shared cache);
#   4. checks a few values through nginx against `fibo N` run here (bytes equal), and one
#      `fibo submit` through the surviving worker against plain `fibo`;
#   5. writes the summary to target/cluster.txt and exits 1 if a request failed other than
#      one in flight on the killed instance (nginx retries idempotent GETs elsewhere, so the
#      goal is none at all), or if a check failed.
#
# What a kill costs: nginx retries the GETs in flight on the killed instance elsewhere (no
# failed request), but a retried n >= 30000 that the killed instance had claimed waits until
# its claim lapses in Redis (--shared-claim, 5 s), so a few requests take about 5 s; the
# summary lists the slowest. wrk's latencies include the time its requests wait for nginx and
# wrk itself to get a CPU, which on a small, busy machine is most of its p99; nginx's
# $request_time percentiles are printed beside them.
#
# The instances hand values past OFFLOAD_ABOVE to the workers (`--offload-above`, broker and
# backend from FIBO_BROKER/FIBO_BACKEND): the heavy end of the mix is computed there. A task
# the killed worker had taken is lost with it; its instance waits half its --timeout
# (SERVE_TIMEOUT) for it, then computes the value itself, so those few requests are slow, not
# failed. The `fibo submit` of step 4 shows the surviving worker still takes tasks.
#
# Environment (defaults in brackets):
#   LOAD_SECONDS [60]  KILL_AT [LOAD_SECONDS / 2]  seconds of load; when the kills happen
#   WRK_THREADS [2] WRK_CONNECTIONS [32] WRK_TIMEOUT [30]
#   SMALL_MAX [1000] HEAVY_PERCENT [10] HEAVY_LO [30000] HEAVY_HI [300000]  the mix (mixed.lua)
#   SERVES [3] WORKERS [2]
#   RATE [100000r/s] BURST [10000]  nginx's limit_req (high: the load comes from one address)
#   OFFLOAD_ABOVE [150000] SERVE_TIMEOUT [10]  fibo serve's --offload-above and --timeout
#   FIBO_ARGS           more `fibo serve` flags
#   SKIP_BUILD=1        use target/release/fibo as it is
#   KEEP=1              keep the run directory (logs, rendered config) and print its path

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

LOAD_SECONDS=${LOAD_SECONDS:-60}
KILL_AT=${KILL_AT:-$((LOAD_SECONDS / 2))}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
WRK_TIMEOUT=${WRK_TIMEOUT:-30}
SMALL_MAX=${SMALL_MAX:-1000}
HEAVY_PERCENT=${HEAVY_PERCENT:-10}
HEAVY_LO=${HEAVY_LO:-30000}
HEAVY_HI=${HEAVY_HI:-300000}
SERVES=${SERVES:-3}
WORKERS=${WORKERS:-2}
RATE=${RATE:-100000r/s}
BURST=${BURST:-10000}
FIBO_ARGS=${FIBO_ARGS:-}
OFFLOAD_ABOVE=${OFFLOAD_ABOVE:-150000}
SERVE_TIMEOUT=${SERVE_TIMEOUT:-10}

TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
FIBO=$TARGET/release/fibo
REPORT=$TARGET/cluster.txt
RUN=$(mktemp -d "${TMPDIR:-/tmp}/fibo-cluster.XXXXXX")
mkdir -p "$RUN/logs" "$RUN/temp"

# shellcheck source=scripts/procs.sh
. scripts/procs.sh
cleanup() {
    stop_pids 100
    if [ "${KEEP:-0}" = 1 ]; then
        echo "cluster: run directory kept: $RUN" >&2
    else
        rm -rf "$RUN"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

: >"$RUN/summary"
say() { echo "$*" | tee -a "$RUN/summary"; }
die() { echo "cluster: $*" >&2; exit 1; }

for tool in redis-server redis-cli nginx wrk curl; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
[ "$SERVES" -ge 2 ] || die "SERVES must be at least 2 (one is killed)"
[ "$WORKERS" -ge 2 ] || die "WORKERS must be at least 2 (one is killed)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --all-features --bin fibo >&2
fi
[ -x "$FIBO" ] || die "no $FIBO"

# free_port: a TCP port on 127.0.0.1 nobody listens on now (nothing is bound until the
# program that gets it starts, so another program could take it first; unlikely here).
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

# --- Redis -------------------------------------------------------------------------------
REDIS_PORT=$(free_port)
PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
umask 077
cat >"$RUN/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
requirepass $PASSWORD
maxmemory 256mb
maxmemory-policy allkeys-lru
save ""
appendonly no
dir $RUN
logfile $RUN/logs/redis.log
EOF
umask 022
redis-server "$RUN/redis.conf" &
PIDS+=("$!")
export REDISCLI_AUTH=$PASSWORD
for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
done
[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || die "redis did not start: $(cat "$RUN/logs/redis.log")"

# The URLs reach fibo through its environment only, never its command line (`ps`).
export FIBO_CACHE_REDIS="redis://:$PASSWORD@127.0.0.1:$REDIS_PORT/2"
export FIBO_BROKER="redis://:$PASSWORD@127.0.0.1:$REDIS_PORT/0"
export FIBO_BACKEND="redis://:$PASSWORD@127.0.0.1:$REDIS_PORT/1"

# --- fibo serve instances ----------------------------------------------------------------
# Each gets --cache-redis from FIBO_CACHE_REDIS (db 2), so the flag is not written here: on
# the command line the password would show in `ps`.
SERVE_PIDS=()
SERVE_ADDRS=()
for i in $(seq 1 "$SERVES"); do
    log=$RUN/logs/serve$i.log
    # shellcheck disable=SC2086  # FIBO_ARGS is a list of flags
    "$FIBO" serve --listen 127.0.0.1:0 --grace 2 --offload-above "$OFFLOAD_ABOVE" \
        --timeout "$SERVE_TIMEOUT" $FIBO_ARGS >/dev/null 2>"$log" &
    pid=$!
    PIDS+=("$pid")
    SERVE_PIDS+=("$pid")
    addr=
    for _ in $(seq 1 300); do
        line=$(head -n 1 "$log" 2>/dev/null || true)
        case $line in
            *"listening on http://"*)
                addr=${line##*http://}
                break
                ;;
        esac
        kill -0 "$pid" 2>/dev/null || die "serve $i exited at start: $(cat "$log")"
        sleep 0.1
    done
    [ -n "$addr" ] || die "serve $i printed no address within 30 s: $(cat "$log")"
    SERVE_ADDRS+=("$addr")
done

# --- fibo workers ------------------------------------------------------------------------
WORKER_PIDS=()
for i in $(seq 1 "$WORKERS"); do
    "$FIBO" worker -j 1 >/dev/null 2>"$RUN/logs/worker$i.log" &
    PIDS+=("$!")
    WORKER_PIDS+=("$!")
done

# --- nginx -------------------------------------------------------------------------------
NGINX_PORT=$(free_port)
NGINX=127.0.0.1:$NGINX_PORT
for addr in "${SERVE_ADDRS[@]}"; do
    echo "        server $addr max_fails=1 fail_timeout=5s;"
done >"$RUN/upstreams"
sed -e "s|@LISTEN@|$NGINX|" -e "s|@RATE@|$RATE|" -e "s|@BURST@|$BURST|" \
    -e "/@UPSTREAMS@/{
r $RUN/upstreams
d
}" deploy/nginx.conf >"$RUN/nginx.conf"
nginx -t -q -c "$RUN/nginx.conf" -p "$RUN/" -e logs/error.log 2>"$RUN/logs/nginx-t.log" \
    || die "nginx refused the config: $(cat "$RUN/logs/nginx-t.log")"
nginx -c "$RUN/nginx.conf" -p "$RUN/" -e logs/error.log 2>>"$RUN/logs/nginx.stderr" &
PIDS+=("$!")

ok=
for _ in $(seq 1 100); do
    if [ "$(curl -s --max-time 2 "http://$NGINX/healthz" 2>/dev/null)" = ok ]; then
        ok=1
        break
    fi
    sleep 0.1
done
[ -n "$ok" ] || die "no /healthz through nginx within 10 s: $(cat "$RUN/logs/error.log" "$RUN/logs/nginx.stderr" 2>/dev/null)"
for i in "${!WORKER_PIDS[@]}"; do
    kill -0 "${WORKER_PIDS[$i]}" 2>/dev/null || die "worker $((i + 1)) exited at start: $(cat "$RUN/logs/worker$((i + 1)).log")"
done

# --- the load, and the kills halfway -------------------------------------------------------
# ms: wrk's "1.23ms", "456.00us", "1.10s", "2.00m" in milliseconds.
to_ms() {
    awk '{
        v = $1; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : 1;
        printf "%.2f\n", v * f
    }'
}

KILLED_SERVE=2
KILLED_WORKER=1
KILLED_ADDR=${SERVE_ADDRS[$((KILLED_SERVE - 1))]}
START=$(date +%s.%N)
timeout $((LOAD_SECONDS + 60)) wrk -t "$WRK_THREADS" -c "$WRK_CONNECTIONS" -d "${LOAD_SECONDS}s" \
    --timeout "${WRK_TIMEOUT}s" --latency -s scripts/load/mixed.lua "http://$NGINX" \
    -- "$SMALL_MAX" "$HEAVY_PERCENT" "$HEAVY_LO" "$HEAVY_HI" >"$RUN/wrk.out" 2>&1 &
WRK=$!
PIDS+=("$WRK")
sleep "$KILL_AT"
KILL_TIME=$(date +%s.%N)
# The killed instance's figures up to its death (its /metrics goes with it).
curl -s --max-time 2 "http://$KILLED_ADDR/metrics" >"$RUN/metrics$KILLED_SERVE.txt" || true
kill -KILL "${SERVE_PIDS[$((KILLED_SERVE - 1))]}" "${WORKER_PIDS[$((KILLED_WORKER - 1))]}"
wait "${SERVE_PIDS[$((KILLED_SERVE - 1))]}" "${WORKER_PIDS[$((KILLED_WORKER - 1))]}" 2>/dev/null || true
wait "$WRK" || true
END=$(date +%s.%N)
# The load's lines of nginx's access log (the checks below add more).
LOAD_LINES=$(wc -l <"$RUN/logs/access.log")

# --- figures -------------------------------------------------------------------------------
WRK_REQUESTS=$(awk '/ requests in / {v = $1} END {print v + 0}' "$RUN/wrk.out")
WRK_RPS=$(awk '/^Requests\/sec:/ {v = $2} END {print v + 0}' "$RUN/wrk.out")
P50=$(awk '$1 == "50%" {print $2}' "$RUN/wrk.out" | to_ms)
P99=$(awk '$1 == "99%" {print $2}' "$RUN/wrk.out" | to_ms)
read -r E_CONNECT E_READ E_WRITE E_TIMEOUT E_NON2XX < <(awk '
    /Socket errors:/ { gsub(/,/, ""); c = $4; r = $6; w = $8; t = $10 }
    /Non-2xx or 3xx responses:/ { n = $5 }
    END { printf "%d %d %d %d %d\n", c, r, w, t, n }' "$RUN/wrk.out")

# nginx's access log, load requests only (GET /fib/): statuses, retries, and which failures
# were answers from the killed instance (in flight when it died). Fields: $msec $status
# $request_time "$upstream_addr" "$upstream_status" bytes "request".
LOG=$RUN/logs/access.log
read -r L_TOTAL L_5XX L_429 L_499 L_OTHER L_RETRIED L_KILLED_FAIL L_SLOW L_MAX < <(head -n "$LOAD_LINES" "$LOG" | awk -v killed="$KILLED_ADDR" '
    index($0, "\"GET /fib/") == 0 { next }
    {
        total++
        s = $2
        split($0, q, "\"")          # q[2]: upstream addrs, q[4]: upstream statuses
        if (s >= 500) {
            e5++
            if (index(q[2], killed) > 0) kf++
        } else if (s == 429) e429++
        else if (s == 499) e499++   # the client closed first: wrk at the end of its run
        else if (s >= 300) other++
        if (index(q[2], ",") > 0 && s == 200) retried++
        if ($3 > 1) slow++
        if ($3 > max) max = $3
    }
    END { printf "%d %d %d %d %d %d %d %d %.3f\n", total, e5, e429, e499, other, retried, kf, slow, max }')

metric() { # metric FILE NAME-AND-LABELS: the value, 0 if absent
    awk -v m="$2" '$1 == m {v = $2} END {print v + 0}' "$1"
}

say "fibo cluster: $SERVES x fibo serve (shared cache in Redis), $WORKERS x fibo worker, nginx, $(nproc) cores" \
    "(load average after the load: $(cut -d ' ' -f 1-3 /proc/loadavg))"
say "load: wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${LOAD_SECONDS}s through nginx, GET /fib/n:" \
    "$((100 - HEAVY_PERCENT))% n in 0..$SMALL_MAX, $HEAVY_PERCENT% n in $HEAVY_LO..$HEAVY_HI"
say "killed (SIGKILL) at $(awk -v a="$START" -v b="$KILL_TIME" 'BEGIN {printf "%.1f", b - a}') s:" \
    "serve $KILLED_SERVE ($KILLED_ADDR) and worker $KILLED_WORKER; load ended at" \
    "$(awk -v a="$START" -v b="$END" 'BEGIN {printf "%.1f", b - a}') s"
say ""
say "requests (wrk): $WRK_REQUESTS, $WRK_RPS/s; latency p50 $P50 ms, p99 $P99 ms"
say "errors (wrk): connect $E_CONNECT, read $E_READ, write $E_WRITE, timeout $E_TIMEOUT, non-2xx $E_NON2XX"
say "nginx access log (the load): $L_TOTAL GET /fib/; 5xx $L_5XX (of them tried on the killed instance:" \
    "$L_KILLED_FAIL), 429 $L_429, other non-2xx $L_OTHER; 499 $L_499 (cut by wrk's end, not errors)"
say "  retried on another instance and answered 200: $L_RETRIED; slower than 1 s: $L_SLOW, slowest $L_MAX s"
read -r N_P50 N_P99 N_P999 < <(head -n "$LOAD_LINES" "$LOG" | awk 'index($0, "\"GET /fib/") > 0 {print $3}' \
    | sort -n | awk '{a[NR] = $1} END {printf "%.1f %.1f %.1f\n", a[int(NR * 0.5) + 1] * 1000, a[int(NR * 0.99) + 1] * 1000, a[int(NR * 0.999) + 1] * 1000}')
say "  nginx's \$request_time (from its first read of a request): p50 $N_P50 ms, p99 $N_P99 ms, p99.9 $N_P999 ms"
head -n "$LOAD_LINES" "$LOG" | awk '$3 > 1' | sort -k3,3 -rn | head -n 3 | while read -r line; do
    say "  slow: $line"
done
say ""
say "per instance (/metrics after the load; the killed one's just before the kill):"
printf '%-22s %9s %9s %9s %9s %9s %9s %7s %7s %6s %3s %7s %6s\n' instance requests hit miss shared redis \
    eng.miss sh.store sh.wait sh.err up offload off.fail | tee -a "$RUN/summary"
for i in "${!SERVE_ADDRS[@]}"; do
    addr=${SERVE_ADDRS[$i]}
    m=$RUN/metrics$((i + 1)).txt
    if [ "$((i + 1))" = "$KILLED_SERVE" ]; then
        addr="$addr(kill)"
    else
        curl -s --max-time 5 "http://$addr/metrics" >"$m" || true
    fi
    reqs=$(awk '/^fibo_http_requests_total\{/ && /route="\/fib\/\{n\}"/ {s += $2} END {print s + 0}' "$m")
    printf '%-22s %9s %9s %9s %9s %9s %9s %7s %7s %6s %3s %7s %6s\n' "$addr" "$reqs" \
        "$(metric "$m" 'fibo_values_total{kind="hit"}')" \
        "$(metric "$m" 'fibo_values_total{kind="miss"}')" \
        "$(metric "$m" 'fibo_values_total{kind="shared"}')" \
        "$(metric "$m" 'fibo_values_total{kind="redis"}')" \
        "$(metric "$m" fibo_cache_misses_total)" \
        "$(metric "$m" fibo_shared_cache_stores_total)" \
        "$(metric "$m" fibo_shared_cache_claim_waits_total)" \
        "$(metric "$m" fibo_shared_cache_errors_total)" \
        "$(metric "$m" fibo_shared_cache_up)" \
        "$(metric "$m" fibo_offloaded_total)" \
        "$(metric "$m" fibo_offload_failures_total)" | tee -a "$RUN/summary"
done
say "redis: $(redis-cli -p "$REDIS_PORT" -n 2 dbsize) keys in the shared cache, $(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory_human:/ {sub(/\r/, "", $2); print $2}') used"

# --- checks: values through nginx against fibo here ----------------------------------------
say ""
CHECK_FAILED=0
# The password is on no command line (`ps` shows every user's); read with shell builtins and
# tr, so this check puts it on none either.
LEAKED=0
for f in /proc/[0-9]*/cmdline; do
    args=$(tr '\0' ' ' <"$f" 2>/dev/null || true)
    case $args in *"$PASSWORD"*) LEAKED=1 ;; esac
done
if [ "$LEAKED" = 1 ]; then
    say "check the Redis password is on no command line: FAILED"
    CHECK_FAILED=1
else
    say "check the Redis password is on no command line (ps): ok"
fi
for n in 0 10 1000 12345 "$HEAVY_LO" 100000 "$((HEAVY_HI + 7))"; do
    "$FIBO" "$n" >"$RUN/want"
    code=$(curl -s --max-time 30 -o "$RUN/got" -w '%{http_code}' "http://$NGINX/fib/$n" || true)
    if [ "$code" = 200 ] && cmp -s "$RUN/want" "$RUN/got"; then
        say "check F($n) through nginx: $(wc -c <"$RUN/got") bytes, equal to fibo $n"
    else
        say "check F($n) through nginx: FAILED (status $code, $(wc -c <"$RUN/got") bytes against $(wc -c <"$RUN/want"))"
        CHECK_FAILED=1
    fi
done
# The surviving worker still takes tasks.
"$FIBO" 1000..1010 >"$RUN/want"
if timeout 60 "$FIBO" submit --no-progress --timeout 20 1000..1010 >"$RUN/got" 2>"$RUN/logs/submit.log" \
    && cmp -s "$RUN/want" "$RUN/got"; then
    say "check fibo submit 1000..1010 through the surviving worker: equal to fibo 1000..1010"
else
    say "check fibo submit 1000..1010: FAILED ($(tail -n 1 "$RUN/logs/submit.log"))"
    CHECK_FAILED=1
fi

# --- verdict -------------------------------------------------------------------------------
# A failure the kill explains: a 5xx that the killed instance answered (nginx does not retry a
# request whose answer had begun). Anything else counts: wrk's socket errors (nginx stays up,
# so there should be none), 429s, 5xx from the live instances.
SOCKET_ERRORS=$((E_CONNECT + E_READ + E_WRITE + E_TIMEOUT))
UNEXPLAINED=$((SOCKET_ERRORS + L_5XX - L_KILLED_FAIL + L_429 + L_OTHER))
say ""
say "failed requests: $((SOCKET_ERRORS + E_NON2XX)) ($L_KILLED_FAIL in flight on the killed instance," \
    "$UNEXPLAINED other)"
if [ "$UNEXPLAINED" -ne 0 ] || [ "$CHECK_FAILED" -ne 0 ]; then
    RESULT=FAIL
else
    RESULT=OK
fi
say "RESULT: $RESULT"
cp "$RUN/summary" "$REPORT"
{
    echo
    echo "### wrk output"
    cat "$RUN/wrk.out"
} >>"$REPORT"
echo "cluster: summary written to $REPORT" >&2
[ "$RESULT" = OK ]
