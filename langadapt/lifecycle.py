"""The life of a training output folder: start, resume, restart after a failed attempt, refuse a mismatch.

:func:`start_or_resume` decides, before any model is loaded, what a training run does with its ``--output_dir``:

* missing or empty: a fresh start;
* holds complete checkpoints: resume from the last *readable* one (a checkpoint truncated by a full disk or a kill
  during the save is skipped, with a warning, for the one before it), after checking that the arguments that shape
  the result (model, tokenizer, mode, data, LoRA shape, block size, batch, optimizer) match the ``run_args.json``
  of the run being resumed;
* holds an earlier attempt that never reached a checkpoint (its ``run_args.json``, logs, half-saved checkpoints, no
  final model): the attempt is moved aside to ``<output_dir>.attempt-N`` and the run starts fresh, so the identical
  rerun (a Slurm requeue after OOM, node failure or time limit) works;
* holds anything else (a finished run without checkpoints, files that are not ours): refused.

``--overwrite_output_dir`` skips all of it and trains from scratch into the folder, as before.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from langadapt.errors import InputError
from langadapt.preflight import safetensors_complete

logger = logging.getLogger(__name__)

RUN_ARGS_FILE = "run_args.json"
# Written only when a run has finished (both training stages write it last).
FINISHED_MARKERS = ("all_results.json",)
# What an attempt that stopped before its first checkpoint can leave behind: provenance, logs, sample
# generations, a checkpoint folder that was being written, a model card.
ATTEMPT_ENTRIES = ("run_args.json", "runs", "samples.jsonl", "README.md")

# Arguments of an argument group that do not change what is trained (where files are cached, how many workers
# tokenize, what is evaluated), so a resume may change them freely. Everything else in the model, adaptation and
# data groups must match. Seed flags (--use_lora, --freeze_transformer, --llama) are folded into --training_mode.
IGNORED_FIELDS: dict[str, frozenset[str]] = {
    "model": frozenset({"llama", "cache_dir", "attn_implementation", "trust_remote_code"}),
    "adaptation": frozenset({"use_lora", "freeze_transformer"}),
    "data": frozenset({"data_cache_dir", "preprocessing_num_workers", "overwrite_cache", "validation_dataset_dir",
                       "validation_file", "max_eval_blocks", "max_eval_samples"}),
}
# TrainingArguments that change the trajectory of a resumed run. Length (max_steps, epochs), saving, logging and
# evaluation settings may change on resume: extending a finished run is a resume with a larger --max_steps.
COMPARED_TRAINING_FIELDS = (
    "seed", "data_seed", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
    "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "lr_scheduler_type",
    "warmup_ratio", "warmup_steps", "optim", "bf16", "fp16", "label_smoothing_factor",
)
# Argument groups whose every field (less IGNORED_FIELDS) is compared.
COMPARED_GROUPS = ("model", "adaptation", "data")


def _as_dict(obj: Any) -> dict[str, Any]:
    """An argument group as ``run_args.json`` records it (TrainingArguments through its ``to_dict``)."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
    return dict(obj) if isinstance(obj, Mapping) else {}


def _same(old: Any, new: Any) -> bool:
    """Equal values; paths compare by where they point (a relative and an absolute spelling of one folder agree)."""
    if old == new:
        return True
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return float(old) == float(new)
    if isinstance(old, str) and isinstance(new, str) and os.path.exists(old) and os.path.exists(new):
        return os.path.realpath(old) == os.path.realpath(new)
    return False


