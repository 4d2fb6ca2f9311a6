"""The run's goals: thresholds (:class:`Goals`, flags of inference/report.py) and their PASS / FAIL / MISSING
verdict on the collected data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Goals:
    """Thresholds of the run's goals."""

    max_total_minutes: float = field(default=20.0, metadata={"help": "Whole run under this many minutes."})
    min_tokens_per_word_reduction: float = field(
        default=2.5, metadata={"help": "Persian tokens per word: base / merged at least this."}
    )
    min_ppl_reduction: float = field(
        default=0.30,
        metadata={"help": "Held-out Persian per-word perplexity after pretraining at least this share (0-1) lower "
                          "than the base model with the merged tokenizer and initialised rows."},
    )
    max_english_ppl_rise: float = field(
        default=0.10, metadata={"help": "English per-word perplexity after pretraining rises by less than this (0-1)."}
    )
    pretrain_stage: str = field(
        default="pretrain", metadata={"help": "The continued-pretraining stage the perplexity goals look at."}
    )
    persian_key: str = field(default="fa", metadata={"help": "Stem of the held-out Persian file (e.g. fa.jsonl)."})
    english_key: str = field(default="en", metadata={"help": "Stem of the held-out English file."})


def _ppl(data: dict, stage: str, key: str) -> float | None:
    try:
        return float(data["perplexity"][stage]["files"][key]["ppl_word"])
    except (KeyError, TypeError):
        return None


def evaluate_goals(data: dict, goals: Goals) -> list[dict]:
    """Each goal with its target, measured value, and status PASS / FAIL / MISSING."""
    out = []

    def add(name: str, target: str, value: float | None, ok: bool | None, detail: str) -> None:
        status = "MISSING" if value is None or not math.isfinite(value) else ("PASS" if ok else "FAIL")
        out.append({"goal": name, "target": target, "value": value, "status": status, "detail": detail})

    tm = data.get("timings") or {}
    total = tm.get("wall_seconds", tm.get("total_seconds"))  # the whole command when the runner measured it
    add("whole run time", f"< {goals.max_total_minutes:g} min", None if total is None else total / 60,
        total is not None and total / 60 < goals.max_total_minutes,
        "n/a" if total is None else f"{total / 60:.1f} min")

    persian = (data.get("tokenizer") or {}).get("persian")
    red = persian["reduction"] if persian else None
    add("Persian tokens per word, base / merged", f">= {goals.min_tokens_per_word_reduction:g}x", red,
        red is not None and red >= goals.min_tokens_per_word_reduction,
        "n/a" if not persian else f"{persian['base']:.2f} -> {persian['merged']:.2f} tokens/word = {red:.2f}x fewer")

    stage = goals.pretrain_stage
    before, after = _ppl(data, "base_merged", goals.persian_key), _ppl(data, stage, goals.persian_key)
    drop = 1 - after / before if before and after is not None else None
    add("held-out Persian ppl/word after pretraining vs base + merged tokenizer",
        f">= {100 * goals.min_ppl_reduction:g}% lower", drop,
        drop is not None and drop >= goals.min_ppl_reduction,
        "n/a" if drop is None else f"{before:,.1f} -> {after:,.1f} ({100 * drop:.1f}% lower)")

    en0, en1 = _ppl(data, "base", goals.english_key), _ppl(data, stage, goals.english_key)
    rise = en1 / en0 - 1 if en0 and en1 is not None else None
    add("English ppl/word after pretraining vs base", f"rise < {100 * goals.max_english_ppl_rise:g}%", rise,
        rise is not None and rise < goals.max_english_ppl_rise,
        "n/a" if rise is None else f"{en0:,.1f} -> {en1:,.1f} ({100 * rise:+.1f}%)")
    return out
