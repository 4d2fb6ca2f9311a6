#!/bin/bash
# Run a recipe: the tokenizer stage, N chained training stages, an evaluation after each, and the final table.
#
#   slurm/pipeline.sh RECIPE.env [VAR=value ...]          # submit the chain to Slurm (sbatch, afterok dependencies)
#   slurm/pipeline.sh --local RECIPE.env [VAR=value ...]  # run the same launchers one after another with bash
#   slurm/pipeline.sh --dry-run RECIPE.env [VAR=value ...]  # print the plan (steps, variables, dependencies) only
#
# VAR=value arguments override the recipe. On Slurm every job gets --dependency=afterok:<ids> and
# --kill-on-invalid-dep=yes (a failed step cancels everything after it), and the job ids are printed. A step whose
# output is complete (its marker file exists) and whose settings (its variables and the settings of the steps it
# depends on, recorded in RUN_DIR/.steps/<step>.settings) are unchanged is skipped, so rerunning a recipe after a
# failure redoes only what is missing. A step whose settings changed is rerun, and so is every step after it that
# depends on it; its old output is moved to RUN_DIR/.superseded/<time>/ (never deleted), and the change is printed.
# A variable with a group prefix that no launcher of that group reads (PT_LEARNIG_RATE) is an error naming the
# closest known one.
#
# ---------------------------------------------------------------------------------------------------------------
# Recipe format: a bash file of variables (sourced; configs/recipes/example.env is a complete one).
#
#   RUN_DIR=outputs/paper            every output of the run goes under this folder (required)
#   BASE_MODEL=models/llama-2-7b     the base model folder (required)
#   STAGES="pt_fa pt_bi sft_bi sft_task"   training stages, in order (required; lowercase names, [a-z0-9_])
#
#   Per stage, with the upper-cased stage name as prefix (stage pt_fa -> PT_FA_...):
#   PT_FA_KIND=pretrain              pretrain (slurm/pretrain.sbatch) or sft (slurm/sft.sbatch) (required)
#   PT_FA_FROM=...                   where the stage starts (default: the previous stage; the first: base):
#                                      base           a new adapter (or full training) on BASE_MODEL
#                                      <stage>        keep training that earlier stage's adapter (PEFT_PATH), as the
#                                                     paper did; for a full-model stage, train on its output
#                                      merged:<stage> merge that stage's adapter into its base first
#                                                     (slurm/merge.sbatch -> RUN_DIR/<stage>_merged), then train a
#                                                     new adapter on the merged model
#   PT_FA_<VAR>=value                any variable of that stage's launcher: PT_FA_DATASET_DIR, PT_FA_TRAINING_MODE,
#                                    PT_FA_LEARNING_RATE, PT_FA_MAX_STEPS, PT_FA_NUM_TRAIN_EPOCHS, PT_FA_BLOCK_SIZE ...
#   PT_FA_SBATCH_ARGS="..."          extra sbatch options for this stage (e.g. "--nodes=4 --time=48:00:00")
#
#   Groups work the same way: TOKENIZER_<VAR> -> slurm/tokenizer.sbatch, EVAL_<VAR> -> slurm/inference.sbatch (every
#   evaluation), MERGE_<VAR> -> slurm/merge.sbatch, EXPORT_<VAR> -> slurm/export.sbatch, REPORT_<VAR> -> slurm/report.sbatch; <GROUP>_SBATCH_ARGS too.
#   TOKENIZER_TRAIN_FILE=data/fa     build a tokenizer first (with TOKENIZER_VOCAB_SIZE) into RUN_DIR/tokenizer ...
#   TOKENIZER_NAME_OR_PATH=dir       ... or use this existing one; with neither, stages use the base model's
#   EVAL_DATA_DIR=data/testset       test sets for every evaluation (default: the bundled ones; none: skip generation)
#   EVAL_PERPLEXITY_FILES=fa.txt,en.txt  held-out text: perplexity after each stage (and of the base model with the
#                                    new tokenizer and the rows the first stage's EMBEDDING_INIT gives, "base_merged")
#   LM_EVAL_TASKS=belebele_pes_Arab,langadapt  also run lm-evaluation-harness (slurm/lm_eval.sbatch) after the base
#                                    model and each stage, into RUN_DIR/lm_eval/<name>/ (default: empty, no lm-eval
#                                    steps; "langadapt" = the EVAL_DATA_DIR test sets as offline lm-eval tasks);
#                                    LM_EVAL_<VAR> -> slurm/lm_eval.sbatch; the summaries join the final table
#   MERGE_FINAL=true                 also merge the last stage into RUN_DIR/<stage>_merged (a deployable model)
#   EXPORT_GGUF=false                true: also export that merged model to GGUF (slurm/export.sbatch ->
#                                    RUN_DIR/<stage>_gguf, f16 and q8_0, for llama.cpp/Ollama); EXPORT_<VAR> too
#   SBATCH_ARGS="-A acct -p gpu"     options for every sbatch (account, partition, QoS: never in the launchers)
#   LOG_DIR=logs                     job logs (<LOG_DIR>/la-<step>-<jobid>.out; --local: <LOG_DIR>/la-<step>.log)
#   Variables the recipe exports (export PYTHON=...) reach every step.
#
# Layout of RUN_DIR (what inference/report.py reads): tokenizer/ (+ tokenizer.addon/), <stage>/ for each stage,
# <stage>_merged/, predictions/{base,<stage>...}/ with scores.json, perplexity/{base,base_merged,<stage>...}/,
# lm_eval/{base,<stage>...}/ (with LM_EVAL_TASKS), scores/comparison.{md,json,png} (rows = base + stages, columns =
# task x language, + lm-eval benchmarks), report.md, timings.json.
# ---------------------------------------------------------------------------------------------------------------
{ # Bash reads this whole block before running it, so editing this file during a run cannot break the run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=slurm
while [[ ${1:-} == --* ]]; do
    case $1 in
        --local) MODE=local ;;
        --dry-run) MODE=dry ;;
        --help | -h) sed -n '2,/^{ # Bash reads/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown option $1 (use --local, --dry-run or --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "error: $*" >&2; exit 2; }
