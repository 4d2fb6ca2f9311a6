"""The demo runner's pieces: read a recipe, prepare its inputs, keep a run folder consistent, time the run.

A recipe (``configs/recipes/demo.env``) is a bash file of variables read by ``slurm/pipeline.sh``, each written
``VAR=${VAR:-default}`` so the environment overrides it. The demo adds ``PREPARE_*`` variables (flags of
``data/prepare_demo_data.py``, upper-cased) and ``QUICK`` (``VAR=value`` overrides for a CI-sized run).
:func:`read_recipe` sources it in bash with the overrides in the environment, exactly as the pipeline will run, so
both see the same values.

A run folder holds ``demo_settings.json``, the resolved settings it was made with. Running again with the same
settings resumes it (the pipeline skips finished steps, training resumes from its last checkpoint); with other
settings the runner refuses (``--fresh`` redoes it), so one folder never mixes outputs of two configurations. A
training stage that was killed before its first checkpoint has nothing to resume and is removed, so it is redone
from the start rather than refused by the training script.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from langadapt.errors import InputError
from langadapt.io import read_json, write_json

logger = logging.getLogger(__name__)

SETTINGS_FILE = "demo_settings.json"
# Variables of the environment, not of the recipe: never part of a run's settings.
_SHELL_VARS = {"BASH", "BASHOPTS", "BASHPID", "BASH_ALIASES", "BASH_ARGC", "BASH_ARGV", "BASH_ARGV0", "BASH_CMDS",
               "BASH_COMMAND", "BASH_LINENO", "BASH_LOADABLES_PATH", "BASH_SOURCE", "BASH_SUBSHELL", "BASH_VERSINFO",
               "BASH_VERSION", "COLUMNS", "COMP_WORDBREAKS", "DIRSTACK", "EPOCHREALTIME", "EPOCHSECONDS", "EUID",
               "FUNCNAME", "GROUPS", "HISTCMD", "HISTFILE", "HISTFILESIZE", "HISTSIZE", "HOSTNAME", "HOSTTYPE", "IFS",
               "LINENO", "LINES", "MACHTYPE", "OPTERR", "OPTIND", "OSTYPE", "PIPESTATUS", "PPID", "PS4", "PWD",
               "RANDOM", "SECONDS", "SHELL", "SHELLOPTS", "SHLVL", "SRANDOM", "UID", "_"}


def parse_overrides(items: Sequence[str], where: str) -> list[tuple[str, str]]:
    """``["A=1", "B=x y"]`` -> ``[("A", "1"), ("B", "x y")]``; anything else raises InputError naming ``where``."""
    out = []
    for kv in items:
        name, sep, value = kv.partition("=")
        if not sep or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise InputError(f"{where}: {kv!r} is not VAR=value")
        out.append((name, value))
    return out


def read_recipe(path: str, overrides: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The variables a recipe defines, sourced in bash with ``overrides`` in its environment (a recipe written as
    ``VAR=${VAR:-default}`` takes them, and the values derived from them follow), as the pipeline will see them."""
    if not os.path.isfile(path):
        raise InputError(f"--recipe: {path} does not exist; the bundled one is configs/recipes/demo.env")
    script = ('before=$(compgen -v); source "$1" >/dev/null || exit 3; '
              'for v in $(compgen -v); do printf "%s\\0%s\\0" "$v" "${!v}"; done; printf "\\1%s" "$before"')
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"), **dict(overrides)}
    proc = subprocess.run(["bash", "-c", script, "recipe", path], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise InputError(f"--recipe: bash could not source {path}: {proc.stderr.strip() or proc.returncode}")
    values, _, before = proc.stdout.partition("\1")
    parts = values.split("\0")
    preexisting = set(before.split()) - {k for k, _ in overrides}
    out = {}
    for name, value in zip(parts[0::2], parts[1::2]):
        if name and name not in _SHELL_VARS and name not in preexisting and name not in ("before", "v"):
            out[name] = value
    return out


def resolve_settings(recipe: str, quick: bool, overrides: Sequence[str]) -> dict[str, str]:
    """The recipe's settings with ``QUICK`` (when ``quick``) and then the user's overrides set before it is read.

    ``_OVERRIDES`` holds the applied ``VAR=value`` pairs (the environment the pipeline must run with).
    """
    user = parse_overrides(overrides, "--set")
    settings = read_recipe(recipe, user)
    applied = list(user)
    if quick:
        quick_items = parse_overrides(shlex.split(settings.get("QUICK", "")), f"{recipe}: QUICK")
        applied = quick_items + [kv for kv in user]  # the user's own overrides win over QUICK
        settings = read_recipe(recipe, list(dict(applied).items()))
    for required in ("RUN_DIR", "BASE_MODEL", "DEMO_DATA"):
        if not settings.get(required):
            raise InputError(f"{recipe}: set {required} (the demo needs RUN_DIR, BASE_MODEL and DEMO_DATA)")
    settings["_OVERRIDES"] = " ".join(shlex.quote(f"{k}={v}") for k, v in dict(applied).items())
    return settings


def prepare_args(settings: dict[str, str]) -> list[str]:
    """Flags of data/prepare_demo_data.py: ``--model_dir BASE_MODEL --data_dir DEMO_DATA`` + every ``PREPARE_X`` as
    ``--x``."""
    args = ["--model_dir", settings["BASE_MODEL"], "--data_dir", settings["DEMO_DATA"]]
    for name in sorted(settings):
        if name.startswith("PREPARE_") and settings[name] != "":
            args += [f"--{name[len('PREPARE_'):].lower()}", settings[name]]
    return args


def run_settings(settings: dict[str, str]) -> dict[str, str]:
    """What identifies a run's configuration: every setting except where logs go and the QUICK list itself."""
    return {k: v for k, v in sorted(settings.items()) if k not in ("LOG_DIR", "QUICK", "_OVERRIDES")}


def check_run_dir(run_dir: str, settings: dict[str, str], fresh: bool) -> None:
    """Make ``run_dir`` ready for a run with ``settings``: reuse it when made with the same settings, start it over
    with ``fresh``, refuse when it was made with other settings."""
    path = os.path.join(run_dir, SETTINGS_FILE)
    wanted = run_settings(settings)
    if fresh and os.path.exists(run_dir):
        logger.info("--fresh: removing %s", run_dir)
        shutil.rmtree(run_dir)
    if os.path.isfile(path):
        old = read_json(path)
        if old != wanted:
            changed = sorted(k for k in set(old) | set(wanted) if old.get(k) != wanted.get(k))
            raise InputError(
                f"{run_dir} was made with other settings ({', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}"
                f" differ); rerun with --fresh to redo it, or --set RUN_DIR=another/folder to keep it"
            )
        logger.info("resuming %s (same settings): finished steps are skipped", run_dir)
    elif os.path.isdir(run_dir) and os.listdir(run_dir):
        raise InputError(f"{run_dir} exists but was not made by the demo runner ({SETTINGS_FILE} missing); "
                         "choose another RUN_DIR with --set RUN_DIR=... or pass --fresh to replace it")
    os.makedirs(run_dir, exist_ok=True)
    write_json(path, wanted)


def clean_unfinished_stages(run_dir: str, stages: Sequence[str]) -> list[str]:
    """Remove training-stage folders that have no ``all_results.json`` and no complete checkpoint: a killed run
    left them, nothing in them can be resumed, and the training scripts refuse a non-empty folder. Returns them."""
    from langadapt.training import complete_checkpoints

    removed = []
    for stage in stages:
        path = os.path.join(run_dir, stage)
        if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "all_results.json")):
            continue
        if complete_checkpoints(path):
            logger.info("%s: unfinished; training resumes from its last checkpoint", path)
            continue
        logger.info("%s: unfinished and without a checkpoint; removing it so the stage starts over", path)
        shutil.rmtree(path)
        removed.append(path)
    return removed


