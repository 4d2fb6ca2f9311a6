#!/bin/bash
# Start a two-node Slurm on one machine for the multi-node tests: slurmctld and two slurmd, each in its own network
# namespace with its own address and hostname, one munged shared by all three. Then wait until both nodes are idle.
#
#   tests/slurm/start_two_nodes.sh DIR     # start; prints the variables to use (CTL_NETNS, SLURM_CONF, ...)
#   SLURM_CONF=DIR/slurm.conf nsenter --net=/run/netns/"$CTL_NETNS" sbatch --nodes=2 ...  # clients: controller's netns
#   tests/slurm/stop_two_nodes.sh DIR      # stop it and remove the namespaces (also after a half-done start)
#
# DIR (created, must be new or empty) holds everything: slurm.conf, a munge key and socket, spool, logs, pid files.
# The namespaces are la2-<tag>-ctl (a bridge, 10.213.0.1, host la2ctl), la2-<tag>-n1 (10.213.0.2, host la2n1) and
# la2-<tag>-n2 (10.213.0.3, host la2n2), tag = a few characters unique to DIR. The addresses exist only inside these
# namespaces, so neither the machine's network nor a single-node test cluster (tests/slurm/start_slurm.sh, ports on
# 127.0.0.1) can collide with them; two of these clusters can run at once. Each daemon runs as its host through
# tests/slurm/two_nodes_host.sh (network namespace + own host name + DIR/hosts over /etc/hosts in a private mount
# namespace), so host names resolve as on a real cluster and the machine's /etc is never changed.
# The file system is shared by all nodes, as a cluster's shared output folder is.
#
# Exit status 3: this machine cannot run it (no root, no network namespaces, Slurm not installable); the tests
# skip on it unless LANGADAPT_REQUIRE_SLURM=1.
set -euo pipefail

export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
STATE=${1:?usage: start_two_nodes.sh DIR (a new folder for the cluster state)}
WAIT_S=${LANGADAPT_SLURM_WAIT_S:-60}   # seconds to wait for both nodes to become idle
SUBNET=10.213.0                        # /24 inside our namespaces only
NODES=(la2n1 la2n2)
HERE=$(cd "$(dirname "$0")" && pwd)

log() { echo "start_two_nodes: $*" >&2; }
die() { echo "start_two_nodes: error: $*" >&2; exit 1; }
cannot_install() { echo "start_two_nodes: cannot run a two-node cluster here: $*" >&2; exit 3; }

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
[[ -z $(ls -A "$STATE") ]] || die "$STATE is not empty; give a new folder (stop_two_nodes.sh $STATE cleans an old one)"
chmod 0700 "$STATE"
# Namespace names tied to DIR, so stop_two_nodes.sh DIR finds them again.
TAG=$(printf '%s' "$STATE" | sha1sum | cut -c1-6)
CTL_NS=la2-$TAG-ctl
echo "$TAG" >"$STATE/tag"

[[ $(id -u) -eq 0 ]] || cannot_install "not root (network namespaces and the daemons need root)"
# shellcheck source=tests/slurm/install_slurm.sh
source "$HERE/install_slurm.sh"
install_packages
install_for ip iproute2
install_for nsenter util-linux  # also unshare

# --- network: a bridge in the controller's namespace, one veth pair per node --------------------------------------
ip netns add "$CTL_NS" 2>"$STATE/netns.err" || cannot_install "ip netns add failed: $(cat "$STATE/netns.err")"
hosts="127.0.0.1 localhost
$SUBNET.1 la2ctl"
for i in "${!NODES[@]}"; do hosts+=$'\n'"$SUBNET.$((i + 2)) ${NODES[$i]}"; done
echo "$hosts" >"$STATE/hosts"
ip -n "$CTL_NS" link set lo up
ip -n "$CTL_NS" link add br0 type bridge
ip -n "$CTL_NS" addr add "$SUBNET.1/24" dev br0
ip -n "$CTL_NS" link set br0 up
for i in "${!NODES[@]}"; do
    ns=la2-$TAG-n$((i + 1))
    ip netns add "$ns"
    ip link add "v$((i + 1))" netns "$CTL_NS" type veth peer name eth0 netns "$ns"
    ip -n "$CTL_NS" link set "v$((i + 1))" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$SUBNET.$((i + 2))/24" dev eth0
    ip -n "$ns" link set eth0 up
