"""Launchers (slurm/*.sbatch, slurm/pipeline.sh) without a cluster: syntax, shellcheck, the #SBATCH block, every flag
a launcher passes accepted by the real script's parser, required variables and paths checked before any work, and
the recipe planner.

Each launcher runs with ``LANGADAPT_DRY_RUN=<file>``: checks and the banner happen as usual, and the commands it
would run are written to the file instead of run. Each recorded Python command line is then parsed by the script's
own ``parse_args`` call (the script's ``main`` is run with ``parse_args`` wrapped to stop right after parsing), so
a renamed or misspelt flag in a launcher fails here, not an hour into a cluster job.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHERS = ("tokenizer", "pretrain", "sft", "merge", "export", "inference", "lm_eval", "report")
SHELL_FILES = sorted(glob.glob(os.path.join(REPO_ROOT, "slurm", "*.sbatch"))) + [
    os.path.join(REPO_ROOT, "slurm", "common.sh"),
    os.path.join(REPO_ROOT, "slurm", "pipeline.sh"),
] + sorted(glob.glob(os.path.join(REPO_ROOT, "tests", "slurm", "*.sh")))  # the test clusters' scripts
# House style: only portable keys in launchers (account and partition come from the command line); --signal/--requeue
# for preemption and --open-mode=append so a requeued job's log keeps its first part.
PORTABLE_SBATCH_KEYS = {"job-name", "nodes", "gpus-per-node", "cpus-per-task", "time", "output", "open-mode",
                        "signal", "requeue"}
REQUIRED = {
    "tokenizer": ("BASE_TOKENIZER", "TRAIN_FILE", "VOCAB_SIZE", "OUTPUT_DIR"),
    "pretrain": ("MODEL_NAME_OR_PATH", "DATASET_DIR", "OUTPUT_DIR"),
    "sft": ("MODEL_NAME_OR_PATH", "DATASET_DIR", "OUTPUT_DIR"),
    "merge": ("BASE_MODEL", "LORA_MODEL", "OUTPUT_DIR"),
    "export": ("MODEL_DIR", "OUTPUT_DIR"),
    "inference": ("BASE_MODEL", "PREDICTIONS_DIR"),
    "lm_eval": ("BASE_MODEL", "OUTPUT_DIR"),
    "report": ("RUN_DIR",),
}


class _Parsed(Exception):
    """Raised by the wrapped parse_args once the script's parser accepted the arguments."""


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """A minimal environment: no launcher variable or Slurm variable leaks in from the test runner."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env["LANGADAPT_ROOT"] = REPO_ROOT
    env.update(extra)
    return env


def _run_launcher(name: str, variables: dict[str, str], tmp_path, extra_args: tuple[str, ...] = ()):
    record = tmp_path / f"{name}.commands"
    env = _clean_env({**variables, "LANGADAPT_DRY_RUN": str(record)})
    proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "slurm", f"{name}.sbatch"), *extra_args], env=env,
                          capture_output=True, text=True, timeout=60)
    commands = [shlex.split(line) for line in record.read_text().splitlines()] if record.exists() else []
    return proc, commands


def _script_argv(command: list[str]) -> tuple[str, list[str]]:
    """(script path, its arguments) of a recorded command line (python, torchrun or srun + torchrun)."""
    for i, token in enumerate(command):
        if token.endswith(".py"):
            return token, command[i + 1:]
    raise AssertionError(f"no Python script in {command}")


def _parse_with_script(script: str, argv: list[str], monkeypatch) -> tuple:
    """Run the script's main(argv) until its parse_args returns; return the parsed dataclasses."""
    spec = importlib.util.spec_from_file_location(f"_launcher_check_{os.path.basename(script)[:-3]}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses resolve string annotations through it
    spec.loader.exec_module(module)
    real = module.parse_args
    parsed = {}

    def parse_and_stop(*args, **kwargs):
        parsed["result"] = real(*args, **kwargs)
        raise _Parsed

    monkeypatch.setattr(module, "parse_args", parse_and_stop)
    with pytest.raises(_Parsed):
        module.main(argv)
    return parsed["result"]


def _assert_flags_reach_fields(script: str, argv: list[str], parsed: tuple) -> None:
    """Every ``--flag value`` a launcher passes lands in the parsed field of that name, with that value."""
    i = 0
    while i < len(argv):
        flag = argv[i]
        i += 1
        if not flag.startswith("--"):
            continue
        name = flag[2:]
        owners = [g for g in parsed if hasattr(g, name)]
        assert owners, f"{script}: {flag} reached no parsed field"
        values = []
        while i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        if values:
            value = ",".join(values)  # space- and comma-separated lists are one list (langadapt.cli)
            got = [getattr(g, name) for g in owners]
            got = [getattr(v, "value", v) for v in got]  # enums (--lr_scheduler_type) compare by their value
            assert any(str(v) == value or (isinstance(v, (list, tuple)) and ",".join(map(str, v)) == value)
                       or str(v).lower() == value.lower() or _same_number(v, value)
                       or (value == "none" and v in (None, [])) for v in got), (
                f"{script}: {flag} {value!r} parsed as {got!r}")


def _same_number(parsed_value, text: str) -> bool:
    try:
        return float(parsed_value) == float(text)
    except (TypeError, ValueError):
        return False


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Paths every launcher's checks accept (the parsers do not load models, so folders are enough)."""
    root = tmp_path_factory.mktemp("launcher_inputs")
    paths = {}
    for d in ("model", "tokenizer", "adapter_a", "adapter_b", "data", "testset", "run/predictions/base",
              "run/predictions/sft"):
        (root / d).mkdir(parents=True)
        paths[d] = str(root / d)
    for f in ("fa.txt", "en.txt", "dev.jsonl"):
        (root / f).write_text("x\n")
        paths[f] = str(root / f)
    paths["run"] = str(root / "run")
    paths["out"] = str(root / "out")
    return paths


def _variables(name: str, p: dict[str, str]) -> dict[str, str]:
    """Every variable of each launcher set to a non-default value, so every flag it can pass is exercised."""
    training = {"PER_DEVICE_TRAIN_BATCH_SIZE": "2", "GRADIENT_ACCUMULATION_STEPS": "3", "LEARNING_RATE": "1e-4",
                "NUM_TRAIN_EPOCHS": "2", "MAX_STEPS": "5", "WARMUP_STEPS": "0.1", "LR_SCHEDULER_TYPE": "linear",
                "WEIGHT_DECAY": "0.01", "PRECISION": "fp32", "ACTIVATION_CHECKPOINTING": "false", "SEED": "7",
                "LOGGING_STEPS": "1", "EVAL_STRATEGY": "steps", "EVAL_STEPS": "2", "SAVE_STEPS": "2",
                "SAVE_TOTAL_LIMIT": "1", "REPORT_TO": "none", "LORA_RANK": "4", "LORA_ALPHA": "8",
                "LORA_DROPOUT": "0.1", "TORCH_DTYPE": "float32", "TRAINING_MODE": "lora",
                "EMBEDDING_INIT": "mean", "MODEL_NAME_OR_PATH": p["model"], "TOKENIZER_NAME_OR_PATH": p["tokenizer"],
                "PEFT_PATH": p["adapter_a"], "OUTPUT_DIR": p["out"]}
    return {
        "tokenizer": {"BASE_TOKENIZER": p["model"], "TRAIN_FILE": f"{p['fa.txt']},{p['data']}", "VOCAB_SIZE": "300",
                      "OUTPUT_DIR": p["out"], "MODEL_TYPE": "bpe", "INPUT_SENTENCE_SIZE": "100", "NUM_THREADS": "1",
                      "LANGUAGE": "fa", "MAX_NEW_PIECES": "50", "SCRIPTS": "Arabic Latin",
                      "EVAL_FILE": f"{p['fa.txt']},{p['en.txt']}", "OVERWRITE": "true"},
        "pretrain": {**training, "DATASET_DIR": f"{p['data']}:0.8,{p['testset']}:0.2", "DATA_CACHE_DIR": p["run"],
                     "PAD_VOCAB_TO_MULTIPLE_OF": "8", "BLOCK_SIZE": "64", "VALIDATION_SPLIT_PERCENTAGE": "5",
                     "PREPROCESSING_NUM_WORKERS": "1", "SAMPLE_PROMPTS_FILE": p["fa.txt"]},
        "sft": {**training, "DATASET_DIR": p["data"], "PAD_VOCAB_TO_MULTIPLE_OF": "16", "VALIDATION_FILE": p["dev.jsonl"], "TEMPLATE": "alpaca",
                "MAX_SEQ_LENGTH": "128"},
        "merge": {"BASE_MODEL": p["model"], "LORA_MODEL": f"{p['adapter_a']},{p['adapter_b']}", "OUTPUT_DIR": p["out"],
                  "TOKENIZER_NAME_OR_PATH": p["tokenizer"], "OUTPUT_DTYPE": "float32", "MAX_SHARD_SIZE": "500MB",
                  "CHECK_PROMPTS": "2", "TOLERANCE": "1e-3", "OVERWRITE_OUTPUT_DIR": "true"},
        "export": {"MODEL_DIR": p["model"], "OUTPUT_DIR": p["out"], "OUTTYPES": "f16,q8_0", "NO_FETCH": "true",
                   "OVERWRITE_OUTPUT_DIR": "true"},
        "inference": {"BASE_MODEL": p["model"], "LORA_MODEL": f"{p['adapter_a']},{p['adapter_b']}",
                      "TOKENIZER_PATH": p["tokenizer"], "DATA_DIR": p["testset"], "PREDICTIONS_DIR": p["out"],
                      "BATCH_SIZE": "4", "MAX_NEW_TOKENS": "8", "SCORING": "loglik", "TEMPLATE": "alpaca",
                      "TORCH_DTYPE": "float32", "PERPLEXITY_FILES": f"{p['fa.txt']},{p['en.txt']}",
                      "PERPLEXITY_DIR": p["run"] + "/ppl", "PERPLEXITY_NAME": "sft", "PERPLEXITY_MAX_WORDS": "100"},
        "lm_eval": {"BASE_MODEL": p["model"], "LORA_MODEL": f"{p['adapter_a']},{p['adapter_b']}",
                    "TOKENIZER_PATH": p["tokenizer"], "OUTPUT_DIR": p["out"], "TASKS": "belebele_pes_Arab,langadapt",
                    "DATA_DIR": p["testset"], "INCLUDE_PATH": p["data"], "NUM_FEWSHOT": "0", "LIMIT": "10", "BATCH_SIZE": "4",
                    "MAX_NEW_TOKENS": "8", "TEMPLATE": "alpaca", "NORMALIZE": "false", "TORCH_DTYPE": "float32"},
        "report": {"RUN_DIR": p["run"], "TIMINGS_DIR": p["run"] + "/timings",
                   "LM_EVAL": f"base={p['run']}/lm_eval/base sft={p['run']}/lm_eval/sft"},
    }[name]


EXPECTED_SCRIPTS = {
    "tokenizer": ["tokenizer/extract_vocab.py", "tokenizer/merge.py"],
    "pretrain": ["pretrain/run_clm_pt_with_peft.py"],
    "sft": ["sft/run_clm_sft_with_peft.py"],
    "merge": ["inference/merge_lora.py"],
    "export": ["inference/export_gguf.py"],
    "inference": ["inference/inference.py", "inference/score.py", "inference/perplexity.py"],
    "lm_eval": ["inference/lm_eval.py"],
    "report": ["inference/score.py", "inference/report.py"],
}


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_bash_syntax(path):
    proc = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def shellcheck() -> str:
    """Debian's shellcheck, installed here when missing (as the Slurm tests install Slurm)."""
    exe = shutil.which("shellcheck")
    if exe is None and shutil.which("apt-get") and os.geteuid() == 0:
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300", "shellcheck"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(cmd, capture_output=True, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env)
            subprocess.run(cmd, capture_output=True, env=env)
        exe = shutil.which("shellcheck")
    if exe is None:
        reason = "shellcheck is not installed and cannot be installed here (apt-get install shellcheck)"
        if os.environ.get("LANGADAPT_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return exe


def test_shellcheck(shellcheck):
    rel = [os.path.relpath(p, REPO_ROOT) for p in SHELL_FILES]
    proc = subprocess.run([shellcheck, "-x", *rel], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", LAUNCHERS)
def test_sbatch_block_first_and_portable(name):
    lines = open(os.path.join(REPO_ROOT, "slurm", f"{name}.sbatch"), encoding="utf-8").read().splitlines()
    assert lines[0] == "#!/bin/bash"
    block = []
    for line in lines[1:]:
        if not line.startswith("#SBATCH"):
            break
        block.append(line)
    keys = {re.match(r"#SBATCH --([a-z-]+)", line).group(1) for line in block}
    assert {"job-name", "nodes", "time", "output"} <= keys, block
    assert keys <= PORTABLE_SBATCH_KEYS, f"non-portable #SBATCH keys: {keys - PORTABLE_SBATCH_KEYS}"
    assert "#SBATCH --output=logs/%x-%j.out" in block
    # No #SBATCH line after the block: sbatch would silently ignore it.
    assert not any(line.startswith("#SBATCH") for line in lines[1 + len(block):])
    text = "\n".join(lines)
    assert "set -euo pipefail" in text
    if "--requeue" in text:
        assert re.search(r"#SBATCH --signal=B:USR1@\d+", text)


@pytest.mark.parametrize("name", LAUNCHERS)
def test_every_flag_accepted_by_the_script_parser(name, inputs, tmp_path, monkeypatch):
    variables = _variables(name, inputs)
    extra = ("--logging_first_step",) if name in ("pretrain", "sft") else ()
    proc, commands = _run_launcher(name, variables, tmp_path, extra)
    assert proc.returncode == 0, proc.stderr
    scripts = [os.path.relpath(_script_argv(c)[0], REPO_ROOT) for c in commands]
    assert scripts == EXPECTED_SCRIPTS[name]
    # The banner names every resolved setting.
    for var, value in variables.items():
        assert f"{var}={value}" in proc.stderr, var
    monkeypatch.setenv("WORLD_SIZE", "1")  # only for --deepspeed's launcher check; harmless otherwise
    for command in commands:
        script, argv = _script_argv(command)
        parsed = _parse_with_script(script, argv, monkeypatch)
        _assert_flags_reach_fields(script, argv, parsed)
        if script.endswith(("run_clm_pt_with_peft.py", "run_clm_sft_with_peft.py")):
            training = parsed[-1]
            assert training.logging_first_step, "extra launcher arguments must reach the script"
            assert (training.learning_rate, training.max_steps, training.gradient_accumulation_steps) == (1e-4, 5, 3)
            assert parsed[1].lora_rank == 4 and parsed[0].model_name_or_path == inputs["model"]


def test_pretrain_deepspeed_and_precision_flags(inputs, tmp_path):
    """DEEPSPEED_CONFIG becomes --deepspeed (a TrainingArguments field; not parsed here: DeepSpeed would start a
    process group in the test process), and PRECISION defaults to fp32 on a GPU-less box."""
    config = os.path.join(REPO_ROOT, "configs", "deepspeed", "zero2.json")
    variables = {**_variables("pretrain", inputs), "PRECISION": "", "DEEPSPEED_CONFIG": config}
    proc, commands = _run_launcher("pretrain", variables, tmp_path)
    assert proc.returncode == 0, proc.stderr
    _, argv = _script_argv(commands[0])
    assert argv[argv.index("--deepspeed") + 1] == config
    assert "--bf16" not in argv and "--fp16" not in argv, "no GPU here: PRECISION must default to fp32"
    variables["PRECISION"] = "bf16"
    _, commands = _run_launcher("pretrain", variables, tmp_path)  # appends to the same record
    assert "--bf16" in _script_argv(commands[-1])[1]


# What a training launcher may decide itself: where the tokenized cache goes and how many processes tokenize (the
# CPUs Slurm gave the job). Neither changes the trained model.
LAUNCHER_DERIVED = {"data_cache_dir", "preprocessing_num_workers"}


@pytest.mark.parametrize("name,script", [("pretrain", "pretrain/run_clm_pt_with_peft.py"),
                                         ("sft", "sft/run_clm_sft_with_peft.py")])
def test_launcher_defaults_are_the_script_defaults(name, script, inputs, tmp_path, monkeypatch):
    """bash slurm/<stage>.sbatch with only the required variables runs exactly what python <script> with only the
    required flags runs: every default is defined once, in the dataclasses (LoRA r=64/alpha=128, cosine, ...)."""
    required = {"MODEL_NAME_OR_PATH": inputs["model"], "DATASET_DIR": inputs["data"], "OUTPUT_DIR": inputs["out"]}
    proc, commands = _run_launcher(name, required, tmp_path)
    assert proc.returncode == 0, proc.stderr
    script_path, launcher_argv = _script_argv(commands[0])
    assert os.path.relpath(script_path, REPO_ROOT) == script
    python_argv = ["--model_name_or_path", inputs["model"], "--dataset_dir", inputs["data"],
                   "--output_dir", inputs["out"]]
    by_launcher = _parse_with_script(script_path, launcher_argv, monkeypatch)
    by_python = _parse_with_script(script_path, python_argv, monkeypatch)

    def settings(group):
        values = group.to_dict() if hasattr(group, "to_dict") else vars(group)
        return {k: v for k, v in values.items() if k not in LAUNCHER_DERIVED}

    for launched, direct in zip(by_launcher, by_python, strict=True):
        differ = {k: (v, settings(direct).get(k)) for k, v in settings(launched).items() if settings(direct).get(k) != v}
        assert not differ, f"{name}.sbatch and {script} disagree (launcher, script): {differ}"
    adapt, training = by_launcher[1], by_launcher[-1]
    assert (adapt.training_mode, adapt.lora_rank, adapt.lora_alpha) == ("lora", 64, 128.0)
    assert training.lr_scheduler_type.value == "cosine" and training.warmup_steps == 0.03
    # The banner says which settings are the script's.
    assert "LORA_RANK=(script default)" in proc.stderr


def _other_launcher_cases(p: dict[str, str]) -> dict[str, tuple[dict[str, str], list[list[str]]]]:
    """Launcher -> (its required variables, and per recorded command the flags a user would pass to the script
    with the same inputs). Paths the launcher derives from a required variable are written out as it derives them."""
    testset = os.path.join(REPO_ROOT, "data", "testset")
    addon = p["out"] + ".addon"
    return {
        "tokenizer": ({"BASE_TOKENIZER": p["model"], "TRAIN_FILE": p["data"], "VOCAB_SIZE": "300",
                       "OUTPUT_DIR": p["out"]},
                      [["--train_file", p["data"], "--vocab_size", "300", "--output_dir", addon,
                        "--base_tokenizer", p["model"]],
                       ["--base_tokenizer", p["model"], "--extra_model", addon, "--output_dir", p["out"]]]),
        "merge": ({"BASE_MODEL": p["model"], "LORA_MODEL": p["adapter_a"], "OUTPUT_DIR": p["out"]},
                  [["--model_name_or_path", p["model"], "--peft_path", p["adapter_a"], "--output_dir", p["out"]]]),
        "inference": ({"BASE_MODEL": p["model"], "PREDICTIONS_DIR": p["out"]},
                      [["--model_name_or_path", p["model"], "--data_dir", testset, "--predictions_dir", p["out"]],
                       ["--predictions_dir", p["out"]]]),
        "lm_eval": ({"BASE_MODEL": p["model"], "OUTPUT_DIR": p["out"]},
                    [["--model_name_or_path", p["model"], "--data_dir", testset, "--output_dir", p["out"]]]),
        "report": ({"RUN_DIR": p["run"]},
                   [["--compare", f"base={p['run']}/predictions/base", f"sft={p['run']}/predictions/sft",
                     "--output_dir", p["run"] + "/scores"],
                    ["--run_dir", p["run"], "--output_dir", p["run"]]]),
    }


# What the other launchers decide themselves: the trainer threads (the CPUs Slurm gave the job), and replacing the
# folder a requeued or repeated step wrote before. Neither changes a result.
OTHER_LAUNCHER_DERIVED = {"num_threads", "overwrite", "overwrite_output_dir"}


@pytest.mark.parametrize("name", ["tokenizer", "merge", "inference", "lm_eval", "report"])
def test_other_launcher_defaults_are_the_script_defaults(name, inputs, tmp_path, monkeypatch):
    """As for training: with only the required variables, each command a launcher runs parses to exactly what the
    script parses from the required flags alone, so every default comes from the dataclasses."""
    variables, python_argvs = _other_launcher_cases(inputs)[name]
    proc, commands = _run_launcher(name, variables, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [os.path.relpath(_script_argv(c)[0], REPO_ROOT) for c in commands] == EXPECTED_SCRIPTS[name][:len(commands)]
    assert len(commands) == len(python_argvs)
    for command, python_argv in zip(commands, python_argvs, strict=True):
        script_path, launcher_argv = _script_argv(command)
        by_launcher = _parse_with_script(script_path, launcher_argv, monkeypatch)
        by_python = _parse_with_script(script_path, python_argv, monkeypatch)
        for launched, direct in zip(by_launcher, by_python, strict=True):
            got = {k: v for k, v in vars(launched).items() if k not in OTHER_LAUNCHER_DERIVED}
            want = {k: v for k, v in vars(direct).items() if k not in OTHER_LAUNCHER_DERIVED}
            differ = {k: (v, want.get(k)) for k, v in got.items() if want.get(k) != v}
            assert not differ, f"{name}.sbatch and {script_path} disagree (launcher, script): {differ}"


@pytest.mark.parametrize("name,var", [(n, v) for n, vs in REQUIRED.items() for v in vs])
def test_missing_required_variable_stops_before_work(name, var, inputs, tmp_path):
    variables = _variables(name, inputs)
    del variables[var]
    proc, commands = _run_launcher(name, variables, tmp_path)
    assert proc.returncode == 2, "bad input: the documented exit status (it was 1, bash's own)"
    assert commands == []
    message = proc.stderr.strip().splitlines()[-1]
    assert var in message and "e.g." in message, message
    assert "===" not in proc.stderr, "the banner must not start before the required variables are checked"


@pytest.mark.parametrize("name,var", [("pretrain", "DATASET_DIR"), ("sft", "PEFT_PATH"), ("tokenizer", "TRAIN_FILE"),
                                      ("merge", "LORA_MODEL"), ("inference", "PERPLEXITY_FILES"),
                                      ("pretrain", "DEEPSPEED_CONFIG")])
def test_missing_path_caught_in_the_banner_step(name, var, inputs, tmp_path):
    variables = {**_variables(name, inputs), var: f"{inputs['data']},/nonexistent/{var.lower()}"}
    proc, commands = _run_launcher(name, variables, tmp_path)
    assert proc.returncode == 2
    assert commands == []
    assert var in proc.stderr and f"/nonexistent/{var.lower()}" in proc.stderr, proc.stderr


def test_usr1_outside_slurm_is_logged_and_ignored(tmp_path):
    """The preemption trap must not kill a local run (bash slurm/x.sbatch) that receives SIGUSR1."""
    script = tmp_path / "t.sh"
    script.write_text(f'set -euo pipefail\nLANGADAPT_ROOT={REPO_ROOT}\nsource "$LANGADAPT_ROOT/slurm/common.sh"\n'
                      'kill -USR1 $$\nla_exec true\necho survived\n')
    proc = subprocess.run(["bash", str(script)], env=_clean_env({}), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "survived" in proc.stdout and "SIGUSR1 outside Slurm" in proc.stderr


def _fake_slurm_commands(tmp_path) -> tuple[str, str]:
    """A bin folder whose scancel/scontrol append their arguments to a file; returns (bin, record)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "slurm_calls"
    bin_dir.mkdir()
    for name in ("scancel", "scontrol"):
        (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >>"{record}"\n')
        (bin_dir / name).chmod(0o755)
    return str(bin_dir), str(record)


@pytest.mark.parametrize("case", ["exit75", "forwarded"])
def test_training_launcher_forwards_usr1_and_requeues_after_the_checkpoint(case, tmp_path):
    """LA_PREEMPTION=forward (pretrain/sft): SIGUSR1 goes on to the job's steps (scancel without --batch) instead of
    an immediate requeue; the requeue comes once the step has exited (75, or any failure after the signal)."""
    bin_dir, record = _fake_slurm_commands(tmp_path)
    step = "exit 75" if case == "exit75" else "sleep 1; exit 1"  # torchrun reports a failed worker as 1
    send = "" if case == "exit75" else "(sleep 0.3; kill -USR1 $$) &\n"
    script = tmp_path / "t.sh"
    script.write_text(f'set -euo pipefail\nLANGADAPT_ROOT={REPO_ROOT}\nsource "$LANGADAPT_ROOT/slurm/common.sh"\n'
                      f'LA_PREEMPTION=forward\n{send}la_exec bash -c "{step}"\necho not-reached\n')
    env = _clean_env({"SLURM_JOB_ID": "123", "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "not-reached" not in proc.stdout, proc.stderr
    calls = open(record).read().splitlines()
    want = ["scontrol requeue 123"] if case == "exit75" else ["scancel --signal=USR1 123", "scontrol requeue 123"]
    assert calls == want, proc.stderr
    assert "requeueing job 123" in proc.stderr


@pytest.mark.parametrize("name", ["pretrain", "sft"])
def test_training_launcher_on_two_nodes_runs_one_torchrun_per_node_with_one_rendezvous(name, inputs, tmp_path):
    """The multi-node command line from Slurm's variables (run for real in tests/test_slurm_multinode.py): srun with
    one task per node and labelled lines, torchrun --nnodes from SLURM_NNODES, the rendezvous at the first host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # scontrol show hostnames gpu[7-8] -> one host per line
    (bin_dir / "scontrol").write_text('#!/bin/bash\n[[ "$1 $2" == "show hostnames" ]] && printf "gpu7\\ngpu8\\n"\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "1234", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu[7-8]", "SLURM_GPUS_ON_NODE": "4",
             "SLURM_CPUS_PER_TASK": "16", "LANGADAPT_ROOT": REPO_ROOT}
    record = tmp_path / "commands"
    env = _clean_env({**_variables(name, inputs), **slurm, "LANGADAPT_DRY_RUN": str(record),
                      "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "slurm", f"{name}.sbatch")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (command,) = [shlex.split(line) for line in record.read_text().splitlines()]
    srun = command[:command.index("bash")]
    assert srun[0] == "srun" and {"--nodes=2", "--ntasks-per-node=1", "--label", "--cpus-per-task=16"} <= set(srun)
    torchrun = command[command.index("torch.distributed.run") + 1:]
    assert {"--nnodes=2", "--nproc_per_node=4", "--rdzv_id=1234", "--rdzv_backend=c10d",
            "--rdzv_endpoint=gpu7:29734"} <= set(torchrun), torchrun
    assert "MASTER_ADDR=gpu7" in proc.stderr and "nodes=2 nodelist=gpu[7-8]" in proc.stderr


# ---------------------------------------------------------------------------------------------- pipeline.sh


def _pipeline(args: list[str], tmp_path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", os.path.join(REPO_ROOT, "slurm", "pipeline.sh"), *args], cwd=tmp_path,
                          env=_clean_env(env or {}), capture_output=True, text=True, timeout=60)


def _plan(stdout: str) -> dict[str, dict]:
    """{step: {"launcher", "after": [...], "vars": {VAR: value}}} from --dry-run output (last assignment wins)."""
    plan, current = {}, None
    for line in stdout.splitlines():
        m = re.match(r"step (\S+): slurm/(\S+)\.sbatch after \[(.*)\]$", line)
        if m:
            current = plan.setdefault(m.group(1), {"launcher": m.group(2), "after": m.group(3).split(), "vars": {}})
        elif line.startswith("    ") and current is not None:
            key, _, value = line.strip().partition("=")
            current["vars"][key] = value
    return plan


def test_example_recipe_plan(inputs, tmp_path):
    proc = _pipeline(["--dry-run", os.path.join(REPO_ROOT, "configs", "recipes", "example.env"),
                      f"BASE_MODEL={inputs['model']}", f"RUN_DIR={tmp_path}/run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = _plan(proc.stdout)
    run = f"{tmp_path}/run"
    assert list(plan) == ["tokenizer", "eval_base", "eval_base_merged", "pt_fa", "eval_pt_fa", "pt_bi", "eval_pt_bi",
                          "sft_bi", "eval_sft_bi", "merge_sft_bi", "sft_task", "eval_sft_task", "merge_sft_task",
                          "report"]
    assert plan["pt_fa"]["launcher"] == "pretrain" and plan["sft_task"]["launcher"] == "sft"
    # Stage 2 and 3 continue the previous adapter; stage 4 starts a new adapter on the merged stage-3 model.
    assert plan["pt_bi"]["vars"]["PEFT_PATH"] == f"{run}/pt_fa"
    assert plan["sft_bi"]["vars"]["PEFT_PATH"] == f"{run}/pt_bi"
    assert "PEFT_PATH" not in plan["sft_task"]["vars"]
    assert plan["sft_task"]["vars"]["MODEL_NAME_OR_PATH"] == f"{run}/sft_bi_merged"
    assert plan["merge_sft_bi"]["vars"]["LORA_MODEL"] == f"{run}/sft_bi"
    assert plan["sft_task"]["after"] == ["tokenizer", "merge_sft_bi"]
    assert plan["pt_fa"]["vars"]["TOKENIZER_NAME_OR_PATH"] == f"{run}/tokenizer"
    assert plan["pt_fa"]["vars"]["LEARNING_RATE"] == "2e-4" and plan["pt_fa"]["vars"]["MAX_STEPS"] == "200"
    assert plan["eval_sft_task"]["vars"]["BASE_MODEL"] == f"{run}/sft_bi_merged"
    assert plan["eval_sft_task"]["vars"]["LORA_MODEL"] == f"{run}/sft_task"
    assert plan["eval_base_merged"]["vars"]["DATA_DIR"] == "none"
    assert plan["eval_pt_fa"]["vars"]["PERPLEXITY_DIR"] == f"{run}/perplexity/pt_fa"
    assert set(plan["report"]["after"]) == {"eval_base", "eval_base_merged", "eval_pt_fa", "eval_pt_bi",
                                            "eval_sft_bi", "eval_sft_task", "merge_sft_task"}
    compare = plan["report"]["vars"]["COMPARE"].split()
    assert [c.split("=")[0] for c in compare] == ["base", "pt_fa", "pt_bi", "sft_bi", "sft_task"]


def test_base_merged_is_scored_with_the_first_stages_rows(inputs, tmp_path):
    """eval_base_merged is the step-0 model of the first stage: the same --embedding_init (the study's step-0
    numbers of arms differing only in it were all one init's before)."""
    recipe = os.path.join(REPO_ROOT, "configs", "recipes", "example.env")
    for init, want in (("subtoken_weighted", "subtoken_weighted"), ("", "")):
        proc = _pipeline(["--dry-run", recipe, f"BASE_MODEL={inputs['model']}", f"RUN_DIR={tmp_path}/run",
                          f"PT_FA_EMBEDDING_INIT={init}", "PT_BI_EMBEDDING_INIT=mean"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        plan = _plan(proc.stdout)
        assert plan["eval_base_merged"]["vars"]["EMBEDDING_INIT"] == want
        assert plan["pt_fa"]["vars"].get("EMBEDDING_INIT", "") == want


def test_lm_eval_steps_after_each_evaluation(inputs, tmp_path):
    """LM_EVAL_TASKS adds an lm-eval step after the base model and each stage; their folders reach the report."""
    proc = _pipeline(["--dry-run", os.path.join(REPO_ROOT, "configs", "recipes", "example.env"),
                      f"BASE_MODEL={inputs['model']}", f"RUN_DIR={tmp_path}/run", "LM_EVAL_TASKS=belebele_pes_Arab",
                      "LM_EVAL_LIMIT=5"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = _plan(proc.stdout)
    run = f"{tmp_path}/run"
    names = ["base", "pt_fa", "pt_bi", "sft_bi", "sft_task"]
    assert [s for s in plan if s.startswith("lm_eval_")] == [f"lm_eval_{n}" for n in names]
    step = plan["lm_eval_sft_task"]
    assert step["launcher"] == "lm_eval" and step["after"] == ["sft_task"]
    assert step["vars"]["BASE_MODEL"] == f"{run}/sft_bi_merged" and step["vars"]["LORA_MODEL"] == f"{run}/sft_task"
    assert step["vars"]["OUTPUT_DIR"] == f"{run}/lm_eval/sft_task"
    assert step["vars"]["TASKS"] == "belebele_pes_Arab" and step["vars"]["LIMIT"] == "5"
    assert {f"lm_eval_{n}" for n in names} <= set(plan["report"]["after"])
    assert plan["report"]["vars"]["LM_EVAL"].split() == [f"{n}={run}/lm_eval/{n}" for n in names]
    # Without LM_EVAL_TASKS nothing changes (test_example_recipe_plan).


def test_export_gguf_step_after_the_final_merge(inputs, tmp_path):
    proc = _pipeline(["--dry-run", os.path.join(REPO_ROOT, "configs", "recipes", "example.env"),
                      f"BASE_MODEL={inputs['model']}", f"RUN_DIR={tmp_path}/run", "EXPORT_GGUF=true",
                      "EXPORT_OUTTYPES=q8_0"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = _plan(proc.stdout)
    run = f"{tmp_path}/run"
    assert plan["export_sft_task"]["launcher"] == "export" and plan["export_sft_task"]["after"] == ["merge_sft_task"]
    assert plan["export_sft_task"]["vars"]["MODEL_DIR"] == f"{run}/sft_task_merged"
    assert plan["export_sft_task"]["vars"]["OUTPUT_DIR"] == f"{run}/sft_task_gguf"
    assert plan["export_sft_task"]["vars"]["OUTTYPES"] == "q8_0" and "GGUF" not in plan["export_sft_task"]["vars"]


def test_stage_prefixes_do_not_leak(inputs, tmp_path):
    """Stage pt's variables are PT_*, but not stage pt_fa's PT_FA_* (no FA_... variables in stage pt)."""
    recipe = tmp_path / "r.env"
    recipe.write_text(f"RUN_DIR={tmp_path}/run\nBASE_MODEL={inputs['model']}\nSTAGES='pt pt_fa'\nEVAL_DATA_DIR=none\n"
                      f"PT_KIND=pretrain\nPT_DATASET_DIR=d1\nPT_FA_KIND=pretrain\nPT_FA_DATASET_DIR=d2\n"
                      "PT_FA_TRAINING_MODE=full\nMERGE_FINAL=true\n")
    proc = _pipeline(["--dry-run", str(recipe)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = _plan(proc.stdout)
    assert plan["pt"]["vars"]["DATASET_DIR"] == "d1" and not any(k.startswith("FA_") for k in plan["pt"]["vars"])
    assert plan["pt_fa"]["vars"]["DATASET_DIR"] == "d2"
    # A full-model stage: no merge at the end, nothing to evaluate (EVAL_DATA_DIR=none, no perplexity files).
    assert list(plan) == ["pt", "pt_fa", "report"]


@pytest.mark.parametrize("line,message", [
    ("SFT_FROM=merged:nothing", "SFT_FROM=merged:nothing: stage 'sft' starts from 'nothing', which no earlier stage"),
    ("SFT_FROM=sft", "which no earlier stage produces"),
    ("PT_KIND=train", "PT_KIND=train: must be pretrain or sft"),
    ("STAGES='pt eval'", "stage name 'eval' is reserved"),
    ("STAGES='pt Sft'", "stage name 'Sft'"),
    ("PT_DATASET_DIR=", "set PT_DATASET_DIR"),
])
def test_bad_recipe_stops_before_anything(line, message, inputs, tmp_path):
    recipe = tmp_path / "r.env"
    recipe.write_text(f"RUN_DIR={tmp_path}/run\nBASE_MODEL={inputs['model']}\nSTAGES='pt sft'\n"
                      "PT_KIND=pretrain\nPT_DATASET_DIR=d\nSFT_KIND=sft\nSFT_DATASET_DIR=d\n" + line + "\n")
    proc = _pipeline([str(recipe)], tmp_path)  # Slurm mode: it must fail before calling sbatch
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert not os.path.exists(tmp_path / "run"), "nothing may be written for a bad recipe"


def test_missing_recipe_variable(tmp_path):
    recipe = tmp_path / "r.env"
    recipe.write_text("STAGES=pt\n")
    proc = _pipeline(["--dry-run", str(recipe)], tmp_path)
    assert proc.returncode == 2 and "error: set RUN_DIR" in proc.stderr and "e.g." in proc.stderr


@pytest.mark.parametrize("recipe", sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "recipes", "*.env"))),
                         ids=os.path.basename)
def test_every_shipped_recipe_plans(recipe, inputs, tmp_path):
    """Every bundled recipe is a valid plan (its data paths may not exist yet: --dry-run does not need them).
    Values a recipe leaves to the command line get placeholders here."""
    text = open(recipe, encoding="utf-8").read()
    overrides = [f"BASE_MODEL={inputs['model']}", f"RUN_DIR={tmp_path}/run"]
    for var in re.findall(r"^([A-Z0-9_]+_DATASET_DIR|TOKENIZER_TRAIN_FILE)=\$\{\1:-\}", text, flags=re.M):
        overrides.append(f"{var}={inputs['data']}")
    proc = _pipeline(["--dry-run", recipe, *overrides], tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = _plan(proc.stdout)
    assert "report" in plan and "eval_base" in plan
    for step in plan.values():
        assert os.path.isfile(os.path.join(REPO_ROOT, "slurm", step["launcher"] + ".sbatch"))


def test_recipe_format_documented_at_top_of_pipeline():
    head = open(os.path.join(REPO_ROOT, "slurm", "pipeline.sh"), encoding="utf-8").read().split("set -euo")[0]
    for key in ("RUN_DIR", "BASE_MODEL", "STAGES", "_KIND", "_FROM", "merged:", "TOKENIZER_", "EVAL_", "MERGE_",
                "SBATCH_ARGS", "configs/recipes/example.env"):
        assert key in head, key


@pytest.mark.parametrize("config,script", [("pretrain_llama2_7b.yaml", "pretrain/run_clm_pt_with_peft.py"),
                                           ("sft_llama2_7b.yaml", "sft/run_clm_sft_with_peft.py")])
def test_shipped_run_configs_parse_and_take_overrides(config, script, monkeypatch, tmp_path):
    """configs/runs/*.yaml parse with the script's own parser; a flag after the file overrides it."""
    path = os.path.join(REPO_ROOT, "configs", "runs", config)
    monkeypatch.chdir(tmp_path)  # the config's relative input paths, made here (SFT checks them while parsing)
    os.makedirs("data/sft")
    open("data/sft_dev.json", "w").write("[]")
    parsed = _parse_with_script(os.path.join(REPO_ROOT, script), [path, "--max_steps", "3"], monkeypatch)
    assert parsed[-1].max_steps == 3 and parsed[0].model_name_or_path == "models/llama-2-7b"
    assert parsed[1].training_mode == "lora"


def test_misspelled_recipe_variable_is_an_error_naming_the_closest(inputs, tmp_path):
    """Finding 6: PT_LEARNIG_RATE=5e-1 was ignored and the pipeline ran with the default learning rate."""
    recipe = tmp_path / "r.env"
    recipe.write_text(f"RUN_DIR={tmp_path}/run\nBASE_MODEL={inputs['model']}\nSTAGES='pt'\nPT_KIND=pretrain\n"
                      "PT_DATASET_DIR=d\n")
    for override, message in (("PT_LEARNIG_RATE=5e-1", "PT_LEARNIG_RATE: slurm/pretrain.sbatch has no variable "
                                                       "LEARNIG_RATE, so it would be ignored; did you mean "
                                                       "PT_LEARNING_RATE?"),
                              ("EVAL_BATCH_SIZ=4", "did you mean EVAL_BATCH_SIZE?"),
                              ("MERGE_OUTPUT_DTYP=float32", "did you mean MERGE_OUTPUT_DTYPE?")):
        proc = _pipeline(["--dry-run", str(recipe), override], tmp_path)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "run")
    proc = _pipeline(["--dry-run", str(recipe), "PT_LEARNING_RATE=5e-1", "EVAL_BATCH_SIZE=4"], tmp_path)
    assert proc.returncode == 0, proc.stderr


FAKE_PYTHON = r"""#!/bin/bash
# Stands in for python in the launchers: logs the script it was given and writes that script's completion marker.
echo "$(basename "$1") $*" >>"$FAKE_LOG"
script=$(basename "$1")
shift
out= pred=
while [[ $# -gt 0 ]]; do
    case $1 in --output_dir) out=$2 ;; --predictions_dir) pred=$2 ;; esac
    shift
done
case $script in
    run_clm_pt_with_peft.py | run_clm_sft_with_peft.py) mkdir -p "$out" && echo '{}' >"$out/all_results.json" ;;
    inference.py) mkdir -p "$pred" ;;
    score.py) [[ -n $pred ]] && echo '{}' >"$pred/scores.json" ;;
esac
exit 0
"""


def test_pipeline_rerun_keys_steps_on_their_settings(inputs, tmp_path):
    """Finding 7: a rerun with PT_MAX_STEPS/PT_LEARNING_RATE changed skipped every step as "already complete" and
    rebuilt the report from old results. Now the changed stage and what depends on it rerun (the old output moved
    aside), the rest is skipped, and the same settings again skip everything."""
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    run = tmp_path / "run"
    recipe = tmp_path / "r.env"
    recipe.write_text(f"RUN_DIR={run}\nBASE_MODEL={inputs['model']}\nSTAGES='pt'\nPT_KIND=pretrain\n"
                      f"PT_DATASET_DIR={inputs['data']}\nEVAL_DATA_DIR={inputs['testset']}\nMERGE_FINAL=false\n"
                      f"LOG_DIR={tmp_path}/logs\nPT_MAX_STEPS=2\n")
    env = {"PYTHON": str(fake), "FAKE_LOG": str(log), "NPROC_PER_NODE": "1"}

    def pipeline(*overrides):
        log.write_text("")
        proc = _pipeline(["--local", str(recipe), *overrides], tmp_path, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ran = [line.split()[0] for line in log.read_text().splitlines()]
        return ran, proc.stderr

    ran, _ = pipeline()
    assert ran == ["inference.py", "score.py", "run_clm_pt_with_peft.py", "inference.py", "score.py", "score.py",
                   "report.py"]
    ran, err = pipeline()
    assert ran == ["score.py", "report.py"]  # only the report (it is rebuilt every time)
    for step in ("eval_base", "pt", "eval_pt"):
        assert f"step {step}: already complete with the same settings" in err, err
    ran, err = pipeline("PT_MAX_STEPS=3", "PT_LEARNING_RATE=1e-3")
    assert ran == ["run_clm_pt_with_peft.py", "inference.py", "score.py", "score.py", "report.py"], ran
    assert "step pt: settings changed since it ran (LEARNING_RATE,MAX_STEPS): rerunning" in err, err
    assert "step eval_pt: settings changed since it ran (after pt): rerunning" in err, err
    assert "step eval_base: already complete with the same settings" in err
    assert "--max_steps 3" in " ".join(open(tmp_path / "logs" / "la-pt.log").read().split())
    moved = sorted(p.name for p in (run / ".superseded").glob("*/*"))
    assert moved == ["eval_pt.pt", "pt.pt"], moved  # the old outputs, kept
    ran, err = pipeline("PT_MAX_STEPS=3", "PT_LEARNING_RATE=1e-3")
    assert ran == ["score.py", "report.py"], err
