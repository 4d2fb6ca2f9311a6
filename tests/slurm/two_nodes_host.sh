#!/bin/bash
# Run a command as one host of the two-node test cluster (tests/slurm/start_two_nodes.sh): in that host's network
# namespace, with its own host name (UTS namespace) and the cluster's hosts file over /etc/hosts (a private mount
# namespace), so the host names of the other nodes resolve there, as on a real cluster. The machine's /etc is never
# changed. Usage: two_nodes_host.sh DIR HOST COMMAND... (HOST: la2ctl, la2n1 or la2n2). Used to start slurmctld and
# each slurmd (and to restart a slurmd that a test killed); everything they start inherits the host.
set -euo pipefail
STATE=$1
HOST=$2
shift 2
TAG=$(<"$STATE/tag")
case $HOST in
    la2ctl) ns=la2-$TAG-ctl ;;
    la2n*) ns=la2-$TAG-${HOST#la2} ;;
    *) echo "two_nodes_host: unknown host $HOST" >&2; exit 2 ;;
esac
export SLURM_CONF=$STATE/slurm.conf
# shellcheck disable=SC2016  # $1/$2 are expanded by the inner bash, on purpose
exec nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private \
    bash -c 'mount --bind "$1" /etc/hosts && hostname "$2" && shift 2 && exec "$@"' two-nodes-host \
    "$STATE/hosts" "$HOST" "$@"