[[ $# -ge 1 ]] || die "usage: slurm/pipeline.sh [--local|--dry-run] RECIPE.env [VAR=value ...]; see configs/recipes/example.env"
RECIPE=$1
shift
[[ -f $RECIPE ]] || die "recipe $RECIPE does not exist; see configs/recipes/example.env for the format"
# shellcheck disable=SC1090  # the recipe is the user's file
source "$RECIPE"
for kv in "$@"; do
    [[ $kv == [A-Za-z_]*=* ]] || die "argument '$kv' is not VAR=value"
    printf -v "${kv%%=*}" '%s' "${kv#*=}"
done

[[ -n ${RUN_DIR:-} ]] \
    || die "set RUN_DIR in the recipe to the folder for all outputs of the run, e.g. RUN_DIR=outputs/paper"
[[ -n ${BASE_MODEL:-} ]] \
    || die "set BASE_MODEL in the recipe to the base model folder, e.g. BASE_MODEL=models/llama-2-7b"
[[ -n ${STAGES:-} ]] \
    || die "set STAGES in the recipe to the training stages in order, space-separated, e.g. pretrain sft"
LOG_DIR=${LOG_DIR:-logs}
MERGE_FINAL=${MERGE_FINAL:-true}
EXPORT_GGUF=${EXPORT_GGUF:-false}
SBATCH_ARGS=${SBATCH_ARGS:-}
EVAL_DATA_DIR=${EVAL_DATA_DIR:-$ROOT/data/testset}
EVAL_PERPLEXITY_FILES=${EVAL_PERPLEXITY_FILES:-}
# Inputs that must exist before anything is submitted (--dry-run only plans: they may be prepared later).
if [[ $MODE != dry ]]; then
    [[ -e $BASE_MODEL ]] || die "BASE_MODEL=$BASE_MODEL does not exist (recipe $RECIPE)"
    [[ $EVAL_DATA_DIR == none || -d $EVAL_DATA_DIR ]] \
        || die "EVAL_DATA_DIR=$EVAL_DATA_DIR is not a folder (none skips generation)"
fi

# ------------------------------------------------------------------------------------------ recipe checks
read -r -a STAGE_LIST <<<"$STAGES"
RESERVED=" base base_merged tokenizer eval merge export report lm_eval "
PREFIXES=(TOKENIZER EVAL MERGE EXPORT REPORT LM_EVAL)
declare -A SEEN=()
for s in "${STAGE_LIST[@]}"; do
    [[ $s =~ ^[a-z][a-z0-9_]*$ ]] || die "stage name '$s' in STAGES: use lowercase letters, digits and _"
    [[ $RESERVED != *" $s "* ]] || die "stage name '$s' is reserved (base, base_merged, tokenizer, eval, merge, export, report, lm_eval)"
    [[ -z ${SEEN[$s]:-} ]] || die "stage '$s' appears twice in STAGES"
    SEEN[$s]=1
    P=${s^^}
    PREFIXES+=("$P")
    kind_var=${P}_KIND
    case ${!kind_var:-} in
        pretrain | sft) ;;
        "") die "set ${kind_var} (pretrain or sft) in the recipe for stage '$s'" ;;
        *) die "${kind_var}=${!kind_var}: must be pretrain or sft" ;;
    esac
    data_var=${P}_DATASET_DIR
    [[ -n ${!data_var:-} ]] || die "set ${data_var} in the recipe: the data of stage '$s'"
