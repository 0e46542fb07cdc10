# Sourced by scripts/cluster.sh and scripts/load_test.sh: the processes a script started, and
# how they are stopped when it exits.

# The PIDs to stop; scripts append to it as they start processes.
PIDS=()

# stop_pids TENTHS: TERM to every process of PIDS, then up to TENTHS tenths of a second for
# each to exit before a KILL; each is reaped.
stop_pids() {
    local tenths=$1 pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 "$tenths"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
