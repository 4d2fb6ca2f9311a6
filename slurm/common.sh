# shellcheck shell=bash
# Shared by every launcher in slurm/ (sourced, never run): checks, banner, topology, the torchrun invocation and
# preemption handling. A launcher checks its required variables, sets the rest (${VAR:-default}), checks paths
# (la_check_path), prints the banner (la_banner), fills ARGS (opt, bool_opt) and runs (la_run_torch, la_exec).
#
# Variables every launcher understands:
#   PYTHON            interpreter (default: .venv/bin/python of this checkout, else python3)
#   NPROC_PER_NODE    processes per node; default derived: GPUs Slurm gave this job, else CUDA_VISIBLE_DEVICES,
#                     else nvidia-smi, else 1 (CPU)
#   MASTER_PORT       rendezvous port; default 29500 + SLURM_JOB_ID % 1000, so jobs sharing a node do not collide
#   TIMINGS_DIR       when set, each step writes <STEP_NAME>.seconds there (pipeline.sh builds timings.json from it)
#   STEP_NAME         label of this step in logs and timings (pipeline.sh sets it; default: the launcher's name)
#   LANGADAPT_DRY_RUN when set to a file, commands are appended to it (one shell-quoted line each) instead of run;
#                     checks and the banner still happen (tests use it to parse every flag a launcher passes)

# The checkout this file belongs to. Launchers set LANGADAPT_ROOT before sourcing us.
: "${LANGADAPT_ROOT:?set LANGADAPT_ROOT to the langadapt checkout before sourcing slurm/common.sh}"
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $LANGADAPT_ROOT/.venv/bin/python ]]; then PYTHON=$LANGADAPT_ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
STEP_NAME=${STEP_NAME:-${LANGADAPT_LAUNCHER:-step}}
ARGS=()
LA_EXTRA=("$@")  # the launcher's own arguments (sourcing without arguments keeps them): forwarded to its script
LA_CHILD=
LA_START=$SECONDS

# Exit-status contract (README): 0 done, 2 bad input, 75 preempted (requeued), 1 internal error. A launcher's
# required-variable checks (${VAR:?message}) end the shell with status 1; until the banner starts, that can only be
# such a check (or another input check), so it leaves with 2 instead.
LA_READY=
trap 'la_rc=$?; if ((la_rc == 1)) && [[ -z $LA_READY ]]; then exit 2; fi' EXIT

la_log() { echo "[$(date +%H:%M:%S)] ${STEP_NAME}: $*" >&2; }
la_die() { echo "error: ${STEP_NAME}: $*" >&2; exit 2; }

# opt --flag VALUE: append "--flag VALUE" to ARGS unless VALUE is empty (unset variables mean "script default").
opt() {
    [[ -n ${2:-} ]] && ARGS+=("$1" "$2")
    return 0
}

# bool_opt --flag VALUE: a boolean flag; true/1/yes appends "--flag", false/0/no appends "--flag False", empty nothing.
bool_opt() {
    case ${2:-} in
        "") ;;
        true | True | 1 | yes) ARGS+=("$1") ;;
        false | False | 0 | no) ARGS+=("$1" False) ;;
        *) la_die "$1 takes true or false, got '$2'" ;;
    esac
    return 0
}

# Path checks happen here, in seconds, not an hour into the job. Usage: la_check_path VAR file|dir|exists
# Comma-separated values (lists of folders/adapters) are checked item by item; "path:weight" items (dataset mixes)
# are checked without the weight.
la_check_path() {
    local var=$1 kind=$2 value=${!1:-} item path items=()
    [[ -n $value ]] || return 0
    IFS=',' read -r -a items <<<"$value"
    for item in "${items[@]}"; do
        path=$item
        [[ ! -e $path && $path == *:* ]] && path=${path%:*}
        case $kind in
            file) [[ -f $path ]] || la_die "$var=$value: $path is not a file" ;;
            dir) [[ -d $path ]] || la_die "$var=$value: $path is not a folder" ;;
            *) [[ -e $path ]] || la_die "$var=$value: $path does not exist" ;;
        esac
    done
}

