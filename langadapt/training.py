"""Pieces of a training run that every stage shares: resume detection, sample generations, and the output files.

* :func:`complete_checkpoints`: the checkpoints a run can resume from (what a restarted run does with its
  ``--output_dir`` is :mod:`langadapt.lifecycle`'s decision).
* :class:`SampleGenerationCallback`: at every evaluation, greedy continuations of a few prompts appended to
  ``samples.jsonl``; works on CPU and GPU, and under ZeRO-3 (every rank takes part, rank 0 writes).
* :func:`save_run_args`, :func:`save_all_results`: ``run_args.json`` and ``all_results.json`` (rank 0 only).
* :class:`PreemptionCallback` + :func:`exit_if_preempted`: on Slurm's warning signal (SIGUSR1) or SIGTERM, save a
  checkpoint at the next optimizer step, stop, and exit with :data:`PREEMPTED_EXIT_CODE` so the launcher requeues;
  the restarted job resumes from that very step.
* :func:`perplexity`, :func:`tokens_per_step`, :func:`world_size`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from langadapt.dist import is_main_process, world_size  # noqa: F401 (re-exported for the stage scripts)
from langadapt.errors import InputError
from langadapt.io import iter_lines, write_json
from langadapt.normalize import NormalizerConfig, normalize
from langadapt.runinfo import write_run_args

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "all_results.json"
# Exit status of a run stopped by a preemption signal after saving its checkpoint: sysexits' EX_TEMPFAIL ("try again
# later"). slurm/common.sh requeues the job on it.
PREEMPTED_EXIT_CODE = 75

# A few prompts that show at a glance whether the model writes Persian and still writes English.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "ایران کشوری است در",
    "حافظ شیرازی شاعری بود که",
    "امروز هوا",
    "The capital of France is",
    "Once upon a time",
)


def complete_checkpoints(output_dir: str) -> list[str]:
    """``checkpoint-N`` folders that can be resumed from (:func:`langadapt.lifecycle.checkpoint_problem` finds
    nothing wrong), oldest first."""
    from langadapt.lifecycle import checkpoint_folders, checkpoint_problem

    return [p for p in checkpoint_folders(output_dir) if checkpoint_problem(p) is None]


def perplexity(loss: float) -> float:
    """exp(loss), ``inf`` when it overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def tokens_per_step(training_args, block_size: int) -> int:
    """Tokens per optimizer step = per-device batch x gradient accumulation x processes x block size."""
    return (training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
            * max(training_args.world_size, 1) * block_size)


def load_prompts(path: str | None, normalizer: NormalizerConfig | None = None) -> list[str]:
    """Sample prompts: one a line (``.txt``) or ``{"prompt": ...}`` per line (``.jsonl``); default
    :data:`DEFAULT_PROMPTS`. Normalized like the training text."""
    if path is None:
        prompts = list(DEFAULT_PROMPTS)
    else:
        if not os.path.isfile(path):
            raise InputError(f"--sample_prompts_file: {path} does not exist", arg="sample_prompts_file", value=path)
        prompts = []
        for lineno, line in iter_lines(path):
            if not line.strip():
                continue
            if path.endswith(".jsonl"):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str):
                    raise InputError(f"{path}:{lineno}: expected an object with a string field 'prompt'")
                line = rec["prompt"]
            prompts.append(line)
        if not prompts:
            raise InputError(f"--sample_prompts_file: {path} holds no prompt", arg="sample_prompts_file", value=path)
    return [normalize(p, normalizer) for p in prompts] if normalizer is not None else prompts


