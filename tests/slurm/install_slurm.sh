# shellcheck shell=bash
# Sourced by tests/slurm/start_slurm.sh and start_two_nodes.sh: install Debian's munge/slurmctld/slurmd/slurm-client
# when missing (apt-get, root), the same way on a developer box and on a clean CI machine.
# Needs: STATE (folder for apt.log), log() and cannot_install() (exit 3: "Slurm cannot be installed here").
SLURM_PACKAGES=(munge slurmctld slurmd slurm-client)

install_packages() {
    local missing=() p
    # Daemons by path: /usr/sbin is not on every PATH (CI runners, sudo-less shells).
    for p in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd; do [[ -x $p ]] || missing+=("$p"); done
    for p in sbatch scontrol sinfo; do command -v "$p" >/dev/null || missing+=("$p"); done
    (( ${#missing[@]} )) || return 0
    log "installing ${SLURM_PACKAGES[*]} (missing: ${missing[*]})"
    command -v apt-get >/dev/null || cannot_install "no apt-get; install ${SLURM_PACKAGES[*]} yourself"
    [[ $(id -u) -eq 0 ]] || cannot_install "not root; run: sudo apt-get install ${SLURM_PACKAGES[*]}"
    local apt=(apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300)
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" "${SLURM_PACKAGES[@]}" >"$STATE/apt.log" 2>&1; then
        log "package not found or install failed; running apt-get update first"
        apt-get update -o DPkg::Lock::Timeout=300 >>"$STATE/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" "${SLURM_PACKAGES[@]}" >>"$STATE/apt.log" 2>&1 \
            || cannot_install "apt-get install ${SLURM_PACKAGES[*]} failed; see $STATE/apt.log"
    fi
}

# install_for COMMAND PACKAGE: apt-get install PACKAGE when COMMAND is missing (e.g. ip from iproute2 on slim images).
install_for() {
    command -v "$1" >/dev/null && return 0
    log "installing $2 (no $1)"
    command -v apt-get >/dev/null || cannot_install "no $1 and no apt-get; install $2 yourself"
    [[ $(id -u) -eq 0 ]] || cannot_install "no $1 and not root; run: sudo apt-get install $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "$2" \
        >>"$STATE/apt.log" 2>&1 || { apt-get update -o DPkg::Lock::Timeout=300 >>"$STATE/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "$2" \
            >>"$STATE/apt.log" 2>&1; } || cannot_install "apt-get install $2 failed; see $STATE/apt.log"
}