done

# --- slurm.conf -------------------------------------------------------------------------------------------------
mkdir -p "$STATE"/{run,log,ctld,slurmd}
cpus=$(nproc)
{
    cat <<CONF
# Written by tests/slurm/start_two_nodes.sh: a two-node test cluster in network namespaces. Not for production use.
ClusterName=la2$TAG
SlurmctldHost=la2ctl($SUBNET.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/run/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
# Both slurmd see the same cores; the configured CPUs are the truth (no check against the hardware).
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
# A node that stops answering is declared DOWN after this many seconds (the killed-node test waits on it).
SlurmdTimeout=10
# Seconds between SIGTERM and SIGKILL when a job is cancelled or requeued (time to write a checkpoint).
KillWait=15
# Finished jobs stay visible to scontrol for this many seconds (there is no slurmdbd/sacct here).
MinJobAge=600
CONF
    for i in "${!NODES[@]}"; do
        echo "NodeName=${NODES[$i]} NodeAddr=$SUBNET.$((i + 2)) NodeHostname=${NODES[$i]} CPUs=$cpus RealMemory=1024 State=UNKNOWN"
    done
    echo "PartitionName=two Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
} >"$STATE/slurm.conf"
export SLURM_CONF=$STATE/slurm.conf

# --- daemons: no inherited descriptors (a caller reading our output through a pipe must see end-of-file) ---------
dd if=/dev/urandom of="$STATE/munge.key" bs=1024 count=1 status=none
chmod 0600 "$STATE/munge.key"
/usr/sbin/munged --force --socket="$STATE/run/munge.socket" --key-file="$STATE/munge.key" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munged.seed" \
    </dev/null >>"$STATE/log/start.log" 2>&1 || die "munged did not start; see $STATE/log/munged.log"
"$HERE/two_nodes_host.sh" "$STATE" la2ctl /usr/sbin/slurmctld -i </dev/null >>"$STATE/log/start.log" 2>&1 \
    || die "slurmctld did not start; see $STATE/log/slurmctld.log"
for i in "${!NODES[@]}"; do
    mkdir -p "$STATE/slurmd/${NODES[$i]}"
    "$HERE/two_nodes_host.sh" "$STATE" "${NODES[$i]}" /usr/sbin/slurmd -N "${NODES[$i]}" </dev/null >>"$STATE/log/start.log" 2>&1 \
        || die "slurmd ${NODES[$i]} did not start; see $STATE/log/slurmd-${NODES[$i]}.log"
done

# --- wait until both nodes are idle -----------------------------------------------------------------------------
t=0
while :; do
    states=$(nsenter --net="/run/netns/$CTL_NS" sinfo -h -N -o '%t' 2>/dev/null | sort | uniq -c | xargs || true)
    [[ $states == "2 idle" ]] && break
    ((t < WAIT_S * 2)) || die "nodes not idle after ${WAIT_S}s (states: ${states:-no answer}); logs: $STATE/log/"
    sleep 0.5
    t=$((t + 1))
done
echo "CTL_NETNS=$CTL_NS"
echo "NODE_NETNS=la2-$TAG-n1 la2-$TAG-n2"
echo "NODES=${NODES[*]}"
echo "SLURM_CONF=$SLURM_CONF"
log "ready: nodes ${NODES[*]} idle; use: SLURM_CONF=$SLURM_CONF nsenter --net=/run/netns/$CTL_NS sbatch --nodes=2 ..."
