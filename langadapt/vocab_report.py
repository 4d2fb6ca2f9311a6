"""The merge audit: how the merged tokenizer compares with the base on held-out text.

Per ``--eval_file`` (normalized like the training text, one document per non-blank line):
tokens per word and bytes per token (base vs merged, special tokens not added), lines whose segmentation changed,
of which lines with no character of the target scripts (must be 0), new pieces used, decode(encode(x)) failures,
and on the SentencePiece path lines where the HF tokenizer and ``sentencepiece`` disagree. Over all eval files:
the share of new pieces used. Written as ``merge_report.json``, ``merge_report.md`` and ``merge_report.png``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from langadapt.io import write_json, write_text
from langadapt.normalize import NormalizerConfig
from langadapt.vocab import ANY_SCRIPT, SP_MODEL_FILE, SP_SPACE, allowed_chars, iter_eval_lines

logger = logging.getLogger(__name__)

REPORT_JSON, REPORT_MD, REPORT_PNG = "merge_report.json", "merge_report.md", "merge_report.png"


def target_chars(scripts: tuple[str, ...], new_pieces_text: Sequence[str]) -> frozenset[str]:
    """Characters a line must contain for the merge to be allowed to change it: the target scripts' letters, or
    (``--scripts any``) the characters of the new pieces."""
    if scripts != (ANY_SCRIPT,):
        return allowed_chars(scripts)
    return frozenset(c for piece in new_pieces_text for c in piece if c not in (SP_SPACE, " "))


def eval_file_stats(lines: Sequence[str], base, merged, new_range: tuple[int, int], targets: frozenset[str],
                    sp=None, base_sp=None) -> tuple[dict, set[int]]:
    """Counts for one eval file; also the set of new ids it used. ``sp``: a SentencePieceProcessor of the merged
    model, to count HF-vs-sentencepiece disagreements; ``base_sp`` the base's, for the same count before the merge
    (transformers' conversion already differs from sentencepiece on some inputs, e.g. a leading space)."""
    words = nbytes = base_tokens = merged_tokens = 0
    changed = base_script_lines = base_script_changed = roundtrip_fail = base_roundtrip_fail = 0
    disagree = 0 if sp is not None else None
    base_disagree = 0 if base_sp is not None else None
    used: set[int] = set()
    lo, hi = new_range
    for line in lines:
        b = base.encode(line, add_special_tokens=False)
        m = merged.encode(line, add_special_tokens=False)
        words += len(line.split())
        nbytes += len(line.encode("utf-8"))
        base_tokens += len(b)
        merged_tokens += len(m)
        used.update(i for i in m if lo <= i < hi)
        only_base_script = not any(c in targets for c in line)
        base_script_lines += only_base_script
        if b != m:
            changed += 1
            base_script_changed += only_base_script
        roundtrip_fail += merged.decode(m) != line
        base_roundtrip_fail += base.decode(b) != line
        if sp is not None:
            disagree += sp.encode(line) != m
        if base_sp is not None:
            base_disagree += base_sp.encode(line) != b
    stats = {
        "lines": len(lines), "words": words, "bytes": nbytes,
        "base_tokens": base_tokens, "merged_tokens": merged_tokens,
        "base_tokens_per_word": base_tokens / max(words, 1), "merged_tokens_per_word": merged_tokens / max(words, 1),
        "base_bytes_per_token": nbytes / max(base_tokens, 1), "merged_bytes_per_token": nbytes / max(merged_tokens, 1),
        "new_pieces_used": len(used), "new_pieces_used_share": len(used) / max(hi - lo, 1),
        "changed_lines": changed, "base_script_lines": base_script_lines,
        "base_script_lines_changed": base_script_changed,
        "roundtrip_failures": roundtrip_fail, "base_roundtrip_failures": base_roundtrip_fail,
        "hf_sp_disagreements": disagree, "base_hf_sp_disagreements": base_disagree,
    }
    return stats, used


def build_report(base_dir: str, merged_dir: str, merge_summary: dict, eval_files: Sequence[str],
                 config: NormalizerConfig, scripts: tuple[str, ...], new_pieces_text: Sequence[str],
                 text_field: str = "text") -> dict:
    """The report dictionary (what ``merge_report.json`` holds)."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(base_dir)
    merged = AutoTokenizer.from_pretrained(merged_dir)
    sp_path = os.path.join(merged_dir, SP_MODEL_FILE)
    sp = spm.SentencePieceProcessor(model_file=sp_path) if os.path.isfile(sp_path) else None
    base_sp_path = os.path.join(base_dir, SP_MODEL_FILE)
    base_sp = spm.SentencePieceProcessor(model_file=base_sp_path) if sp and os.path.isfile(base_sp_path) else None
    lo, hi = merge_summary["new_token_ids"]
    targets = target_chars(scripts, new_pieces_text)
    evals, used_all = {}, set()
    for path in eval_files:
        stats, used = eval_file_stats(list(iter_eval_lines(path, config, text_field)), base, merged, (lo, hi),
                                      targets, sp, base_sp)
        evals[path] = stats
        used_all |= used
    return {
        "kind": merge_summary["kind"],
        "base_vocab_size": merge_summary["base_vocab_size"],
        "new_pieces": hi - lo,
        "merged_vocab_size": merge_summary["vocab_size"],
        "new_token_ids": [lo, hi],
        "scripts": list(scripts),
        "merge": merge_summary,
        "eval": evals,
        "new_pieces_used": len(used_all),
        "new_pieces_used_share": len(used_all) / max(hi - lo, 1),
        "changed_base_script_lines": sum(s["base_script_lines_changed"] for s in evals.values()),
        "hf_sp_disagreements": (sum(s["hf_sp_disagreements"] for s in evals.values()) if sp is not None else None),
        "roundtrip_failures": sum(s["roundtrip_failures"] for s in evals.values()),
    }


def render_markdown(report: dict) -> str:
    """Human-readable version of the report."""
    out = [
        "# Tokenizer merge report", "",
        f"- kind: {report['kind']}",
        f"- base vocabulary: {report['base_vocab_size']}, new pieces: {report['new_pieces']}, "
        f"merged vocabulary: {report['merged_vocab_size']} (new ids {report['new_token_ids'][0]}.."
        f"{report['new_token_ids'][1] - 1})",
        f"- scripts kept: {', '.join(report['scripts'])}; candidates dropped: {report['merge']['dropped']}",
        f"- new pieces used on the eval text: {report['new_pieces_used']} "
        f"({100 * report['new_pieces_used_share']:.1f}%)",
        f"- lines without target-script characters whose segmentation changed: "
        f"{report['changed_base_script_lines']}",
        f"- HF vs sentencepiece disagreements: "
        f"{'n/a (no sentencepiece model)' if report['hf_sp_disagreements'] is None else report['hf_sp_disagreements']}"
        + ("" if report["hf_sp_disagreements"] is None else
           f" (base tokenizer: {sum(s['base_hf_sp_disagreements'] for s in report['eval'].values())})"),
        f"- decode(encode(x)) != x: {report['roundtrip_failures']}",
        "",
    ]
    if report["eval"]:
        out += [
            "| eval file | lines | words | tokens/word base | tokens/word merged | bytes/token base | "
            "bytes/token merged | new pieces used | lines changed | base-script lines changed | round-trip failures "
            "| HF != sp |",
            "| --- | " + "--- | " * 11,
        ]
        for path, s in report["eval"].items():
            hfsp = "n/a" if s["hf_sp_disagreements"] is None else s["hf_sp_disagreements"]
            out.append(
                f"| {os.path.basename(path)} | {s['lines']} | {s['words']} | {s['base_tokens_per_word']:.3f} | "
                f"{s['merged_tokens_per_word']:.3f} | {s['base_bytes_per_token']:.2f} | "
                f"{s['merged_bytes_per_token']:.2f} | {s['new_pieces_used']} | {s['changed_lines']} | "
                f"{s['base_script_lines_changed']} / {s['base_script_lines']} | {s['roundtrip_failures']} | {hfsp} |"
            )
    else:
        out.append("No --eval_file given: pass held-out target-language and English text to measure the merge.")
    return "\n".join(out) + "\n"


def plot_report(report: dict, path: str) -> None:
    """Bar chart: tokens per word and bytes per token, base vs merged, per eval file."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    names = [os.path.basename(p) for p in report["eval"]] or ["(no eval file)"]
    stats = list(report["eval"].values())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "tokens_per_word", "tokens per word (lower is better)"),
                           (axes[1], "bytes_per_token", "bytes per token (higher is better)")):
        xs = range(len(stats))
        ax.bar([x - 0.2 for x in xs], [s[f"base_{key}"] for s in stats], width=0.4, label="base")
        ax.bar([x + 0.2 for x in xs], [s[f"merged_{key}"] for s in stats], width=0.4, label="merged")
        ax.set_xticks(list(range(len(names))) if stats else [])
        ax.set_xticklabels(names if stats else [], rotation=15)
        ax.set_title(title)
        ax.legend()
    fig.suptitle(f"{report['kind']}: {report['base_vocab_size']} -> {report['merged_vocab_size']} tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(output_dir: str, report: dict) -> None:
    """``merge_report.json``, ``merge_report.md`` and ``merge_report.png`` in ``output_dir``."""
    write_json(os.path.join(output_dir, REPORT_JSON), report)
    write_text(os.path.join(output_dir, REPORT_MD), render_markdown(report))
    plot_report(report, os.path.join(output_dir, REPORT_PNG))
