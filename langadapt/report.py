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
      scores/comparison.json            task scores per stage (inference/score.py --compare); without it the
                                        report compares predictions/<stage>/scores.json itself
      timings.json                      {"stages": {name: seconds}, "total_seconds": s} (the demo runner writes it)

The goals (defaults from the demo's issue; each a flag of ``inference/report.py``) are evaluated with the numbers
next to them and written as PASS / FAIL (or MISSING when the run has no such measurement).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from langadapt.io import read_json, write_json, write_text

logger = logging.getLogger(__name__)

REPORT_MD, REPORT_JSON = "report.md", "report.json"
PPL_LABELS = {
    "base": "base model, base tokenizer",
    "base_merged": "base model, merged tokenizer, initialised rows",
    "pretrain": "after pretraining",
    "sft": "after SFT",
}
SECTIONS = ("Goals", "Tokenizer", "Training loss", "Held-out perplexity", "Task scores", "Wall time per stage",
            "Sample generations")


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


# ----------------------------------------------------------------------------------------------------- collection


def _find(run_dir: str, name: str, prefer: str | None = None) -> str | None:
    """``run_dir/prefer/name`` if it exists, else the shallowest ``name`` under ``run_dir`` (None if none)."""
    if prefer and os.path.isfile(os.path.join(run_dir, prefer, name)):
        return os.path.join(run_dir, prefer, name)
    hits = sorted(glob.glob(os.path.join(run_dir, "**", name), recursive=True), key=lambda p: (p.count(os.sep), p))
    hits = [h for h in hits if "/." not in h[len(run_dir):] and "checkpoint-" not in h]  # no temp dirs/checkpoints
    return hits[0] if hits else None


def _rel(run_dir: str, path: str | None) -> str | None:
    return os.path.relpath(path, run_dir) if path else None


def tokenizer_stats(run_dir: str, persian_key: str) -> dict | None:
    """Tokens per word, base vs merged, per eval file of the merge report; ``persian`` = the Persian file's."""
    path = _find(run_dir, "merge_report.json", "tokenizer")
    if not path:
        return None
    rep = read_json(path)
    files = {}
    for fpath, s in (rep.get("eval") or {}).items():
        files[os.path.basename(fpath)] = {
            "base": s["base_tokens_per_word"], "merged": s["merged_tokens_per_word"],
            "reduction": s["base_tokens_per_word"] / s["merged_tokens_per_word"] if s["merged_tokens_per_word"]
            else float("nan"), "words": s.get("words"),
        }
    persian = next((v for k, v in files.items() if os.path.splitext(k)[0] == persian_key), None)
    if persian is None:  # no file named after the key: the file with the largest reduction is the target language
        persian = max(files.values(), key=lambda v: v["reduction"], default=None)
    return {"path": _rel(run_dir, path), "kind": rep.get("kind"), "base_vocab_size": rep.get("base_vocab_size"),
            "merged_vocab_size": rep.get("merged_vocab_size"), "new_pieces": rep.get("new_pieces"),
            "files": files, "persian": persian}


def training_curves(run_dir: str) -> dict[str, dict]:
    """``{stage: {"steps", "loss", "eval_steps", "eval_loss", "runtime", "path"}}`` of every training stage, in the
    order they ran (each stage writes its trainer_state.json when it ends)."""
    out = {}
    found = glob.glob(os.path.join(run_dir, "**", "trainer_state.json"), recursive=True)
    for path in sorted(found, key=lambda p: (os.path.getmtime(p), p)):
        rel = os.path.relpath(path, run_dir)
        if "checkpoint-" in rel or "/." in "/" + rel:
            continue
        stage = rel.split(os.sep)[0] if os.sep in rel else "train"
        history = read_json(path).get("log_history") or []
        steps = [h["step"] for h in history if "loss" in h]
        curve = {
            "path": rel, "steps": steps, "loss": [h["loss"] for h in history if "loss" in h],
            "eval_steps": [h["step"] for h in history if "eval_loss" in h],
            "eval_loss": [h["eval_loss"] for h in history if "eval_loss" in h],
            "runtime": next((h.get("train_runtime") for h in history if "train_runtime" in h), None),
            "train_loss": next((h.get("train_loss") for h in history if "train_loss" in h), None),
        }
        out[stage] = curve
    return out


def perplexities(run_dir: str) -> dict[str, dict]:
    """``{stage: perplexity.json payload}`` in the order they were measured; the stage is the payload's name, else
    its folder's name."""
    out = {}
    found = glob.glob(os.path.join(run_dir, "**", "perplexity.json"), recursive=True)
    for path in sorted(found, key=lambda p: (os.path.getmtime(p), p)):
        if "/." in path[len(run_dir):]:
            continue
        data = read_json(path)
        stage = data.get("name") or os.path.basename(os.path.dirname(path))
        out[stage] = {**data, "path": _rel(run_dir, path)}
    return out


def prediction_dirs(run_dir: str) -> dict[str, str]:
    """``{stage: folder}`` of ``predictions/<stage>`` folders holding .jsonl predictions."""
    root = os.path.join(run_dir, "predictions")
    if not os.path.isdir(root):
        return {}
    names = [n for n in os.listdir(root)
             if not n.startswith(".") and glob.glob(os.path.join(root, n, "**", "*.jsonl"), recursive=True)]
    names.sort(key=lambda n: (os.path.getmtime(os.path.join(root, n)), n))  # the order the stages ran in
    return {n: os.path.join(root, n) for n in names}


def task_scores(run_dir: str) -> dict | None:
    """The per-stage comparison table (score.py's comparison.json), or one built from per-stage scores.json."""
    path = _find(run_dir, "comparison.json", "scores")
    if path:
        return {**read_json(path), "path": _rel(run_dir, path)}
    stages = []
    for name, folder in prediction_dirs(run_dir).items():
        scores = os.path.join(folder, "scores.json")
        if os.path.isfile(scores):
            stages.append((name, read_json(scores)))
    if not stages:
        return None
    from langadapt.compare import comparison

    return {**comparison(_ordered_stages(stages)), "path": None}


def _ordered_stages(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """base and base_merged first, then the others in the order given (a stable sort)."""
    order = {name: i for i, name in enumerate(("base", "base_merged"))}
    return sorted(items, key=lambda kv: order.get(kv[0], len(order)))


def timings(run_dir: str) -> dict | None:
    """timings.json, its steps in the order they ran (the order their ``timings/<step>.seconds`` were written)."""
    path = os.path.join(run_dir, "timings.json")
    if not os.path.isfile(path):
        return None
    data = read_json(path)
    stages = data.get("stages") or {}

    def written(name: str) -> float:
        f = os.path.join(run_dir, "timings", f"{name}.seconds")
        return os.path.getmtime(f) if os.path.isfile(f) else float("inf")

    data["stages"] = {name: stages[name] for name in sorted(stages, key=lambda n: (written(n), n))}
    return data


def samples(run_dir: str, per_file: int = 1, max_files: int = 4, max_chars: int = 160) -> list[dict]:
    """A few test items with every stage's answer side by side (same file, same id), Persian files first."""
    stages = _ordered_stages(list(prediction_dirs(run_dir).items()))
    if not stages:
        return []
    first = stages[0][1]
    files = sorted(glob.glob(os.path.join(first, "**", "*.jsonl"), recursive=True),
                   key=lambda p: (not os.path.relpath(p, first).startswith("fa"), p))
    out = []
    for path in files[:max_files]:
        rel = os.path.relpath(path, first)
        answers: dict[str, dict[int, str]] = {}
        for name, folder in stages:
            answers[name] = {r["id"]: r.get("output", "") for r in _jsonl(os.path.join(folder, rel))}
        for rec in _jsonl(path)[:per_file]:
            out.append({
                "file": rel, "id": rec["id"], "instruction": _short(rec.get("instruction", ""), max_chars),
                "input": _short(rec.get("input", ""), max_chars), "gold": _short(str(rec.get("answer", "")), max_chars),
                "outputs": {name: _short(answers[name].get(rec["id"], "(missing)"), max_chars) for name, _ in stages},
            })
    return out


def _jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def collect(run_dir: str, goals: Goals) -> dict:
    """Everything the report shows, as plain data (also written as report.json)."""
    return {
        "run_dir": os.path.abspath(run_dir),
        "tokenizer": tokenizer_stats(run_dir, goals.persian_key),
        "training": training_curves(run_dir),
        "perplexity": perplexities(run_dir),
        "scores": task_scores(run_dir),
        "timings": timings(run_dir),
        "samples": samples(run_dir),
    }


# ---------------------------------------------------------------------------------------------------------- goals


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


# -------------------------------------------------------------------------------------------------------- markdown


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.{digits}f}"
    return str(v)


def render_markdown(data: dict, goals_result: list[dict], charts: dict[str, str]) -> str:
    """The report page. Every section is always present; a missing input says so."""
    md = ["# langadapt run report", "", f"Run directory: `{data['run_dir']}`", ""]

    md += ["## Goals", "", "| goal | target | measured | status |", "| --- | --- | --- | --- |"]
    md += [f"| {g['goal']} | {g['target']} | {g['detail']} | **{g['status']}** |" for g in goals_result]
    md.append("")

    md += ["## Tokenizer", ""]
    tok = data.get("tokenizer")
    if tok:
        md += [f"{tok['kind']} tokenizer: {tok['base_vocab_size']} -> {tok['merged_vocab_size']} tokens "
               f"({tok['new_pieces']} new pieces); from `{tok['path']}`.", "",
               "| held-out file | words | tokens/word base | tokens/word merged | reduction |",
               "| --- | ---: | ---: | ---: | ---: |"]
        md += [f"| {name} | {_f(s['words'])} | {_f(s['base'])} | {_f(s['merged'])} | {_f(s['reduction'])}x |"
               for name, s in tok["files"].items()]
        md += _chart(charts, "tokens_per_word")
    else:
        md.append("MISSING: no merge_report.json in the run directory (tokenizer stage not run).")
    md.append("")

    md += ["## Training loss", ""]
    if data["training"]:
        md += ["| stage | logged steps | first loss | last loss | train runtime (s) |",
               "| --- | ---: | ---: | ---: | ---: |"]
        for stage, c in data["training"].items():
            md.append(f"| {stage} | {len(c['steps'])} | {_f(c['loss'][0] if c['loss'] else None, 3)} | "
                      f"{_f(c['loss'][-1] if c['loss'] else None, 3)} | {_f(c['runtime'], 1)} |")
        md += _chart(charts, "loss")
    else:
        md.append("MISSING: no trainer_state.json in the run directory (no training stage finished).")
    md.append("")

    md += ["## Held-out perplexity", ""]
    ppl = data["perplexity"]
    if ppl:
        keys = sorted({k for p in ppl.values() for k in p.get("files", {})})
        md += ["Per word, per character and in bits per UTF-8 byte, so that models with different tokenizers compare "
               "(total NLL / words, characters or bytes of the same text; bits/byte: lower is better).", "",
               "| stage | " + " | ".join(f"{k} ppl/word | {k} bits/byte | {k} ppl/char | {k} tokens/word"
                                      for k in keys) + " |",
               "| --- | " + " | ".join("---: | ---: | ---: | ---:" for _ in keys) + " |"]
        for stage, p in _ordered_stages(list(ppl.items())):
            cells = []
            for k in keys:
                r = p.get("files", {}).get(k)
                cells += ([_f(r["ppl_word"], 1), _f(r.get("bpb"), 3), _f(r["ppl_char"], 3), _f(r["tokens_per_word"])]
                          if r else ["-"] * 4)
            md.append(f"| {PPL_LABELS.get(stage, f'after {stage}')} | " + " | ".join(cells) + " |")
        words = {k: next((p["files"][k]["words"] for p in ppl.values() if k in p.get("files", {})), None) for k in keys}
        md += ["", "Held-out words scored: " + ", ".join(f"{k} {w}" for k, w in words.items()) + "."]
        md += _chart(charts, "perplexity")
    else:
        md.append("MISSING: no perplexity.json in the run directory (inference/perplexity.py not run).")
    md.append("")

    md += ["## Task scores", ""]
    sc = data.get("scores")
    if sc and sc.get("columns"):
        from langadapt.compare import comparison_markdown

        md.append(comparison_markdown(sc).rstrip())
        md += _chart(charts, "scores")
    else:
        md.append("MISSING: no scored predictions in the run directory (inference/score.py not run).")
    md.append("")

    md += ["## Wall time per stage", ""]
    tm = data.get("timings")
    if tm and tm.get("stages"):
        md += ["| stage | seconds | minutes |", "| --- | ---: | ---: |"]
        md += [f"| {name} | {_f(s, 1)} | {_f(s / 60, 2)} |" for name, s in tm["stages"].items()]
        if tm.get("total_seconds") is not None:
            md.append(f"| **sum of steps** | {_f(tm['total_seconds'], 1)} | {_f(tm['total_seconds'] / 60, 2)} |")
        if tm.get("wall_seconds") is not None:
            md.append(f"| **whole command** | {_f(tm['wall_seconds'], 1)} | {_f(tm['wall_seconds'] / 60, 2)} |")
        if tm.get("host"):
            md += ["", f"Measured on {tm['host']}."]
        md += _chart(charts, "timings")
    else:
        md.append("MISSING: no timings.json in the run directory.")
    md.append("")

    md += ["## Sample generations", ""]
    if data["samples"]:
        stages = list(data["samples"][0]["outputs"])
        md += ["| file | input | gold | " + " | ".join(stages) + " |", "| --- | --- | --- | " + " | ".join(
            "---" for _ in stages) + " |"]
        for s in data["samples"]:
            cells = [s["file"], s["input"] or s["instruction"], s["gold"]] + [s["outputs"][n] for n in stages]
            md.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    else:
        md.append("MISSING: no predictions/<stage> folders in the run directory.")
    md.append("")
    return "\n".join(md)


def _chart(charts: dict[str, str], name: str) -> list[str]:
    return ["", f"![{name}]({charts[name]})"] if name in charts else []


# ---------------------------------------------------------------------------------------------------------- charts


def plot_charts(data: dict, out_dir: str) -> dict[str, str]:
    """Write the PNG charts the data allows; returns ``{name: file name}``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    charts: dict[str, str] = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"{name}.png"), dpi=100)
        plt.close(fig)
        charts[name] = f"{name}.png"

    tok = data.get("tokenizer")
    if tok and tok["files"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = list(tok["files"])
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [tok["files"][n]["base"] for n in names], 0.4, label="base tokenizer")
        ax.bar([x + 0.2 for x in xs], [tok["files"][n]["merged"] for n in names], 0.4, label="merged tokenizer")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names)
        ax.set_ylabel("tokens per word")
        ax.legend()
        save(fig, "tokens_per_word")

    if data["training"]:
        fig, axes = plt.subplots(1, len(data["training"]), figsize=(5 * len(data["training"]), 3.5), squeeze=False)
        for ax, (stage, c) in zip(axes[0], data["training"].items()):
            ax.plot(c["steps"], c["loss"], marker=".", label="train")
            if c["eval_loss"]:
                ax.plot(c["eval_steps"], c["eval_loss"], marker="o", label="eval")
            ax.set_title(stage)
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.legend()
        save(fig, "loss")

    ppl = data["perplexity"]
    if ppl:
        keys = sorted({k for p in ppl.values() for k in p.get("files", {})})
        stages = [s for s, _ in _ordered_stages(list(ppl.items()))]
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
        for ax, k in zip(axes[0], keys):
            vals = [ppl[s].get("files", {}).get(k, {}).get("ppl_word", float("nan")) for s in stages]
            ax.bar(range(len(stages)), vals)
            ax.set_xticks(range(len(stages)))
            ax.set_xticklabels(stages, rotation=20)
            ax.set_yscale("log")
            ax.set_title(f"held-out {k}: perplexity per word")
        save(fig, "perplexity")

    sc = data.get("scores")
    if sc and sc.get("columns"):
        from langadapt.compare import comparison_chart

        comparison_chart(sc, os.path.join(out_dir, "scores.png"))
        charts["scores"] = "scores.png"

    tm = data.get("timings")
    if tm and tm.get("stages"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        names = list(tm["stages"])
        ax.barh(names, [tm["stages"][n] / 60 for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("minutes")
        save(fig, "timings")
    return charts


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
