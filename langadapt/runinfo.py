"""Provenance written next to every stage's outputs (``run_args.json``)."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
import time
from typing import Any

from langadapt.io import write_json

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit() -> str | None:
    """Commit of the langadapt checkout (with ``-dirty`` when it has local changes), or None outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _as_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):  # TrainingArguments hides tokens and resolves enums in to_dict()
            return obj.to_dict()
        return dataclasses.asdict(obj)
    return obj


def run_metadata() -> dict[str, Any]:
    """Where and when: git commit, Slurm job, host, versions, command line."""
    import torch
    import transformers

    return {
        "git_commit": git_commit(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT"),
        "host": platform.node(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def write_run_args(output_dir: str, args: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """Write ``run_args.json``: every argument group (dataclasses or dicts), run metadata and ``extra`` facts
    decided at run time (e.g. the embedding initialisation actually applied)."""
    payload = {name: _as_dict(value) for name, value in args.items()}
    payload["run"] = run_metadata()
    if extra:
        payload["resolved"] = extra
    path = os.path.join(output_dir, "run_args.json")
    write_json(path, payload)
    return path
