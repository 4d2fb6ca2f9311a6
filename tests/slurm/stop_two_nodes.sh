#!/bin/bash
# Stop the two-node test cluster that tests/slurm/start_two_nodes.sh DIR started, also after a half-done start:
# every process left in its namespaces (job steps, slurmd, slurmctld), then munged, then the namespaces. Only what
# belongs to DIR is touched. Usage: stop_two_nodes.sh DIR
set -uo pipefail
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
STATE=${1:?usage: stop_two_nodes.sh DIR}
[[ -s $STATE/tag ]] || { echo "stop_two_nodes: nothing started from $STATE" >&2; exit 0; }
TAG=$(<"$STATE/tag")
NAMESPACES=("la2-$TAG-n1" "la2-$TAG-n2" "la2-$TAG-ctl")  # nodes first: their slurmd report to the controller

# Processes by pid: those that live in our namespaces (ip netns pids), then our munged from its pid file.
stop_pids() {  # signal pid...
    local sig=$1 pid
    shift
    for pid in "$@"; do kill "-$sig" "$pid" 2>/dev/null || true; done
}
for ns in "${NAMESPACES[@]}"; do
    ip netns list 2>/dev/null | grep -qw "^$ns" || continue
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    ((${#pids[@]})) || continue
    stop_pids TERM "${pids[@]}"
    for _ in $(seq 1 100); do  # up to 10 s
        mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
        ((${#pids[@]})) || break
        sleep 0.1
    done
    if ((${#pids[@]})); then
        echo "stop_two_nodes: $ns: ${pids[*]} ignored SIGTERM for 10 s; sending SIGKILL" >&2
        stop_pids KILL "${pids[@]}"
    fi
done
pidf=$STATE/run/munged.pid
if [[ -s $pidf ]]; then
    pid=$(<"$pidf")
    if [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == munged ]]; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
        [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidf"
fi
for ns in "${NAMESPACES[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
done
echo "stop_two_nodes: stopped the cluster of $STATE" >&2