def differing_arguments(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(flag, recorded value, current value)`` for every result-changing argument that differs between a
    ``run_args.json`` payload and the current argument groups (``{"model": ModelArguments, ...}``).

    Arguments the recorded run did not have (added to the code since) are not compared.
    """
    differing = []
    for group, value in current.items():
        new = _as_dict(value)
        old = recorded.get(group)
        if not isinstance(old, Mapping):
            continue
        if group in COMPARED_GROUPS:
            names = [n for n in new if n not in IGNORED_FIELDS.get(group, ())]
        elif group == "training":
            names = list(COMPARED_TRAINING_FIELDS)
        else:
            continue
        for name in names:
            if name in old and name in new and not _same(old[name], new[name]):
                differing.append((f"--{name}", old[name], new[name]))
    return differing


def checkpoint_problem(path: str) -> str | None:
    """Why a ``checkpoint-N`` folder cannot be resumed from (None when it can): no or unreadable
    ``trainer_state.json``, or a truncated or unreadable weights file."""
    state = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(state):
        return "no trainer_state.json (the save did not finish)"
    try:
        with open(state, encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError):
        return "trainer_state.json is not readable JSON"
    for root, _, names in os.walk(path):
        for name in names:
            if name.endswith(".safetensors") and not safetensors_complete(os.path.join(root, name)):
                return f"{os.path.relpath(os.path.join(root, name), path)} is truncated or unreadable"
    return None


def checkpoint_folders(output_dir: str) -> list[str]:
    """Every ``checkpoint-N`` folder of ``output_dir``, oldest (lowest N) first, complete or not."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if name.startswith("checkpoint-") and name[11:].isdigit() and os.path.isdir(path):
            found.append((int(name[11:]), path))
    return [p for _, p in sorted(found)]


def last_good_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint that can be resumed from; newer broken ones are skipped with a warning naming why."""
    for path in reversed(checkpoint_folders(output_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if os.path.isfile(os.path.join(path, "trainer_state.json")):  # a save that finished, then was damaged
            logger.warning("skipping %s: %s; resuming from the checkpoint before it", path, problem)
        else:
            logger.info("skipping %s: %s", path, problem)
    return None


def _read_run_args(output_dir: str) -> dict[str, Any] | None:
    path = os.path.join(output_dir, RUN_ARGS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def check_resume_compatible(output_dir: str, args: Mapping[str, Any], what: str) -> None:
    """Refuse to continue ``what`` (a checkpoint or a finished run in ``output_dir``) with arguments that change the
    result; the error names every differing flag with its recorded and current value."""
    recorded = _read_run_args(output_dir)
    if recorded is None:
        return
    differing = differing_arguments(recorded, args)
    if differing:
        listed = "; ".join(f"{flag} was {old!r}, now {new!r}" for flag, old, new in differing)
        raise InputError(
            f"{output_dir} holds {what} made with other settings ({listed}); resuming would mix two runs. Rerun "
            "with the recorded settings (see its run_args.json), choose another --output_dir, or pass "
            "--overwrite_output_dir to train from scratch into it",
            arg="output_dir", value=output_dir,
        )


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def move_attempt_aside(output_dir: str) -> str:
    """Rename ``output_dir`` to the first free ``<output_dir>.attempt-N`` (one rename, so other ranks see either
    the old folder or none) and return the new name. Nothing is deleted: its logs may explain the failure."""
    output_dir = os.path.abspath(output_dir)
    n = 1
    while os.path.exists(f"{output_dir}.attempt-{n}"):
        n += 1
    target = f"{output_dir}.attempt-{n}"
    os.rename(output_dir, target)
    return target


def start_or_resume(output_dir: str, overwrite_output_dir: bool, resume_from_checkpoint: str | None,
                    args: Mapping[str, Any]) -> str | None:
    """The checkpoint to resume from, or None to start fresh; see the module docs for the cases.

    ``args``: the argument groups as written to ``run_args.json`` (``{"model": ModelArguments, ...,
    "training": TrainingArguments}``), compared with the recorded ones before resuming. Raises
    :class:`~langadapt.errors.InputError` (``arg="output_dir"`` or ``"resume_from_checkpoint"``) when the folder
    cannot be used. Runs before the model loads, on every rank; only the main process moves an attempt aside.
    """
    if resume_from_checkpoint:
        if not os.path.isdir(resume_from_checkpoint):
            raise InputError(f"--resume_from_checkpoint: {resume_from_checkpoint} does not exist",
                             arg="resume_from_checkpoint", value=resume_from_checkpoint)
        problem = checkpoint_problem(resume_from_checkpoint)
        if problem:
            raise InputError(f"--resume_from_checkpoint: {resume_from_checkpoint} cannot be resumed from: {problem}",
                             arg="resume_from_checkpoint", value=resume_from_checkpoint)
        if not overwrite_output_dir:
            check_resume_compatible(os.path.dirname(os.path.abspath(resume_from_checkpoint)), args,
                                    f"checkpoint {os.path.basename(resume_from_checkpoint)}")
        return resume_from_checkpoint
    if overwrite_output_dir or not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return None
    checkpoint = last_good_checkpoint(output_dir)
    if checkpoint is not None:
        check_resume_compatible(output_dir, args, f"checkpoint {os.path.basename(checkpoint)}")
        logger.info("resuming from %s", checkpoint)
        return checkpoint
    entries = [e for e in os.listdir(output_dir) if not e.startswith(".")]
    finished = [m for m in FINISHED_MARKERS if m in entries]
    if finished:
        raise InputError(
            f"--output_dir: {output_dir} holds a finished run ({finished[0]}) and no checkpoint to resume; choose "
            "another folder, or pass --overwrite_output_dir to train from scratch into it",
            arg="output_dir", value=output_dir,
        )
    ours = RUN_ARGS_FILE in entries and all(e in ATTEMPT_ENTRIES or e.startswith("checkpoint-") for e in entries)
    if not ours:
        raise InputError(
            f"--output_dir: {output_dir} exists, is not empty and holds no checkpoint to resume; choose another "
            "folder or pass --overwrite_output_dir",
            arg="output_dir", value=output_dir,
        )
    if _is_main_process():
        moved = move_attempt_aside(output_dir)
        logger.warning("%s held an attempt that stopped before its first checkpoint; moved it to %s and starting "
                       "afresh", output_dir, moved)
    return None


def output_modes_callback():
    """A ``TrainerCallback`` that gives every file under ``output_dir`` the umask's modes after each checkpoint save
    (safetensors writes 0600 whatever the umask; see :func:`langadapt.io.honour_umask`). Main process only."""
    from transformers import TrainerCallback

    from langadapt.io import honour_umask

    class OutputModesCallback(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                honour_umask(args.output_dir)

    return OutputModesCallback()


def finish_outputs(output_dir: str) -> None:
    """After the final save: the umask's modes on everything in ``output_dir`` (main process only)."""
    from langadapt.io import honour_umask

    if _is_main_process():
        honour_umask(output_dir)
