"""The run report: one Markdown page and a few PNG charts that say whether a run did what it set out to do.

Read from a run directory (what ``slurm/pipeline.sh`` and ``demo/run_demo.py`` write; every part is optional and
a missing part is reported as missing, never invented)::

    <run_dir>/
      tokenizer/merge_report.json       tokens per word, base vs merged (tokenizer/merge.py)
      pretrain/trainer_state.json       loss curve (any folder holding trainer_state.json is a training stage)
      sft/trainer_state.json
      perplexity/<stage>/perplexity.json   held-out perplexity (inference/perplexity.py); stage names used by the
                                           goals: base, base_merged (base + merged tokenizer + initialised rows),
                                           pretrain, sft
      predictions/<stage>/...jsonl      generations (inference/inference.py), for the sample table
      lm_eval/<stage>/lm_eval_summary.json  lm-evaluation-harness results (inference/lm_eval.py), extra columns
      scores/comparison.json            task scores per stage (inference/score.py --compare); without it the
                                        report compares predictions/<stage>/scores.json itself
      timings.json                      {"stages": {name: seconds}, "total_seconds": s} (the demo runner writes it)

The goals (defaults from the demo's issue; each a flag of ``inference/report.py``) are evaluated with the numbers
next to them and written as PASS / FAIL (or MISSING when the run has no such measurement).

Modules: :mod:`~langadapt.report.collect` (reading the run directory), :mod:`~langadapt.report.goals`,
:mod:`~langadapt.report.render` (Markdown), :mod:`~langadapt.report.charts` (PNG); :func:`write_report` runs them.
"""

from __future__ import annotations

import os

from langadapt.io import write_json, write_text
from langadapt.report.charts import plot_charts
from langadapt.report.collect import collect, lm_eval_scores, ordered_stages, prediction_dirs, samples, task_scores
from langadapt.report.goals import Goals, evaluate_goals
from langadapt.report.render import PPL_LABELS, SECTIONS, render_markdown

__all__ = ["PPL_LABELS", "REPORT_JSON", "REPORT_MD", "SECTIONS", "Goals", "collect", "evaluate_goals",
           "lm_eval_scores", "ordered_stages", "plot_charts", "prediction_dirs", "render_markdown", "samples", "task_scores", "write_report"]

REPORT_MD, REPORT_JSON = "report.md", "report.json"


def write_report(run_dir: str, output_dir: str, goals: Goals | None = None) -> tuple[str, dict]:
    """Collect, evaluate, plot and write ``report.md`` + ``report.json`` + charts into ``output_dir``.

    Returns the Markdown text and the report data (with ``goals``).
    """
    goals = goals or Goals()
    data = collect(run_dir, goals)
    result = evaluate_goals(data, goals)
    os.makedirs(output_dir, exist_ok=True)
    charts = plot_charts(data, output_dir)
    text = render_markdown(data, result, charts)
    write_text(os.path.join(output_dir, REPORT_MD), text)
    write_json(os.path.join(output_dir, REPORT_JSON), {**data, "goals": result, "charts": charts})
    return text, {**data, "goals": result}
