"""``report.md`` of a prepared parallel-data folder, from its ``report.json``."""

from __future__ import annotations

from langadapt.parallel.clean import FILTERS


def report_markdown(report: dict) -> str:
    """The human-readable form of the preparation report."""
    c = report["cleaning"]
    lines = ["# Parallel data report", "", f"Pairs read: {c['read']}; kept: {c['kept']}.", "",
             "## Dropped by filter (in the order applied; each pair counted once)", "",
             "| filter | dropped | why | first examples |", "| --- | ---: | --- | --- |"]
    for name, _, why in FILTERS:
        ex = ", ".join(f"`{e}`" for e in c["examples"].get(name, []))
        lines.append(f"| {name} | {c['dropped'][name]} | {why} | {ex} |")
    lines += ["", "## Per source", "", "| source | read | kept | skipped while reading |", "| --- | ---: | ---: | --- |"]
    for src, counts in c["by_source"].items():
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(report["reading"].get(src, {}).items())
                            if k.startswith(("po_fuzzy", "po_untranslated", "po_obsolete", "manifest_")))
        lines.append(f"| {src} | {counts.get('read', 0)} | {counts.get('kept', 0)} | {skipped or '-'} |")
    p, s = report["pretraining"], report["sft"]
    lines += ["", "## Outputs", "",
              f"- `{p['file']}`: {p['documents']} documents; layouts requested {p['layouts']['requested']}, "
              f"written {p['layouts']['written']} (interleaving falls back to en_fa when sentence counts differ).",
              f"- `{s['file']}`: {s['examples']} translation instructions; direction/wording: {s['counts']}.",
              f"- `pairs.jsonl`: the {c['kept']} cleaned pairs with their origin.", ""]
    return "\n".join(lines)