# GPUs on this node, derived (never typed twice): what Slurm gave us, else what CUDA shows, else none.
la_gpus_on_node() {
    if [[ -n ${SLURM_GPUS_ON_NODE:-} ]]; then
        echo "$SLURM_GPUS_ON_NODE"
    elif [[ -n ${CUDA_VISIBLE_DEVICES:-} && ${CUDA_VISIBLE_DEVICES} != -1 ]]; then
        awk -F, '{print NF}' <<<"$CUDA_VISIBLE_DEVICES"
    elif command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true
    else
        echo 0
    fi
}

la_topology() {
    NNODES=${SLURM_NNODES:-1}
    GPUS_ON_NODE=$(la_gpus_on_node)
    GPUS_ON_NODE=${GPUS_ON_NODE:-0}
    if [[ -z ${NPROC_PER_NODE:-} ]]; then
        if ((GPUS_ON_NODE > 0)); then NPROC_PER_NODE=$GPUS_ON_NODE; else NPROC_PER_NODE=1; fi
    fi
    if [[ -n ${SLURM_JOB_NODELIST:-} ]]; then
        # The first host, without `| head`: under pipefail, head closing the pipe early can kill scontrol with
        # SIGPIPE (exit 141) and the whole launcher with it.
        local hosts
        hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
        MASTER_ADDR=${hosts%%$'\n'*}
    else
        MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
    fi
    MASTER_PORT=${MASTER_PORT:-$((29500 + ${SLURM_JOB_ID:-0} % 1000))}
    # CPU threads per process: the job's CPUs split over its processes (torch would otherwise start one per core
    # per process and oversubscribe the node).
    if [[ -z ${OMP_NUM_THREADS:-} ]]; then
        local cpus=${SLURM_CPUS_PER_TASK:-$(nproc)}
        OMP_NUM_THREADS=$((cpus / NPROC_PER_NODE > 0 ? cpus / NPROC_PER_NODE : 1))
        export OMP_NUM_THREADS
    fi
    export MASTER_ADDR MASTER_PORT
}