done
# A stage may only start from a stage that runs before it.
declare -A BEFORE=()
prev=
for s in "${STAGE_LIST[@]}"; do
    from_var=${s^^}_FROM
    from=${!from_var:-${prev:-base}}
    src=${from#merged:}
    if [[ $from != base && -z ${BEFORE[$src]:-} ]]; then
        die "${from_var}=${from}: stage '$s' starts from '$src', which no earlier stage produces (stages: ${STAGES})"
    fi
    BEFORE[$s]=1
    prev=$s
done
if [[ -n ${TOKENIZER_TRAIN_FILE:-} && -n ${TOKENIZER_NAME_OR_PATH:-} ]]; then
    die "set either TOKENIZER_TRAIN_FILE (build a tokenizer) or TOKENIZER_NAME_OR_PATH (use one), not both"
fi

# Every <PREFIX>_<VAR> must be a variable the group's launcher (or common.sh) reads, or one of the pipeline's own
# keys: a misspelled PT_LEARNIG_RATE would otherwise be ignored and the default used.
launcher_vars() {  # launcher_vars LAUNCHER: the variable names slurm/LAUNCHER.sbatch and common.sh read or set
    grep -ohE '\$\{[A-Z][A-Z0-9_]*|^[[:space:]]*[A-Z][A-Z0-9_]*=' "$ROOT/slurm/$1.sbatch" "$ROOT/slurm/common.sh" \
        | sed -E 's/^\$\{//; s/^[[:space:]]*//; s/=$//' | sort -u
}
closest_name() {  # closest_name NAME CANDIDATE...: the candidate with the smallest edit distance to NAME
    printf '%s\n' "${@:2}" | awk -v w="$1" '
        function dist(a, b,   i, j, la, lb, d, c) {
            la = length(a); lb = length(b)
            for (i = 0; i <= la; i++) d[i, 0] = i
            for (j = 0; j <= lb; j++) d[0, j] = j
            for (i = 1; i <= la; i++) for (j = 1; j <= lb; j++) {
                c = d[i - 1, j - 1] + (substr(a, i, 1) != substr(b, j, 1))
                if (d[i - 1, j] + 1 < c) c = d[i - 1, j] + 1
                if (d[i, j - 1] + 1 < c) c = d[i, j - 1] + 1
                d[i, j] = c
            }
            return d[la, lb]
        }
        { x = dist(w, $0); if (best == "" || x < bestd) { best = $0; bestd = x } }
        END { print best }'
}
check_group_vars() {  # check_group_vars PREFIX LAUNCHER [PIPELINE_KEY...]
    local prefix=$1 launcher=$2 var name other known=()
    mapfile -t known < <(launcher_vars "$launcher")
    known+=(KIND FROM SBATCH_ARGS "${@:3}")
    for var in $(compgen -v "${prefix}_"); do
        for other in "${PREFIXES[@]}"; do  # stage pt_fa's PT_FA_X is not stage pt's FA_X
            if [[ ${#other} -gt ${#prefix} && $other == "${prefix}_"* && $var == "${other}_"* ]]; then continue 2; fi
        done
        name=${var#"${prefix}"_}
        [[ " ${known[*]} " == *" $name "* ]] && continue
        die "$var: slurm/$launcher.sbatch has no variable $name, so it would be ignored; did you mean" \
            "${prefix}_$(closest_name "$name" "${known[@]}")? (recipe $RECIPE)"
    done
}
check_group_vars TOKENIZER tokenizer NAME_OR_PATH
check_group_vars EVAL inference
check_group_vars MERGE merge FINAL
check_group_vars REPORT report
for s in "${STAGE_LIST[@]}"; do
    kind_var=${s^^}_KIND
    check_group_vars "${s^^}" "${!kind_var}"
done

# ------------------------------------------------------------------------------------------ running steps
mkdir -p "$RUN_DIR" "$LOG_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)  # jobs may start in another folder; absolute paths keep them right
TIMINGS_DIR=$RUN_DIR/timings
declare -A JOB=()  # step -> Slurm job id (or "local")
PLAN=()

# Variables of a group for its launcher: <PREFIX>_<VAR> -> VAR, except variables of a longer prefix (stage pt_fa's
# PT_FA_X is not stage pt's FA_X) and the pipeline's own keys.
group_env() {
    local prefix=$1 var name other skip
    for var in $(compgen -v "${prefix}_"); do
        skip=
        for other in "${PREFIXES[@]}"; do
            if [[ ${#other} -gt ${#prefix} && $other == "${prefix}_"* && $var == "${other}_"* ]]; then skip=1; fi
        done
        name=${var#"${prefix}"_}
        case $name in KIND | FROM | SBATCH_ARGS | NAME_OR_PATH | FINAL | GGUF | PATH | HOME | PWD | SHELL | "") skip=1 ;; esac
        [[ -z $skip ]] && printf '%s\0%s\0' "$name" "${!var}"
    done
    return 0
}

# step NAME LAUNCHER "DEPS" [VAR=value ...] [-- GROUP_PREFIX]: run or submit one launcher. The group's recipe
# variables override the VAR=value given here, except those written !VAR=value (the run's layout).
step() {
    local name=$1 launcher=$2 deps=$3
    shift 3
    local assigns=() forced=() group="" dep ids=() sbatch_extra=() kv
    while [[ $# -gt 0 ]]; do
        if [[ $1 == -- ]]; then group=$2; break; fi
        if [[ $1 == !* ]]; then forced+=("${1#!}"); else assigns+=("$1"); fi
        shift
    done
    if [[ -n $group ]]; then
        local gv=()
        mapfile -d '' gv < <(group_env "$group")
        local i
        for ((i = 0; i < ${#gv[@]}; i += 2)); do assigns+=("${gv[i]}=${gv[i + 1]}"); done
        local sb=${group}_SBATCH_ARGS
        read -r -a sbatch_extra <<<"${!sb:-}"
    fi
    assigns+=("${forced[@]}" "STEP_NAME=$name" "TIMINGS_DIR=$TIMINGS_DIR")
    if [[ -n $DONE_MARKER ]]; then
        local marker=$DONE_MARKER outputs=("${DONE_OUTPUTS[@]}")
        DONE_MARKER=
        DONE_OUTPUTS=()
        settings_current "$name" "$launcher" "$deps" "${assigns[@]}"
        if settings_unchanged "$name" "$marker" "${outputs[@]}"; then return 0; fi
    fi
    for dep in $deps; do [[ -n ${JOB[$dep]:-} && ${JOB[$dep]} != "done" ]] && ids+=("${JOB[$dep]}"); done

    case $MODE in
        dry)
            JOB[$name]=planned
            echo "step $name: slurm/$launcher.sbatch after [${deps}]"
            for kv in "${assigns[@]}"; do echo "    $kv"; done
            ;;
        local)
            echo "=== [$(date +%H:%M:%S)] step $name: slurm/$launcher.sbatch (log: $LOG_DIR/la-$name.log)" >&2
            (
                for kv in "${assigns[@]}"; do export "${kv?}"; done
                bash "$ROOT/slurm/$launcher.sbatch"
            ) 2>&1 | tee "$LOG_DIR/la-$name.log" >&2 || die "step $name failed; see $LOG_DIR/la-$name.log"
            JOB[$name]=local
            ;;
        slurm)
            local sbatch_args=(--parsable --export=ALL --kill-on-invalid-dep=yes --job-name="la-$name"
                --output="$LOG_DIR/%x-%j.out")
            local common=()
            read -r -a common <<<"$SBATCH_ARGS"
            ((${#ids[@]})) && sbatch_args+=(--dependency="afterok:$(IFS=:; echo "${ids[*]}")")
            local id
            id=$(
                for kv in "${assigns[@]}"; do export "${kv?}"; done
                sbatch "${sbatch_args[@]}" "${common[@]}" "${sbatch_extra[@]}" "$ROOT/slurm/$launcher.sbatch"
            ) || die "sbatch failed for step $name (jobs already submitted: ${PLAN[*]:-none}; scancel them)"
            id=${id%%;*}
            JOB[$name]=$id
            PLAN+=("$name=$id")
            local after=
            ((${#ids[@]})) && after="afterok:$(IFS=:; echo "${ids[*]}")"
            printf '%-24s %-10s %s\n' "$name" "$id" "$after"
            ;;
    esac
}

# Skipping finished steps, keyed on settings. `done_when MARKER [OUTPUT...]` before `step` makes that step skip
# itself when MARKER exists and RUN_DIR/.steps/<step>.settings (its variables, and the settings of the steps it
# depends on) is unchanged and not newer than MARKER (a later submission with these settings did not finish). When
# the settings changed, the OUTPUT folders (default: MARKER's folder) are moved to RUN_DIR/.superseded/<time>/.
STEPS_DIR=$RUN_DIR/.steps
SUPERSEDED_DIR=$RUN_DIR/.superseded/$(date +%Y%m%d-%H%M%S)
DONE_MARKER=
DONE_OUTPUTS=()
declare -A SETTINGS=()  # step -> its settings text (variables + dependencies' settings digests)
declare -A DIGEST=()    # step -> digest of its settings
done_when() {
    DONE_MARKER=$1
    DONE_OUTPUTS=("${@:2}")
    [[ ${#DONE_OUTPUTS[@]} -gt 0 ]] || DONE_OUTPUTS=("$(dirname "$1")")
}
settings_current() {  # settings_current STEP LAUNCHER "DEPS" ASSIGN...: SETTINGS[STEP], DIGEST[STEP]
    local name=$1 launcher=$2 deps=$3 dep text
    text="launcher=$launcher"$'\n'"$(printf '%s\n' "${@:4}" | grep -v '^STEP_NAME=\|^TIMINGS_DIR=' | LC_ALL=C sort)"
    for dep in $deps; do [[ -n ${DIGEST[$dep]:-} ]] && text+=$'\n'"after $dep: ${DIGEST[$dep]}"; done
    SETTINGS[$name]=$text
    DIGEST[$name]=$(printf '%s\n' "$text" | cksum | cut -d' ' -f1)
}
settings_unchanged() {  # settings_unchanged STEP MARKER OUTPUT...: 0 = skip the step; else record and go on
    local name=$1 marker=$2 file=$STEPS_DIR/$1.settings out changed
    if [[ -e $marker && ! -f $file ]]; then  # finished before settings were recorded: take them as they are now
        echo "step $name: already complete ($marker exists; no settings record, so today's are assumed: delete" \
            "$(dirname "$marker") to redo it), skipped" >&2
        if [[ $MODE != dry ]]; then
            mkdir -p "$STEPS_DIR"
            printf '%s\n' "${SETTINGS[$name]}" >"$file"
            touch -r "$marker" "$file"
        fi
        JOB[$name]="done"
        return 0
    fi
    if [[ -e $marker && -f $file ]] && [[ $(cat "$file") == "${SETTINGS[$name]}" ]] \
        && ! [[ $file -nt $marker ]]; then
        echo "step $name: already complete with the same settings ($marker), skipped" >&2
        JOB[$name]="done"
        return 0
    fi
    if [[ -f $file && $(cat "$file") != "${SETTINGS[$name]}" ]]; then
        changed=$({ diff <(cat "$file") <(printf '%s\n' "${SETTINGS[$name]}") || true; } | sed -n 's/^[<>] //p' \
            | sed 's/=.*//; s/: .*//' | sort -u | paste -sd, -)
        if [[ $MODE == dry ]]; then
            echo "step $name: settings changed since it ran (${changed}): would rerun" >&2
            return 1
        fi
        echo "step $name: settings changed since it ran (${changed}): rerunning" >&2
        for out in "$@"; do
            [[ $out == "$marker" ]] && continue
            if [[ -e $out ]]; then
                mkdir -p "$SUPERSEDED_DIR"
                mv "$out" "$SUPERSEDED_DIR/$name.$(basename "$out")"
                echo "step $name: its earlier output $out moved to $SUPERSEDED_DIR/$name.$(basename "$out")" >&2
            fi
        done
    fi
    [[ $MODE == dry ]] && return 1
    mkdir -p "$STEPS_DIR"
    printf '%s\n' "${SETTINGS[$name]}" >"$file"
    return 1
}

[[ $MODE == slurm ]] && printf '%-24s %-10s %s\n' step job_id dependency

# 1. Tokenizer.
TOK=${TOKENIZER_NAME_OR_PATH:-}
TOK_DEP=
if [[ -n ${TOKENIZER_TRAIN_FILE:-} ]]; then
    TOK=$RUN_DIR/tokenizer
    TOK_DEP=tokenizer
    done_when "$TOK/langadapt_tokenizer.json" "$TOK" "$RUN_DIR/tokenizer.addon"
    step tokenizer tokenizer "" "BASE_TOKENIZER=$BASE_MODEL" "!OUTPUT_DIR=$TOK" "!EXTRA_DIR=$RUN_DIR/tokenizer.addon" \
            -- TOKENIZER
fi

# 2. Evaluations of the base model: its own tokenizer; and (perplexity only) with the new tokenizer + new rows.
EVALS=()
COMPARE="base=$RUN_DIR/predictions/base"
eval_step() {  # eval_step NAME "DEPS" MODEL ADAPTER [TOKENIZER]
    local name=$1 deps=$2 model=$3 adapter=$4 tok=${5:-}
    local marker=$RUN_DIR/predictions/$name/scores.json
    [[ $EVAL_DATA_DIR == none ]] && marker=$RUN_DIR/perplexity/$name/perplexity.json
    [[ $EVAL_DATA_DIR == none && -z $EVAL_PERPLEXITY_FILES ]] && return 0
    EVALS+=("eval_$name")
    done_when "$marker" "$RUN_DIR/predictions/$name" "$RUN_DIR/perplexity/$name"
    local ppl=()
    [[ -n $EVAL_PERPLEXITY_FILES ]] && ppl=("!PERPLEXITY_DIR=$RUN_DIR/perplexity/$name" "!PERPLEXITY_NAME=$name")
    step "eval_$name" inference "$deps" "!BASE_MODEL=$model" "!LORA_MODEL=$adapter" "TOKENIZER_PATH=$tok" \
        "DATA_DIR=$EVAL_DATA_DIR" "!PREDICTIONS_DIR=$RUN_DIR/predictions/$name" "${ppl[@]}" -- EVAL
}
# lm-evaluation-harness after the same evaluations, when the recipe names tasks (LM_EVAL_TASKS).
LM_EVAL=
lm_eval_step() {  # lm_eval_step NAME "DEPS" MODEL ADAPTER
    local name=$1 deps=$2 model=$3 adapter=$4
    [[ -z ${LM_EVAL_TASKS:-} ]] && return 0
    EVALS+=("lm_eval_$name")
    LM_EVAL+="${LM_EVAL:+ }$name=$RUN_DIR/lm_eval/$name"
    is_done "lm_eval_$name" "$RUN_DIR/lm_eval/$name/lm_eval_summary.json" && return 0
    step "lm_eval_$name" lm_eval "$deps" "!BASE_MODEL=$model" "!LORA_MODEL=$adapter" "DATA_DIR=$EVAL_DATA_DIR" \
        "!OUTPUT_DIR=$RUN_DIR/lm_eval/$name" -- LM_EVAL
}
eval_step base "" "$BASE_MODEL" ""
lm_eval_step base "" "$BASE_MODEL" ""
if [[ -n $TOK && -n $EVAL_PERPLEXITY_FILES ]]; then
    EVALS+=(eval_base_merged)
    done_when "$RUN_DIR/perplexity/base_merged/perplexity.json"
    # The base model with the rows the first stage starts from: that stage's --embedding_init.
    init_var=${STAGE_LIST[0]^^}_EMBEDDING_INIT
    step eval_base_merged inference "$TOK_DEP" "!BASE_MODEL=$BASE_MODEL" "!TOKENIZER_PATH=$TOK" "!DATA_DIR=none" \
            "!PERPLEXITY_DIR=$RUN_DIR/perplexity/base_merged" "!PERPLEXITY_NAME=base_merged" \
            "!EMBEDDING_INIT=${!init_var:-}" -- EVAL
fi

# 3. Training stages, each followed by its evaluation.
declare -A MODEL=() ADAPTER=()  # stage -> the model folder it applies to / its adapter folder (empty: full model)
merge_step() {  # merge_step STAGE: RUN_DIR/<stage>_merged from the stage's adapter (once)
    local s=$1
    [[ -n ${JOB[merge_$s]:-} ]] && return 0
    done_when "$RUN_DIR/${s}_merged/merge_report.json"
    step "merge_$s" merge "$s" "!BASE_MODEL=${MODEL[$s]}" "!LORA_MODEL=${ADAPTER[$s]}" \
        "!OUTPUT_DIR=$RUN_DIR/${s}_merged" -- MERGE
}
prev=
for s in "${STAGE_LIST[@]}"; do
    P=${s^^}
    kind_var=${P}_KIND
    from_var=${P}_FROM
    mode_var=${P}_TRAINING_MODE
    from=${!from_var:-${prev:-base}}
    vars=("!OUTPUT_DIR=$RUN_DIR/$s" "DATA_CACHE_DIR=$RUN_DIR/cache")
    [[ -n $TOK ]] && vars+=("TOKENIZER_NAME_OR_PATH=$TOK")
    deps=$TOK_DEP
    if [[ $from == base ]]; then
        model=$BASE_MODEL
    elif [[ $from == merged:* ]]; then
        src=${from#merged:}
        if [[ -n ${ADAPTER[$src]} ]]; then
            merge_step "$src"
            model=$RUN_DIR/${src}_merged
            deps+=" merge_$src"
        else
            model=${MODEL[$src]}
            deps+=" $src"
        fi
    else
        model=${MODEL[$from]}
        [[ -n ${ADAPTER[$from]} ]] && vars+=("PEFT_PATH=${ADAPTER[$from]}")
        deps+=" $from"
    fi
    vars+=("MODEL_NAME_OR_PATH=$model")
    # What the stage writes: a full model (training modes full/embeddings) or an adapter on top of $model.
    case ${!mode_var:-lora} in
        full | embeddings) MODEL[$s]=$RUN_DIR/$s; ADAPTER[$s]= ;;
        *) MODEL[$s]=$model; ADAPTER[$s]=$RUN_DIR/$s ;;
    esac
    done_when "$RUN_DIR/$s/all_results.json"
    step "$s" "${!kind_var}" "$deps" "${vars[@]}" -- "$P"
    eval_step "$s" "$s" "${MODEL[$s]}" "${ADAPTER[$s]}"
    lm_eval_step "$s" "$s" "${MODEL[$s]}" "${ADAPTER[$s]}"
    COMPARE+=" $s=$RUN_DIR/predictions/$s"
    prev=$s
done
last=${STAGE_LIST[-1]}
FINAL_DEPS=("${EVALS[@]}")
if [[ $MERGE_FINAL == true && -n ${ADAPTER[$last]} ]]; then
    merge_step "$last"
    FINAL_DEPS+=("merge_$last")
    if [[ $EXPORT_GGUF == true ]]; then
        is_done "export_$last" "$RUN_DIR/${last}_gguf/export_report.json" \
            || step "export_$last" export "merge_$last" "!MODEL_DIR=$RUN_DIR/${last}_merged" \
                "!OUTPUT_DIR=$RUN_DIR/${last}_gguf" -- EXPORT
    fi
fi

# 4. The final table and the run report.
report_vars=("!RUN_DIR=$RUN_DIR")
[[ $EVAL_DATA_DIR != none ]] && report_vars+=("COMPARE=$COMPARE")
[[ -n $LM_EVAL ]] && report_vars+=("LM_EVAL=$LM_EVAL")
step report report "${FINAL_DEPS[*]}" "${report_vars[@]}" -- REPORT

case $MODE in
    slurm) echo "submitted ${#PLAN[@]} jobs; final table: $RUN_DIR/scores/comparison.md, report: $RUN_DIR/report.md" \
        "(follow with: squeue -u \$USER; logs in $LOG_DIR/)" ;;
    local) echo "done: final table $RUN_DIR/scores/comparison.md, report $RUN_DIR/report.md" ;;
esac
exit
}
