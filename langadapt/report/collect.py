"""Collecting a run directory's measurements as plain data (layout: :mod:`langadapt.report`); a missing part is
None or empty, never invented."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from langadapt.evaldata import upgrade_prediction_record
from langadapt.io import read_json
from langadapt.report.goals import Goals


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
    from langadapt.compare import comparison, merge_stages

    stages = merge_stages(stages, lm_eval_scores(run_dir))
    if not stages:
        return None
    return {**comparison(ordered_stages(stages)), "path": None}


def lm_eval_scores(run_dir: str) -> list[tuple[str, dict]]:
    """``[(stage, columns)]`` from ``lm_eval/<stage>/lm_eval_summary.json`` (inference/lm_eval.py), oldest first."""
    root = os.path.join(run_dir, "lm_eval")
    folders = sorted(glob.glob(os.path.join(root, "*", "lm_eval_summary.json")),
                     key=lambda p: (os.path.getmtime(p), p))
    if not folders:
        return []
    from langadapt.lm_eval_tasks import read_summary, stage_scores

    return [(os.path.basename(os.path.dirname(p)), stage_scores(read_summary(p))) for p in folders]


def ordered_stages(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
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
    stages = ordered_stages(list(prediction_dirs(run_dir).items()))
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
            answers[name] = {r["id"]: r.get("prediction", "") for r in _jsonl(os.path.join(folder, rel))}
        for rec in _jsonl(path)[:per_file]:
            out.append({
                "file": rel, "id": rec["id"], "instruction": _short(rec.get("instruction", ""), max_chars),
                "input": _short(rec.get("input", ""), max_chars), "gold": _short(str(rec.get("gold", "")), max_chars),
                "outputs": {name: _short(answers[name].get(rec["id"], "(missing)"), max_chars) for name, _ in stages},
            })
    return out


def _jsonl(path: str) -> list[dict]:
    """Prediction records of ``path`` with the current field names ([] when the file is absent)."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [upgrade_prediction_record(json.loads(line)) for line in f if line.strip()]


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
