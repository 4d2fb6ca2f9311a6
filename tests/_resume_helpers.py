"""Checks that a rerun really resumed from its checkpoint instead of training again from step 0.

With a fixed seed a run restarted from step 0 ends in the same state as a resumed one (same losses, same weights),
so comparing final states cannot tell them apart. These helpers look at what only a resume does:

* :func:`mark_checkpoint` tags the checkpoint's ``trainer_state.json``; the Trainer loads that state on resume and
  writes it back with the final state, so :func:`carries_mark` is true only if the checkpoint was loaded.
* :func:`step_recording_callback` records the optimizer steps the process itself ran: a resume from step N runs
  N+1.. only.
* :func:`logged_steps` and :func:`count_loss_lines` read the steps from the trainer state and from a log.
"""

from __future__ import annotations

import json
import os

RESUME_MARK = "langadapt_test_loaded_from_checkpoint"


def mark_checkpoint(checkpoint_dir: str) -> None:
    """Add a log entry carrying :data:`RESUME_MARK` to a checkpoint's trainer state."""
    path = os.path.join(checkpoint_dir, "trainer_state.json")
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    state["log_history"].append({"step": state["global_step"], RESUME_MARK: True})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(state, f)


def carries_mark(output_dir: str) -> bool:
    """Whether the final ``trainer_state.json`` in ``output_dir`` holds the mark of :func:`mark_checkpoint`."""
    with open(os.path.join(output_dir, "trainer_state.json"), encoding="utf-8") as f:
        return any(RESUME_MARK in entry for entry in json.load(f)["log_history"])


def logged_steps(output_dir: str, key: str = "loss") -> dict[int, dict]:
    """Log entries with ``key`` in the final trainer state, by step."""
    with open(os.path.join(output_dir, "trainer_state.json"), encoding="utf-8") as f:
        return {e["step"]: e for e in json.load(f)["log_history"] if key in e}


def count_loss_lines(text: str) -> int:
    """Training-loss log lines in a run's output (the Trainer prints each logged dict; eval lines hold 'eval_loss')."""
    return text.count("'loss'")


def step_recording_callback(base, steps: list[int]):
    """A subclass of the callback class ``base`` that appends every finished optimizer step to ``steps``; patch it
    in place of the script's preemption callback to see which steps the run itself computed."""

    class Recorder(base):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)
            return super().on_step_end(args, state, control, **kwargs)

    return Recorder
