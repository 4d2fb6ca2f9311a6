"""Scoring prediction folders and the per-stage comparison table (rows = stage, columns = task x language).

A prediction folder is scored file by file (:func:`score_folder`) into the ``scores.json`` layout
``{key: {"task", "n", ...metrics}}``. Several folders (e.g. base, after pretraining, after SFT) become one table
like the paper's, with one headline metric per column: accuracy for classification, ROUGE-L for summaries, BLEU for
translation (every metric stays in ``comparison.json``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from langadapt.errors import InputError
from langadapt.evaldata import CLASSIFICATION_TASKS, PREDICTION_EXTENSION, TASKS, file_key, language_of, \
    read_predictions, task_of
from langadapt.io import resolve_files
from langadapt.metrics import score_records

logger = logging.getLogger(__name__)

HEADLINE = {**{t: "accuracy" for t in CLASSIFICATION_TASKS}, "summary": "rougeL", "translation": "bleu"}
CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "unparsed")
GENERATION_METRICS = ("rouge1", "rouge2", "rougeL", "chrf", "bleu")


def score_folder(predictions_dir: str, task: str | None = None, bleu_tokenize: str | None = None,
                 flag: str = "--predictions_dir") -> dict[str, dict[str, Any]]:
    """Scores of every ``.jsonl`` prediction file under ``predictions_dir``, keyed by path without extension."""
    if not os.path.isdir(predictions_dir):
        raise InputError(f"{flag}: {predictions_dir} is not a folder; pass the --predictions_dir of inference.py",
                         value=predictions_dir)
    try:
        files = resolve_files(predictions_dir, flag, (PREDICTION_EXTENSION,))
    except InputError:
        raise InputError(f"{flag}: {predictions_dir} holds no {PREDICTION_EXTENSION} prediction files; run "
                         f"inference/inference.py --predictions_dir {predictions_dir} first") from None
    scores: dict[str, dict[str, Any]] = {}
    for path in files:
        key = file_key(path, predictions_dir)
        file_task = task_of(key, task)
        if file_task is None:
            raise InputError(f"{path}: cannot tell the task from the file name; name it after one of "
                             f"{', '.join(TASKS)} (e.g. translation_en_fa.jsonl) or pass --task")
        records = read_predictions(path)
        if not records:
            raise InputError(f"{path}: holds no predictions; rerun inference/inference.py")
        missing = [r["id"] for r in records if r.get("gold") is None]
        if missing:
            raise InputError(f"{path}: records {missing[:5]} have no gold answer (\"gold\"); score only labeled "
                             "test sets", value=missing[:5])
        scores[key] = score_records(file_task, records, bleu_tokenize)
        logger.info("%s (%s, n=%d): %s", key, file_task, len(records), _headline_text(scores[key]))
    return scores


def _headline_text(s: dict[str, Any]) -> str:
    names = CLASSIFICATION_METRICS if s["task"] in CLASSIFICATION_TASKS else GENERATION_METRICS
    return ", ".join(f"{m} {s[m]:.1f}" for m in names)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def scores_markdown(scores: dict[str, dict[str, Any]]) -> str:
    """``scores.md``: one row per file, every metric (``-`` where it does not apply)."""
    cols = ["n", "errors", *CLASSIFICATION_METRICS, *GENERATION_METRICS]
    lines = ["| file | task | " + " | ".join(cols) + " |", "| --- | --- | " + " | ".join("---:" for _ in cols) + " |"]
    for key, s in sorted(scores.items()):
        lines.append(f"| {key} | {s['task']} | " + " | ".join(_fmt(s.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n\nScores 0-100; unparsed = % of responses that name no label of the file.\n"


def _column_label(key: str, task: str) -> str:
    stem, lang = key.split("/")[-1], language_of(key)
    return f"{stem} ({lang})" if lang else stem


def comparison(stages: list[tuple[str, dict[str, dict[str, Any]]]]) -> dict[str, Any]:
    """The table over stages: ``{"columns": [...], "rows": {stage: {column: value}}, "scores": {...}}``."""
    keys: dict[str, str] = {}
    metrics: dict[str, str] = {}
    for _, scores in stages:
        for key, s in scores.items():
            keys.setdefault(key, s["task"])
            # An entry that is not one of our task families (an lm-eval benchmark) names its own headline metric.
            metrics.setdefault(key, s.get("headline") or HEADLINE[s["task"]])
    order = {t: i for i, t in enumerate(TASKS)}
    ordered = sorted(keys, key=lambda k: (order.get(keys[k], len(order)), k.split("/")[-1], language_of(k) or ""))
    columns = [{"key": k, "task": keys[k], "language": language_of(k), "metric": metrics[k],
                "label": _column_label(k, keys[k])} for k in ordered]
    rows = {name: {c["key"]: scores.get(c["key"], {}).get(c["metric"]) for c in columns} for name, scores in stages}
    return {"columns": columns, "rows": rows, "scores": {name: scores for name, scores in stages}}


def merge_stages(stages: list[tuple[str, dict[str, dict[str, Any]]]],
                 more: list[tuple[str, dict[str, dict[str, Any]]]]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """``stages`` with the entries of ``more`` added to the stage of the same name (a new row at the end if none),
    e.g. the lm-eval benchmark scores of each stage (:func:`langadapt.lm_eval_tasks.stage_scores`)."""
    merged = {name: dict(scores) for name, scores in stages}
    for name, scores in more:
        merged.setdefault(name, {}).update(scores)
    return list(merged.items())


def comparison_markdown(table: dict[str, Any]) -> str:
    cols = table["columns"]
    head = "| stage | " + " | ".join(f"{c['label']} {c['metric']}" for c in cols) + " |"
    lines = [head, "| --- | " + " | ".join("---:" for _ in cols) + " |"]
    for name, row in table["rows"].items():
        counts = {k: s.get("n") for k, s in table["scores"].get(name, {}).items()}
        lines.append(f"| {name} | " + " | ".join(_cell(row[c["key"]], counts.get(c["key"])) for c in cols) + " |")
    return ("\n".join(lines) + "\n\nHeadline metric per column (0-100), (n) records scored; every metric is in "
            "comparison.json.\n")


def _cell(value, n) -> str:
    """A table cell: the value and the number of records it stands on, so unequal test subsets show."""
    return _fmt(value) if value is None or n is None else f"{_fmt(value)} ({n})"


def comparison_chart(table: dict[str, Any], path: str) -> None:
    """Grouped bar chart: one group per column (task x language), one bar per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, stages = table["columns"], list(table["rows"])
    width = 0.8 / max(len(stages), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(cols) + 2), 4.5))
    for i, name in enumerate(stages):
        values = [table["rows"][name][c["key"]] or 0.0 for c in cols]
        ax.bar([j + (i - (len(stages) - 1) / 2) * width for j in range(len(cols))], values, width, label=name)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([f"{c['label']}\n{c['metric']}" for c in cols], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("score (0-100)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
