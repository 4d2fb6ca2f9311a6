"""The report page in Markdown: one section per measurement, each a table or a MISSING line naming what the run
lacks."""

from __future__ import annotations

import math
from typing import Any

from langadapt.report.collect import ordered_stages

PPL_LABELS = {
    "base": "base model, base tokenizer",
    "base_merged": "base model, merged tokenizer, initialised rows",
    "pretrain": "after pretraining",
    "sft": "after SFT",
}
SECTIONS = ("Goals", "Tokenizer", "Training loss", "Held-out perplexity", "Task scores", "Wall time per stage",
            "Sample generations")


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.{digits}f}"
    return str(v)


def _chart(charts: dict[str, str], name: str) -> list[str]:
    return ["", f"![{name}]({charts[name]})"] if name in charts else []


def _section(title: str, body: list[str] | None, missing: str) -> list[str]:
    """A section: its heading, then its body, or ``MISSING: <missing>`` when the run has no such input."""
    return [f"## {title}", "", *(body or [f"MISSING: {missing}"]), ""]


def _goals(goals_result: list[dict]) -> list[str]:
    return ["| goal | target | measured | status |", "| --- | --- | --- | --- |",
            *(f"| {g['goal']} | {g['target']} | {g['detail']} | **{g['status']}** |" for g in goals_result)]


def _tokenizer(tok: dict | None, charts: dict[str, str]) -> list[str] | None:
    if not tok:
        return None
    return [f"{tok['kind']} tokenizer: {tok['base_vocab_size']} -> {tok['merged_vocab_size']} tokens "
            f"({tok['new_pieces']} new pieces); from `{tok['path']}`.", "",
            "| held-out file | words | tokens/word base | tokens/word merged | reduction |",
            "| --- | ---: | ---: | ---: | ---: |",
            *(f"| {name} | {_f(s['words'])} | {_f(s['base'])} | {_f(s['merged'])} | {_f(s['reduction'])}x |"
              for name, s in tok["files"].items()),
            *_chart(charts, "tokens_per_word")]


def _training(training: dict[str, dict], charts: dict[str, str]) -> list[str] | None:
    if not training:
        return None
    md = ["| stage | logged steps | first loss | last loss | train runtime (s) |",
          "| --- | ---: | ---: | ---: | ---: |"]
    for stage, c in training.items():
        md.append(f"| {stage} | {len(c['steps'])} | {_f(c['loss'][0] if c['loss'] else None, 3)} | "
                  f"{_f(c['loss'][-1] if c['loss'] else None, 3)} | {_f(c['runtime'], 1)} |")
    return md + _chart(charts, "loss")


def _perplexity(ppl: dict[str, dict], charts: dict[str, str]) -> list[str] | None:
    if not ppl:
        return None
    keys = sorted({k for p in ppl.values() for k in p.get("files", {})})
    md = ["Per word, per character and in bits per UTF-8 byte, so that models with different tokenizers compare "
          "(total NLL / words, characters or bytes of the same text; bits/byte: lower is better).", "",
          "| stage | " + " | ".join(f"{k} ppl/word | {k} bits/byte | {k} ppl/char | {k} tokens/word"
                                 for k in keys) + " |",
          "| --- | " + " | ".join("---: | ---: | ---: | ---:" for _ in keys) + " |"]
    for stage, p in ordered_stages(list(ppl.items())):
        cells = []
        for k in keys:
            r = p.get("files", {}).get(k)
            cells += ([_f(r["ppl_word"], 1), _f(r.get("bpb"), 3), _f(r["ppl_char"], 3), _f(r["tokens_per_word"])]
                      if r else ["-"] * 4)
        md.append(f"| {PPL_LABELS.get(stage, f'after {stage}')} | " + " | ".join(cells) + " |")
    words = {k: next((p["files"][k]["words"] for p in ppl.values() if k in p.get("files", {})), None) for k in keys}
    md += ["", "Held-out words scored: " + ", ".join(f"{k} {w}" for k, w in words.items()) + "."]
    return md + _chart(charts, "perplexity")


def _scores(sc: dict | None, charts: dict[str, str]) -> list[str] | None:
    if not (sc and sc.get("columns")):
        return None
    from langadapt.compare import comparison_markdown

    return [comparison_markdown(sc).rstrip(), *_chart(charts, "scores")]


def _timings(tm: dict | None, charts: dict[str, str]) -> list[str] | None:
    if not (tm and tm.get("stages")):
        return None
    md = ["| stage | seconds | minutes |", "| --- | ---: | ---: |"]
    md += [f"| {name} | {_f(s, 1)} | {_f(s / 60, 2)} |" for name, s in tm["stages"].items()]
    if tm.get("total_seconds") is not None:
        md.append(f"| **sum of steps** | {_f(tm['total_seconds'], 1)} | {_f(tm['total_seconds'] / 60, 2)} |")
    if tm.get("wall_seconds") is not None:
        md.append(f"| **whole command** | {_f(tm['wall_seconds'], 1)} | {_f(tm['wall_seconds'] / 60, 2)} |")
    if tm.get("host"):
        md += ["", f"Measured on {tm['host']}."]
    return md + _chart(charts, "timings")


def _samples(samples: list[dict]) -> list[str] | None:
    if not samples:
        return None
    stages = list(samples[0]["outputs"])
    md = ["| file | input | gold | " + " | ".join(stages) + " |",
          "| --- | --- | --- | " + " | ".join("---" for _ in stages) + " |"]
    for s in samples:
        cells = [s["file"], s["input"] or s["instruction"], s["gold"]] + [s["outputs"][n] for n in stages]
        md.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return md


def render_markdown(data: dict, goals_result: list[dict], charts: dict[str, str]) -> str:
    """The report page. Every section of :data:`SECTIONS` is always present; a missing input says so."""
    md = ["# langadapt run report", "", f"Run directory: `{data['run_dir']}`", ""]
    md += _section("Goals", _goals(goals_result), "")
    md += _section("Tokenizer", _tokenizer(data.get("tokenizer"), charts),
                   "no merge_report.json in the run directory (tokenizer stage not run).")
    md += _section("Training loss", _training(data["training"], charts),
                   "no trainer_state.json in the run directory (no training stage finished).")
    md += _section("Held-out perplexity", _perplexity(data["perplexity"], charts),
                   "no perplexity.json in the run directory (inference/perplexity.py not run).")
    md += _section("Task scores", _scores(data.get("scores"), charts),
                   "no scored predictions in the run directory (inference/score.py not run).")
    md += _section("Wall time per stage", _timings(data.get("timings"), charts),
                   "no timings.json in the run directory.")
    md += _section("Sample generations", _samples(data["samples"]),
                   "no predictions/<stage> folders in the run directory.")
    return "\n".join(md)
