#!/usr/bin/env bash
# Stop the single-node SLURM test cluster started by start_cluster.sh: slurmd, slurmctld
# and munged. Leaves configuration, keys and state in place. Idempotent and quiet.
set -euo pipefail
PROG=$(basename "$0")

[[ $(id -u) -eq 0 ]] || { echo "$PROG: ERROR: must be run as root" >&2; exit 1; }

# stop NAME PIDFILE: kill the daemon named NAME (from its pid file, else by exact name)
# and wait up to 10 s for it to exit, then SIGKILL.
stop() {
    local name=$1 pidfile=$2 pids=() pid
    if [[ -s $pidfile ]]; then
        pid=$(<"$pidfile")
        if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]]; then
            pids+=("$pid")
        fi
    fi
    while read -r pid; do
        [[ -n $pid ]] && pids+=("$pid")
    done < <(pgrep -x "$name" || true)
    ((${#pids[@]})) || return 0
    mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sort -u)
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
        pgrep -x "$name" >/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    pkill -9 -x "$name" 2>/dev/null || true
    sleep 0.5
    if pgrep -x "$name" >/dev/null; then
        echo "$PROG: ERROR: could not stop $name" >&2
        return 1
    fi
    rm -f "$pidfile"
}

rc=0
stop slurmd /run/slurmd.pid || rc=1
stop slurmctld /run/slurmctld.pid || rc=1
stop munged /run/munge/munged.pid || rc=1
exit $rc
