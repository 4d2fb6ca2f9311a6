"""The adaptation study: several arms of one recipe at an equal text budget, compared in bits per byte.

A study file (``configs/studies/*.yaml``, format in :class:`Study`) names a base recipe (``configs/recipes/*.env``)
and arms; each arm is that recipe with ``VAR=value`` overrides, so it is a stage chain ``slurm/pipeline.sh`` already
runs (on Slurm every arm is its own job chain; ``--local`` runs them in turn). This module holds what is not running:

* :func:`load_study`: read and check the file.
* :func:`prepare_text`: the equal budget. The first whole documents of each source up to its character budget,
  written once to ``<study_dir>/text/`` (``all/`` and the two halves ``half1/``, ``half2/`` for two-phase arms);
  every arm trains one epoch over the same files, so every arm reads the same documents and characters, and an arm
  whose tokenizer cuts the text into more tokens trains on more tokens (recorded).
* :func:`arm_overrides`: the recipe variables of one arm (run folder, text, curves, then the arm's own settings).
* :func:`collect_arm`: one arm's numbers from its run folder (schema of ``study.json``'s ``arms``).
* :func:`verdict`, :func:`write_outputs`: ``study.json``, ``study.md`` (table + verdict) and PNG charts.

Characters seen at a curve point: a stage that trains one epoch over ``C`` characters in ``S`` steps has seen
``C * step / S`` after ``step`` steps (its blocks are shuffled, so the share is what counts); stages add up.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from langadapt.errors import InputError
from langadapt.io import iter_corpus, read_json, write_json, write_jsonl, write_text

logger = logging.getLogger(__name__)

ARM_DONE = "study_arm.json"  # written last in an arm's folder: the arm is finished and collected
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class Arm:
    """One arm: recipe overrides (``{text}`` in a value is replaced by the study's text folder)."""

    name: str
    description: str = ""
    set: dict[str, str] = field(default_factory=dict)


@dataclass
class Study:
    """A study file, e.g.::

        recipe: configs/recipes/demo.env   # the base recipe (data, tokenizer, evaluation settings)
        study_dir: outputs/study           # every output; arms in <study_dir>/arms/<arm>
        default_arm: extend                # the toolkit's default recipe; the verdict compares against it
        text:                              # equal budget: source file -> characters (first whole documents)
          .cache/langadapt/demo_data/pretrain/fa.jsonl: 60000
        heldout: {fa: .../heldout/fa.jsonl, en: .../heldout/en.jsonl}   # bits per byte (en: independent source)
        curve_every_steps: 4               # held-out Persian bits per byte every K optimizer steps (and step 0, end)
        curve_max_words: 300               # words of held-out Persian per curve point
        speed: {prompts: 4, new_tokens: 32}   # greedy generation speed on the first held-out Persian documents
        set: {VAR: value}                  # overrides for every arm
        arms:
          extend: {description: "...", set: {}}
    """

    path: str
    recipe: str
    study_dir: str
    default_arm: str
    text: dict[str, int]
    heldout: dict[str, str]
    arms: dict[str, Arm]
    curve_every_steps: int = 0
    curve_max_words: int = 300
    speed_prompts: int = 4
    speed_new_tokens: int = 32
    set: dict[str, str] = field(default_factory=dict)


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a mapping VAR: value", arg="study", value=value)
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def load_study(path: str, root: str = ".") -> Study:
    """Read and check a study file; relative paths in it are relative to ``root`` (the repository)."""
    import yaml

    if not os.path.isfile(path):
        raise InputError(f"{path} does not exist; the bundled study is configs/studies/adaptation.yaml",
                         arg="study", value=path)
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise InputError(f"{path} is not valid YAML ({e})", arg="study", value=path) from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping at the top", arg="study", value=path)
    for key in ("recipe", "study_dir", "default_arm", "text", "heldout", "arms"):
        if not raw.get(key):
            raise InputError(f"{path}: set '{key}' (see langadapt/study.py for the format)", arg="study", value=path)

    def rel(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(root, p)

    arms = {}
    if not isinstance(raw["arms"], dict):
        raise InputError(f"{path}: 'arms' must map arm names to settings", arg="study", value=path)
    for name, spec in raw["arms"].items():
        if not _NAME.match(str(name)):
            raise InputError(f"{path}: arm name {name!r}: use lowercase letters, digits and _", arg="study",
                             value=name)
        spec = spec or {}
        arms[name] = Arm(name, str(spec.get("description", "")), _str_map(spec.get("set"), f"{path}: arms.{name}.set"))
    if raw["default_arm"] not in arms:
        raise InputError(f"{path}: default_arm {raw['default_arm']!r} is not one of the arms ({', '.join(arms)})",
                         arg="study", value=raw["default_arm"])
    text = {rel(k): int(v) for k, v in raw["text"].items()}
    heldout = {str(k): rel(v) for k, v in raw["heldout"].items()}
    if "fa" not in heldout:
        raise InputError(f"{path}: heldout needs an 'fa' file (the Persian curve)", arg="study", value=heldout)
    speed = raw.get("speed") or {}
    study = Study(path=path, recipe=rel(raw["recipe"]), study_dir=rel(raw["study_dir"]),
                  default_arm=raw["default_arm"], text=text, heldout=heldout, arms=arms,
                  curve_every_steps=int(raw.get("curve_every_steps", 0)),
                  curve_max_words=int(raw.get("curve_max_words", 300)),
                  speed_prompts=int(speed.get("prompts", 4)), speed_new_tokens=int(speed.get("new_tokens", 32)),
                  set=_str_map(raw.get("set"), f"{path}: set"))
    if any(v <= 0 for v in study.text.values()):
        raise InputError(f"{path}: every text budget must be > 0 characters", arg="study", value=raw["text"])
    return study


def check_inputs(study: Study) -> None:
    """The files the study reads exist (checked before anything runs)."""
    for p in [study.recipe, *study.text, *study.heldout.values()]:
        if not os.path.exists(p):
            raise InputError(f"{study.path}: {p} does not exist (prepare the data first: make demo, or "
                             "data/prepare_demo_data.py)", arg="study", value=p)


def first_documents(path: str, chars: int) -> list[str]:
    """The first whole documents of ``path`` whose characters add up to at most ``chars`` (at least one)."""
    docs, total = [], 0
    for doc in iter_corpus([path]):
        if docs and total + len(doc) > chars:
            break
        docs.append(doc)
        total += len(doc)
    return docs


def prepare_text(study: Study) -> dict[str, Any]:
    """Write ``<study_dir>/text/{all,half1,half2}/<source stem>.jsonl`` (once; reused when the budget is unchanged)
    and return the manifest: characters and documents per folder."""
    out = os.path.join(study.study_dir, "text")
    manifest_path = os.path.join(out, "manifest.json")
    wanted = {os.path.abspath(k): v for k, v in study.text.items()}
    if os.path.isfile(manifest_path) and read_json(manifest_path).get("budget") == wanted:
        return read_json(manifest_path)
    counts: dict[str, dict[str, int]] = {"all": {}, "half1": {}, "half2": {}}
    for path, chars in study.text.items():
        stem = os.path.splitext(os.path.basename(path))[0]
        docs = first_documents(path, chars)
        total, cut = sum(map(len, docs)), 0
        acc = 0
        for cut, d in enumerate(docs):  # half1 = the documents holding the first half of the characters
            if acc >= total / 2:
                break
            acc += len(d)
        else:
            cut = len(docs)
        for part, sel in (("all", docs), ("half1", docs[:cut]), ("half2", docs[cut:])):
            write_jsonl(os.path.join(out, part, f"{stem}.jsonl"), [{"text": d} for d in sel])
            counts[part][stem] = sum(map(len, sel))
    manifest = {"budget": wanted, "chars": {k: sum(v.values()) for k, v in counts.items()}, "per_source": counts}
    write_json(manifest_path, manifest)
    return manifest


def arm_dir(study: Study, arm: str) -> str:
    return os.path.join(study.study_dir, "arms", arm)


def arm_overrides(study: Study, arm: Arm) -> dict[str, str]:
    """Recipe variables of one arm: its run folder, one epoch over the study text, the Persian curve, no final
    merge; then the study's ``set``, then the arm's (``{text}`` = the study's text folder)."""
    text = os.path.abspath(os.path.join(study.study_dir, "text"))
    run_dir = os.path.abspath(arm_dir(study, arm.name))
    env = {
        "RUN_DIR": run_dir, "LOG_DIR": os.path.join(run_dir, "logs"), "STAGES": "pretrain",
        "PRETRAIN_DATASET_DIR": f"{text}/all", "MERGE_FINAL": "false",
        "EVAL_PERPLEXITY_FILES": ",".join(os.path.abspath(p) for p in study.heldout.values()),
    }
    env.update(study.set)
    env.update(arm.set)
    stages = env["STAGES"].split()
    for stage in stages:
        prefix = stage.upper()
        # One epoch over the stage's text, all of it trained on: the equal budget.
        env.setdefault(f"{prefix}_NUM_TRAIN_EPOCHS", "1")
        env.setdefault(f"{prefix}_MAX_STEPS", "-1")
        env.setdefault(f"{prefix}_VALIDATION_SPLIT_PERCENTAGE", "0")
        env.setdefault(f"{prefix}_BPB_EVAL_FILES", os.path.abspath(study.heldout["fa"]))
        env.setdefault(f"{prefix}_BPB_EVAL_STEPS", str(study.curve_every_steps))
        env.setdefault(f"{prefix}_BPB_EVAL_MAX_WORDS", str(study.curve_max_words))
    return {k: v.replace("{text}", text) for k, v in env.items()}


def _dataset_chars(dataset_dir: str) -> int:
    files = sorted(glob.glob(os.path.join(dataset_dir.split(":")[0], "*.jsonl")) +
                   glob.glob(os.path.join(dataset_dir.split(":")[0], "*.txt")))
    return sum(len(d) for d in iter_corpus(files)) if files else 0


def stage_curve(stage_dir: str, chars: int, offset: float) -> tuple[list[dict], float]:
    """The bits-per-byte records of one training stage with ``chars_seen`` added; returns them and the new offset."""
    from langadapt.bpb import CURVE_FILE, read_curve

    state_path = os.path.join(stage_dir, "trainer_state.json")
    path = os.path.join(stage_dir, CURVE_FILE)
    if not os.path.isfile(path) or not os.path.isfile(state_path):
        return [], offset
    steps = max(int(read_json(state_path).get("max_steps") or 0), 1)
    recs = read_curve(path)
    for r in recs:
        r["chars_seen"] = offset + chars * min(r["step"], steps) / steps
    return recs, offset + chars


def generation_speed(model, tokenizer, prompts: list[str], new_tokens: int) -> dict[str, float]:
    """Greedy generation of exactly ``new_tokens`` after each prompt (one at a time, batch 1): tokens/s and Persian
    words/s (whitespace words of the decoded continuations), wall time of ``generate`` only."""
    import time

    import torch

    tokens = words = 0
    seconds = 0.0
    model.eval()
    with torch.no_grad():
        for prompt in prompts:
            enc = tokenizer(prompt, return_tensors="pt")
            t = time.perf_counter()
            out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            seconds += time.perf_counter() - t
            new = out[0, enc["input_ids"].shape[1]:]
            tokens += int(new.shape[0])
            words += len(tokenizer.decode(new, skip_special_tokens=True).split())
    return {"tokens_per_s": tokens / seconds if seconds else float("nan"),
            "words_per_s": words / seconds if seconds else float("nan"), "new_tokens": tokens, "new_words": words,
            "seconds": seconds}


def speed_prompts(path: str, n: int, words: int = 6) -> list[str]:
    """The first ``words`` words of the first ``n`` documents of a held-out file: the same prompts for every arm."""
    return [" ".join(d.split()[:words]) for d in list(iter_corpus([path]))[:n]]


def _ppl(run_dir: str, name: str) -> dict:
    p = os.path.join(run_dir, "perplexity", name, "perplexity.json")
    return read_json(p).get("files", {}) if os.path.isfile(p) else {}


def _scores(run_dir: str, stage: str) -> dict:
    p = os.path.join(run_dir, "predictions", stage, "scores.json")
    if not os.path.isfile(p):
        return {}
    data = read_json(p)
    return {k: v for k, v in data.items() if isinstance(v, (int, float, dict))} if isinstance(data, dict) else {}


def pipeline_finished(run_dir: str, stages: list[str]) -> bool:
    """Whether an arm's chain is complete: its last stage trained and was evaluated."""
    last = stages[-1]
    return (os.path.isfile(os.path.join(run_dir, last, "all_results.json"))
            and os.path.isfile(os.path.join(run_dir, "perplexity", last, "perplexity.json")))


def collect_arm(run_dir: str, stages: list[str], speed: dict[str, float] | None, peak_rss_mb: float | None,
                fa_key: str = "fa", en_key: str = "en") -> dict[str, Any]:
    """One arm's entry of ``study.json`` from its finished run folder."""
    curve, offset = [], 0.0
    train_tokens, wall, flos = 0, 0.0, 0.0
    for stage in stages:
        sd = os.path.join(run_dir, stage)
        run_args = read_json(os.path.join(sd, "run_args.json"))
        chars = _dataset_chars(run_args["data"]["dataset_dir"])
        recs, offset = stage_curve(sd, chars, offset)
        curve += [r for r in recs if r["file"] == fa_key]
        state = read_json(os.path.join(sd, "trainer_state.json"))
        train_tokens += int(state.get("global_step", 0)) * int(run_args["resolved"]["tokens_per_step"])
        results = read_json(os.path.join(sd, "all_results.json"))
        wall += float(results.get("train_runtime", 0.0))
        flos += float(results.get("total_flos", state.get("total_flos", 0.0)) or 0.0)
    last = _ppl(run_dir, stages[-1])
    base = _ppl(run_dir, "base")
    # Step 0 on the same held-out text as the final number: the base model with the arm's tokenizer and initial
    # rows ("base_merged"), or the base model itself for an arm without new tokens. (The curve's first point is
    # only its first curve_max_words words.)
    start = _ppl(run_dir, "base_merged") or base
    fa, en = last.get(fa_key, {}), last.get(en_key, {})
    return {
        "fa_bpb": [[round(r["chars_seen"]), r["bpb"]] for r in curve],
        "fa_bpb_wall": [[r["wall_s"] + 0.0, r["bpb"]] for r in curve],
        "fa_bpb_final": fa.get("bpb"), "fa_bpb_step0": start.get(fa_key, {}).get("bpb"),
        "en_bpb_final": en.get("bpb"), "en_bpb_base": base.get(en_key, {}).get("bpb"),
        "fa_words_per_s": (speed or {}).get("words_per_s"), "fa_tokens_per_s": (speed or {}).get("tokens_per_s"),
        "fa_tokens_per_word": fa.get("tokens_per_word"), "train_tokens": train_tokens, "train_chars": round(offset),
        "flops": flos, "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_rss_mb, 1) if peak_rss_mb is not None else None,
        "scores": _scores(run_dir, stages[-1]),
    }


def _pct(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.1f}%"


def noise(arm: dict, last: int = 3) -> float:
    """The spread (max - min) of the last ``last`` Persian curve points: a bound on how much the final point moves
    between evaluations (the curve is still falling, so it overstates the noise rather than understates it)."""
    pts = [b for _, b in arm.get("fa_bpb", [])[-last:]]
    return max(pts) - min(pts) if len(pts) > 1 else 0.0


def verdict(result: dict) -> list[str]:
    """Markdown lines: which arm wins each metric, by how much, whether above the noise, and the default's goals."""
    arms = result["arms"]
    default = result["default_arm"]
    lines = []
    metrics = (("fa_bpb_final", "final Persian bits/byte", min), ("en_bpb_final", "final English bits/byte", min),
               ("fa_words_per_s", "Persian words/s", max), ("wall_s", "training wall time (s)", min))
    for key, label, best in metrics:
        vals = {a: v[key] for a, v in arms.items() if isinstance(v.get(key), (int, float)) and math.isfinite(v[key])}
        if not vals:
            continue
        order = sorted(vals, key=vals.get, reverse=best is max)
        win = order[0]
        text = f"- **{label}**: `{win}` ({vals[win]:.4g})"
        if len(order) > 1:
            second = order[1]
            gap = abs(vals[win] - vals[second])
            text += f", ahead of `{second}` ({vals[second]:.4g}) by {gap:.3g} ({_pct(vals[win], vals[second])})"
            if key == "fa_bpb_final":
                spread = max(noise(arms[win]), noise(arms[second]))
                text += f"; {'above' if gap > spread else 'within'} the noise (spread of the last evaluations " \
                        f"{spread:.3g})"
        if default in vals and win != default:
            text += f"; the default `{default}`: {vals[default]:.4g} ({_pct(vals[default], vals[win])} vs the winner)"
        lines.append(text)
    d = arms.get(default, {})
    base = result.get("base", {})
    goals = []
    if d.get("en_bpb_final") and d.get("en_bpb_base"):
        rise = d["en_bpb_final"] / d["en_bpb_base"] - 1
        goals.append(f"English bits/byte of `{default}` vs the base model: {_pct(d['en_bpb_final'], d['en_bpb_base'])}"
                     f" (goal: at most +2%: {'PASS' if rise <= 0.02 else 'FAIL'})")
    ref = base.get("fa_bpb")  # the base model on its own tokenizer, same held-out text
    if d.get("fa_bpb_step0") and ref:
        ok = d["fa_bpb_step0"] <= 1.05 * ref
        goals.append(f"step-0 Persian bits/byte of `{default}` vs the base tokenizer: {d['fa_bpb_step0']:.4g} vs "
                     f"{ref:.4g} ({_pct(d['fa_bpb_step0'], ref)}; goal: within 5%: {'PASS' if ok else 'FAIL'})")
    if d.get("fa_words_per_s") and base.get("fa_words_per_s"):
        ratio = d["fa_words_per_s"] / base["fa_words_per_s"]
        goals.append(f"Persian words/s of `{default}` vs the base model: {ratio:.2f}x (goal: at least 2x: "
                     f"{'PASS' if ratio >= 2 else 'FAIL'})")
    return lines + [f"- {g}" for g in goals]


def render_markdown(result: dict, charts: list[str]) -> str:
    arms = result["arms"]
    md = [f"# Adaptation study: {result.get('name', '')}", "",
          f"Equal text: every arm trained one epoch over the same {result.get('text_chars', 0):,} characters "
          f"(same documents). Default arm: `{result['default_arm']}`. Bits per byte: lower is better "
          "(tokenizer-independent).", "",
          "| arm | fa bpb step 0 | fa bpb final | en bpb final (base) | fa tokens/word | fa words/s | train tokens | "
          "wall s | peak RSS MB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def f(v, d=3):
        return f"{v:,.{d}f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"

    for name, a in arms.items():
        md.append(f"| {name} | {f(a.get('fa_bpb_step0'))} | {f(a.get('fa_bpb_final'))} | {f(a.get('en_bpb_final'))} "
                  f"({f(a.get('en_bpb_base'))}) | {f(a.get('fa_tokens_per_word'), 2)} | {f(a.get('fa_words_per_s'), 1)}"
                  f" | {a.get('train_tokens', 0):,} | {f(a.get('wall_s'), 0)} | {f(a.get('peak_rss_mb'), 0)} |")
    base = result.get("base", {})
    md += ["", f"Base model (its own tokenizer): fa {f(base.get('fa_bpb'))} bpb, en {f(base.get('en_bpb'))} bpb, "
               f"{f(base.get('fa_words_per_s'), 1)} Persian words/s.", "", "## Verdict", "", *verdict(result), ""]
    md += [f"![{c}]({c}.png)" for c in charts]
    return "\n".join(md) + "\n"


def write_charts(result: dict, out_dir: str) -> list[str]:
    """PNG charts beside study.md; returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = result["arms"]
    names = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"{name}.png"), dpi=100)
        plt.close(fig)
        names.append(name)

    for key, xlabel, name in (("fa_bpb", "characters of training text seen", "fa_bpb_vs_chars"),
                              ("fa_bpb_wall", "training wall time (s)", "fa_bpb_vs_wall")):
        fig, ax = plt.subplots(figsize=(7, 4))
        for arm, a in arms.items():
            pts = a.get(key) or []
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=arm)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out Persian bits/byte")
        ax.legend(fontsize=8)
        save(fig, name)
    for key, label, name in (("en_change", "English bits/byte change vs base (%)", "en_bpb_change"),
                             ("fa_words_per_s", "Persian words per second", "words_per_s")):
        vals = {}
        for arm, a in arms.items():
            if key == "en_change" and a.get("en_bpb_final") and a.get("en_bpb_base"):
                vals[arm] = 100 * (a["en_bpb_final"] / a["en_bpb_base"] - 1)
            elif key != "en_change" and isinstance(a.get(key), (int, float)):
                vals[arm] = a[key]
        if vals:
            fig, ax = plt.subplots(figsize=(7, 3.5))
            ax.bar(list(vals), list(vals.values()))
            ax.set_ylabel(label)
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            save(fig, name)
    return names


def write_outputs(result: dict, out_dir: str) -> str:
    """``study.json``, the charts and ``study.md`` in ``out_dir``; returns the markdown."""
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "study.json"), result)
    charts = write_charts(result, out_dir)
    md = render_markdown(result, charts)
    write_text(os.path.join(out_dir, "study.md"), md)
    return md