class SampleGenerationCallback(TrainerCallback):
    """After every evaluation, greedy-decode ``max_new_tokens`` after each prompt and append the results to
    ``output_file`` as JSONL records ``{"step", "prompt", "output"}``.

    Works with plain models and PeftModels, on CPU and GPU. Under DeepSpeed ZeRO-3 the parameters are sharded,
    so every rank must run ``generate`` (``synced_gpus=True``); only the main process writes.
    """

    def __init__(self, tokenizer, prompts: Sequence[str], output_file: str, max_new_tokens: int = 32,
                 add_special_tokens: bool = True):
        """``add_special_tokens``: whether tokenizing a prompt adds the tokenizer's BOS; ``False`` for prompts that
        already carry their special tokens (SFT's chat template, see
        :func:`langadapt.templates.prompt_adds_special_tokens`), so that BOS is not doubled."""
        self.add_special_tokens = add_special_tokens
        self.tokenizer = tokenizer
        self.prompts = list(prompts)
        self.output_file = output_file
        self.max_new_tokens = max_new_tokens
        self._last_step: int | None = None  # the final evaluate() after training repeats the last eval's step

    def generate(self, model) -> list[str]:
        """Continuations of every prompt (greedy, so runs are comparable across evaluations)."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        zero3 = is_deepspeed_zero3_enabled()
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        outputs = []
        try:
            with torch.no_grad():
                for prompt in self.prompts:
                    enc = self.tokenizer(prompt, return_tensors="pt",
                                         add_special_tokens=self.add_special_tokens).to(device)
                    ids = model.generate(
                        **enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                        pad_token_id=self.tokenizer.pad_token_id, synced_gpus=zero3,
                    )
                    outputs.append(self.tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        finally:
            model.train(was_training)
        return outputs

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        from transformers.integrations import is_deepspeed_zero3_enabled

        if model is None or self.max_new_tokens == 0 or not self.prompts or state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        if not (state.is_world_process_zero or is_deepspeed_zero3_enabled()):
            return
        outputs = self.generate(model)
        if not state.is_world_process_zero:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.output_file)), exist_ok=True)
        with open(self.output_file, "a", encoding="utf-8") as f:
            for prompt, out in zip(self.prompts, outputs):
                f.write(json.dumps({"step": state.global_step, "prompt": prompt, "output": out},
                                   ensure_ascii=False) + "\n")
        logger.info("sample at step %d: %r -> %r", state.global_step, self.prompts[0], outputs[0])


def _any_rank(flag: bool, device) -> bool:
    """``flag`` OR-ed over all training processes, so that every rank stops at the same step (a rank that stopped
    alone would leave the others waiting in a collective)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class PreemptionCallback(TrainerCallback):
    """Save at the next optimizer step end and stop when a preemption signal arrives (lingua's stool habit).

    Slurm warns a job before its time limit or a preemption (``#SBATCH --signal=B:USR1@300``; slurm/common.sh
    forwards it to the training processes) and sends SIGTERM before killing it. Either signal only sets a flag
    here; at the next step end every rank agrees (one all-reduce of a scalar per step) and the Trainer saves
    ``checkpoint-<step>`` and leaves the loop. The script then calls :func:`exit_if_preempted`, which exits with
    :data:`PREEMPTED_EXIT_CODE`; the launcher requeues and auto-resume continues from that step, so at most one
    step of work is lost instead of up to ``--save_steps``. A signal during the last step changes nothing (the run
    finishes normally). Handlers are installed for the duration of ``train()`` (main thread only) and restored after.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGUSR1, signal.SIGTERM)):
        self.signals = tuple(signals)
        self.received: int | None = None
        self.stopped_at_step: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def preempted(self) -> bool:
        """Whether training stopped early because of a signal (its checkpoint is saved)."""
        return self.stopped_at_step is not None

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            # Logging from a signal handler is fine in CPython (handlers run between bytecodes of the main thread).
            logger.warning("%s received: saving a checkpoint at the next step end, then stopping",
                           signal.Signals(signum).name)

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            logger.warning("not on the main thread: preemption signals cannot be caught")
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        logger.info("preemption: %s save a checkpoint at the next step end and stop (exit %d)",
                    "/".join(signal.Signals(s).name for s in self.signals), PREEMPTED_EXIT_CODE)

    def on_step_end(self, args, state, control, **kwargs):
        if not _any_rank(self.received is not None, args.device):
            return
        if state.max_steps and state.global_step >= state.max_steps:
            return  # the last step: the run ends normally anyway
        control.should_save = True
        control.should_training_stop = True
        self.stopped_at_step = state.global_step
        logger.warning("preempted: saving checkpoint-%d at step %d and stopping", state.global_step,
                       state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


def exit_if_preempted(callback: PreemptionCallback, output_dir: str) -> None:
    """After ``trainer.train()``: exit with :data:`PREEMPTED_EXIT_CODE` when the run stopped for a preemption signal
    (its checkpoint is in ``output_dir``; final outputs are written by the resumed run)."""
    if callback.preempted:
        logger.warning("stopped at step %d for preemption; checkpoint-%d is in %s; exiting with %d so the launcher "
                       "requeues (rerunning the same command resumes from it)", callback.stopped_at_step,
                       callback.stopped_at_step, output_dir, PREEMPTED_EXIT_CODE)
        # Every rank agreed on the stop (PreemptionCallback), so every rank gets here: no rank leaves before the
        # checkpoint is complete. run_main then exits the worker with exactly 75 (see cli._exit_before_finalization).
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        raise SystemExit(PREEMPTED_EXIT_CODE)


def save_run_args(output_dir: str, args: dict[str, Any], resolved: dict[str, Any] | None = None) -> None:
    """``run_args.json`` (every argument group, git commit, Slurm job, ``resolved`` facts), main process only."""
    if is_main_process():
        os.makedirs(output_dir, exist_ok=True)
        write_run_args(output_dir, args, resolved)


def save_all_results(output_dir: str, metrics: dict[str, Any]) -> None:
    """``all_results.json``: train and eval metrics merged into the existing file (a resumed run keeps earlier
    keys), main process only."""
    if not is_main_process():
        return
    path = os.path.join(output_dir, RESULTS_FILE)
    merged: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            merged = json.load(f)
    merged.update(metrics)
    write_json(path, merged)


def eval_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Add ``eval_perplexity`` to Trainer eval metrics (in place) and return them."""
    if "eval_loss" in metrics:
        metrics["eval_perplexity"] = perplexity(metrics["eval_loss"])
    return metrics