def record_step_seconds(run_dir: str, step: str, seconds: float) -> None:
    """``<run_dir>/timings/<step>.seconds``: the file the pipeline's report step sums into timings.json."""
    os.makedirs(os.path.join(run_dir, "timings"), exist_ok=True)
    with open(os.path.join(run_dir, "timings", f"{step}.seconds"), "w") as f:
        f.write(f"{round(seconds)}\n")


def record_wall_time(run_dir: str, seconds: float, host: str | None = None) -> dict:
    """Add the whole command's wall time (and the host) to ``timings.json``; returns the updated timings."""
    path = os.path.join(run_dir, "timings.json")
    timings = read_json(path) if os.path.isfile(path) else {"stages": {}}
    timings["wall_seconds"] = round(seconds, 1)
    if host:
        timings["host"] = host
    write_json(path, timings)
    return timings


def host_description() -> str:
    """``<cpus> CPU cores (<model>)`` of this machine, for the report."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpus} CPU cores" + (f" ({model})" if model else "")


def offline_env(overrides: dict[str, str] | None = None, recipe_vars: Sequence[str] = ()) -> dict[str, str]:
    """The environment for every step: no hub, no tokenizer thread pools fighting the training threads, and the
    recipe overrides (a ``${VAR:-default}`` recipe reads them from the environment). Other variables of the recipe
    that happen to be set in the caller's shell are dropped, so the steps see exactly the settings
    :func:`resolve_settings` resolved (and the run folder recorded)."""
    overrides = overrides or {}
    env = {k: v for k, v in os.environ.items() if k not in recipe_vars or k in overrides}
    env.update(overrides)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"})
    return env


def goals_summary(report_json: str) -> str:
    """The goals table of a written report, as plain lines for the end of the run."""
    data = read_json(report_json)
    return "\n".join(f"  {g['status']:<7} {g['goal']}: {g['detail']} (target {g['target']})"
                     for g in data.get("goals", []))