# The banner: where we run, the restart count (a requeued job says so), and every resolved setting.
# Usage: la_banner VAR... (names of the launcher's variables).
la_banner() {
    LA_READY=1
    la_topology
    {
        echo "=== langadapt ${STEP_NAME} ($(basename "${LANGADAPT_LAUNCHER:-$0}")) on $(hostname -s) at $(date '+%F %T')"
        echo "slurm: job=${SLURM_JOB_ID:-none} SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}" \
            "nodes=${NNODES} nodelist=${SLURM_JOB_NODELIST:-local} cpus_per_task=${SLURM_CPUS_PER_TASK:-unset}"
        echo "topology: gpus_on_node=${GPUS_ON_NODE} NPROC_PER_NODE=${NPROC_PER_NODE}" \
            "MASTER_ADDR=${MASTER_ADDR} MASTER_PORT=${MASTER_PORT} OMP_NUM_THREADS=${OMP_NUM_THREADS}"
        echo "checkout: ${LANGADAPT_ROOT} ($(git -C "$LANGADAPT_ROOT" rev-parse --short HEAD 2>/dev/null || echo no git))"
        echo "PYTHON=${PYTHON}"
        local v
        for v in "$@"; do echo "${v}=${!v:-(script default)}"; done
        [[ ${#LA_EXTRA[@]} -gt 0 ]] && echo "extra args: ${LA_EXTRA[*]}"
        echo "==="
    } >&2
    command -v "$PYTHON" >/dev/null || la_die "PYTHON=$PYTHON is not an executable; set PYTHON or run make setup"
}

# Preemption: Slurm sends SIGUSR1 to this shell (#SBATCH --signal=B:USR1@<s>) before the time limit or a preemption.
# LA_PREEMPTION says what then happens (a launcher sets it after sourcing us):
#   requeue (default; inference): requeue the job at once; Slurm stops its processes (SIGTERM, SIGKILL after
#           KillWait) and starts it again with SLURM_RESTART_COUNT+1; the script skips the work already written.
#   forward (training): pass SIGUSR1 on to the training processes of the running step, on every node (scancel
#           without --batch signals every process of the job's steps but not this shell). torchrun ignores it (see
#           la_run_torch), the training processes save a checkpoint at the next optimizer step and exit with
#           LA_PREEMPTED_EXIT (langadapt.training.PREEMPTED_EXIT_CODE); then la_exec requeues, and the restarted job
#           resumes from that step. At most one step of work is lost, not SAVE_STEPS.
LA_PREEMPTION=${LA_PREEMPTION:-requeue}
LA_PREEMPTED_EXIT=75
LA_SIGNALLED=

la_requeue() {
    la_log "requeueing job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0} -> $((${SLURM_RESTART_COUNT:-0} + 1)));" \
        "it resumes from its last checkpoint"
    scontrol requeue "$SLURM_JOB_ID"
}

la_on_usr1() {
    if [[ -z ${SLURM_JOB_ID:-} ]]; then
        la_log "SIGUSR1 outside Slurm: nothing to requeue, continuing"
    elif [[ $LA_PREEMPTION == forward && -n $LA_CHILD ]]; then
        LA_SIGNALLED=1
        la_log "SIGUSR1 (time limit or preemption ahead): forwarding it to the training processes; they save a" \
            "checkpoint at the next step and exit, then the job requeues"
        scancel --signal=USR1 "$SLURM_JOB_ID" || la_log "scancel --signal=USR1 failed; the job will end at its limit"
    else
        la_log "SIGUSR1 (time limit or preemption ahead)"
        la_requeue || la_log "scontrol requeue failed; the job will end at its time limit"
    fi
}

# Run one command of the step. Under Slurm it runs in the background so that bash can act on SIGUSR1 at once
# (a trap waits for the foreground command to end, which would be too late). On one box it runs in the
# foreground, so that Ctrl-C reaches it (background commands of a script ignore SIGINT).
la_exec() {
    if [[ -n ${LANGADAPT_DRY_RUN:-} ]]; then
        printf '%q ' "$@" >>"$LANGADAPT_DRY_RUN"
        echo >>"$LANGADAPT_DRY_RUN"
        return 0
    fi
    la_log "running: $*"
    if [[ -z ${SLURM_JOB_ID:-} ]]; then
        "$@"
        return
    fi
    "$@" &
    LA_CHILD=$!
    local rc
    while :; do
        rc=0
        wait "$LA_CHILD" || rc=$?
        # wait returns >128 when a trapped signal interrupted it; the child is then still running.
        if ((rc > 128)) && kill -0 "$LA_CHILD" 2>/dev/null; then continue; fi
        break
    done
    LA_CHILD=
    # A training step stopped for preemption (its own exit code; through srun + torchrun any failure after the
    # forwarded signal): its checkpoint is saved, so requeue; the restarted job resumes from it.
    if ((rc == LA_PREEMPTED_EXIT)) || [[ -n $LA_SIGNALLED && $rc != 0 ]]; then
        if la_requeue; then exit 0; fi
        la_log "scontrol requeue failed"
    fi
    return "$rc"
}
trap la_on_usr1 USR1

# Run a Python script of this checkout with ARGS and the launcher's extra "$@": under Slurm through
# srun + torchrun (one torchrun per node, NPROC_PER_NODE processes each), on one box with plain python
# (or torchrun --standalone when NPROC_PER_NODE > 1). Usage: la_run_torch script.py
la_run_torch() {
    local script=$LANGADAPT_ROOT/$1
    if [[ -n ${SLURM_JOB_ID:-} ]]; then
        # srun does not inherit --cpus-per-task from sbatch since Slurm 22.05: pass it, or torchrun gets one core.
        local srun=(srun --nodes="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1)
        [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && srun+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
        # Several nodes write into the one job log: --label starts each line with its node's index in the node list
        # ("0: " is MASTER_ADDR's node), so each node's lines can be told apart (grep '^ *1: ' for the second node).
        ((NNODES > 1)) && srun+=(--label)
        # torchrun itself ignores SIGUSR1 (an ignored signal stays ignored across exec; by default USR1 would kill
        # it): only its training processes, which install their own handler, act on a forwarded warning.
        la_exec "${srun[@]}" bash -c 'trap "" USR1; exec "$@"' la-torchrun \
            "$PYTHON" -m torch.distributed.run --nnodes="$NNODES" \
            --nproc_per_node="$NPROC_PER_NODE" --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d \
            --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" "$script" "${ARGS[@]}" "${LA_EXTRA[@]}"
    elif ((NPROC_PER_NODE > 1)); then
        la_exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NPROC_PER_NODE" \
            "$script" "${ARGS[@]}" "${LA_EXTRA[@]}"
    else
        la_exec "$PYTHON" "$script" "${ARGS[@]}" "${LA_EXTRA[@]}"
    fi
}

# Run a single-process Python script of this checkout with ARGS (no extra args: for the secondary steps of a
# launcher, e.g. scoring after generation). Usage: la_run_python script.py
la_run_python() {
    la_exec "$PYTHON" "$LANGADAPT_ROOT/$1" "${ARGS[@]}"
}

# Record this step's wall time (seconds) for the pipeline's timings.json, and say how long it took.
la_done() {
    local secs=$((SECONDS - LA_START))
    if [[ -n ${TIMINGS_DIR:-} && -z ${LANGADAPT_DRY_RUN:-} ]]; then
        mkdir -p "$TIMINGS_DIR"
        echo "$secs" >"$TIMINGS_DIR/$STEP_NAME.seconds"
    fi
    la_log "done in ${secs}s"
}

# The TrainingArguments flags pretrain.sbatch and sft.sbatch share, from their variables (same names in upper case).
la_training_args() {
    # Empty variables pass nothing: the script's own default (langadapt/args.py) holds, so bash and python give the
    # same run. Empty PRECISION: the script turns bf16 on when the GPU has it.
    case ${PRECISION:-} in
        "") ;;
        bf16) ARGS+=(--bf16) ;;
        fp16) ARGS+=(--fp16 --bf16 False) ;;
        fp32) ARGS+=(--bf16 False) ;;
        *) la_die "PRECISION must be bf16, fp16 or fp32, got '$PRECISION'" ;;
    esac
    opt --per_device_train_batch_size "${PER_DEVICE_TRAIN_BATCH_SIZE:-}"
    opt --per_device_eval_batch_size "${PER_DEVICE_EVAL_BATCH_SIZE:-}"
    opt --gradient_accumulation_steps "${GRADIENT_ACCUMULATION_STEPS:-}"
    opt --learning_rate "${LEARNING_RATE:-}"
    opt --num_train_epochs "${NUM_TRAIN_EPOCHS:-}"
    opt --max_steps "${MAX_STEPS:-}"
    opt --warmup_steps "${WARMUP_STEPS:-}"
    opt --lr_scheduler_type "${LR_SCHEDULER_TYPE:-}"
    opt --weight_decay "${WEIGHT_DECAY:-}"
    bool_opt --activation_checkpointing "${ACTIVATION_CHECKPOINTING:-}"  # transformers 5 name of gradient_checkpointing
    opt --deepspeed "${DEEPSPEED_CONFIG:-}"
    opt --seed "${SEED:-}"
    opt --logging_steps "${LOGGING_STEPS:-}"
    opt --eval_strategy "${EVAL_STRATEGY:-}"
    [[ ${EVAL_STRATEGY:-} == no ]] || opt --eval_steps "${EVAL_STEPS:-}"
    opt --save_steps "${SAVE_STEPS:-}"
    opt --save_total_limit "${SAVE_TOTAL_LIMIT:-}"
    opt --report_to "${REPORT_TO:-}"
}
