#!/bin/bash
# Start a single-node Slurm for the test suite (and for trying the launchers on one box), then wait until the node
# is idle. Idempotent: a cluster this script started earlier and that still answers is reused.
#
#   tests/slurm/start_slurm.sh            # install when missing, start, print the variables to use
#   eval "$(tests/slurm/start_slurm.sh --env)"   # same, and export SLURM_CONF in this shell
#   tests/slurm/stop_slurm.sh             # stop what this script started
#
# Everything lives in one state dir (LANGADAPT_SLURM_DIR, default /tmp/langadapt-slurm): slurm.conf, its own munge
# key and socket, spool, logs and the pid files that stop_slurm.sh uses. Nothing under /etc is changed, so a Slurm the
# machine already runs is left alone; clients find ours through SLURM_CONF.
#
# Facts this follows (Debian 12, Slurm 22.05, containers without systemd): policy-rc.d blocks service starts during
# apt-get install, so the daemons are started by hand; cgroup plugins do not work here (no cgroup.conf,
# proctrack/linuxproc, task/none); batch_sched_delay=0 brings submit-to-finish from about 3 s to about 1 s.
set -euo pipefail

# dpkg needs ldconfig/start-stop-daemon and the daemons live in /usr/sbin, which not every PATH has.
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
STATE=${LANGADAPT_SLURM_DIR:-/tmp/langadapt-slurm}
CTLD_PORT=${LANGADAPT_SLURM_PORT:-6817}          # slurmd listens on CTLD_PORT + 1
WAIT_S=${LANGADAPT_SLURM_WAIT_S:-60}             # seconds to wait for the node to become idle
ENV_ONLY=0
[[ ${1:-} == --env ]] && ENV_ONLY=1
STARTED=0

log() { echo "start_slurm: $*" >&2; }
die() { echo "start_slurm: error: $*" >&2; exit 1; }
# Exit status 3 means "Slurm cannot be installed here" (tests skip on it); anything else non-zero is a real failure.
cannot_install() { echo "start_slurm: cannot install Slurm: $*" >&2; exit 3; }

print_env() {
    if (( ENV_ONLY )); then
        echo "export SLURM_CONF=$STATE/slurm.conf"
        echo "LANGADAPT_SLURM_STARTED=$STARTED  # 1: started now (stop_slurm.sh stops it); 0: already running"
    else
        log "ready: node $(hostname -s) is idle; use it with: export SLURM_CONF=$STATE/slurm.conf"
    fi
}

# A pid file names one of our daemons only while that process is alive and is the program we started.
ours_alive() {  # name
    local pidf="$STATE/run/$1.pid" pid
    [[ -s $pidf ]] || return 1
    pid=$(<"$pidf")
    [[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$1" ]]
}

# shellcheck source=tests/slurm/install_slurm.sh
source "$(dirname "$0")/install_slurm.sh"

write_conf() {
    local node cpus mem_mb
    node=$(hostname -s)
    cpus=$(nproc)
    # RealMemory must not exceed what slurmd measures, or the node is drained: take 90% of MemTotal (MiB).
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$STATE/slurm.conf" <<CONF
# Written by tests/slurm/start_slurm.sh: a one-node cluster for tests. Not for production use.
ClusterName=langadapt
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/run/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
EnforcePartLimits=ALL
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
# Seconds between SIGTERM and SIGKILL when a job is cancelled or requeued (time to write a checkpoint).
KillWait=15
# Finished jobs stay visible to scontrol for this many seconds (there is no slurmdbd/sacct here).
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
}

node_state() { SLURM_CONF=$STATE/slurm.conf sinfo -h -N -o '%t' 2>/dev/null | head -n1; }

wait_idle() {
    local t=0 st
    while (( t < WAIT_S * 2 )); do
        st=$(node_state || true)
        case $st in
            idle | mix | alloc) return 0 ;;
            down* | drain* | fail*)
                # A node left down by an earlier run comes back once slurmd registers again.
                SLURM_CONF=$STATE/slurm.conf scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
        t=$((t + 1))
    done
    die "node not idle after ${WAIT_S}s (state: ${st:-no answer}); logs: $STATE/log/"
}

mkdir -p "$STATE"
chmod 0700 "$STATE"
exec 9>"$STATE/lock"
flock 9  # two test sessions starting at once must not both start daemons

if ours_alive munged && ours_alive slurmctld && ours_alive slurmd \
        && SLURM_CONF=$STATE/slurm.conf timeout 10 scontrol ping >/dev/null 2>&1; then
    wait_idle
    print_env
    exit 0
fi
# Something of ours is half up (a crash, a reboot of the container): stop our leftovers and start clean.
"$(dirname "$0")/stop_slurm.sh" >/dev/null 2>&1 || true

install_packages
mkdir -p "$STATE"/{run,log,ctld,slurmd}
write_conf

# munge: a private key and socket, so a system munged (if any) is neither needed nor touched.
[[ -s $STATE/munge.key ]] || dd if=/dev/urandom of="$STATE/munge.key" bs=1024 count=1 status=none
chmod 0600 "$STATE/munge.key"
# Daemons get no inherited descriptors: not the lock (fd 9, or the next start would wait forever) and not the
# caller's stdout/stderr (a caller reading them through a pipe would never see end-of-file).
/usr/sbin/munged --force --socket="$STATE/run/munge.socket" --key-file="$STATE/munge.key" \
    --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munged.seed" \
    9>&- </dev/null >>"$STATE/log/start.log" 2>&1 || die "munged did not start; see $STATE/log/munged.log"

export SLURM_CONF=$STATE/slurm.conf
STARTED=1
# -i: ignore state saved by a previous run of this test cluster (old jobs), so every start is clean.
/usr/sbin/slurmctld -i 9>&- </dev/null >>"$STATE/log/start.log" 2>&1 || die "slurmctld did not start; see $STATE/log/slurmctld.log"
/usr/sbin/slurmd 9>&- </dev/null >>"$STATE/log/start.log" 2>&1 || die "slurmd did not start; see $STATE/log/slurmd.log"
wait_idle
print_env
