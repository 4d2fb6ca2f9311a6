#!/bin/bash
# Stop the single-node Slurm that tests/slurm/start_slurm.sh started: only the daemons whose pid files it wrote
# (and only while those pids still run the program it started). A Slurm started any other way is left alone.
set -euo pipefail

STATE=${LANGADAPT_SLURM_DIR:-/tmp/langadapt-slurm}
[[ -d $STATE/run ]] || { echo "stop_slurm: nothing started from $STATE" >&2; exit 0; }

for name in slurmd slurmctld munged; do  # clients first, munge last (the daemons need it to shut down cleanly)
    pidf=$STATE/run/$name.pid
    [[ -s $pidf ]] || continue
    pid=$(<"$pidf")
    if [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$name" ]]; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done  # up to 10 s
        if [[ -d /proc/$pid ]]; then
            echo "stop_slurm: $name ($pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stop_slurm: stopped $name ($pid)" >&2
    fi
    rm -f "$pidf"
done
