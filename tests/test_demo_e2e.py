"""The reduced demo end to end (`demo/run_demo.py --quick`): every stage's output, a report with every section and
finite numbers, within 8 minutes on 2 CPU cores. Uses the shared model cache (.cache/langadapt; converted on first
use, ~1 min) and a fresh run folder under pytest's tmp_path."""

import json
import math
import os
import re
import subprocess
import sys

import pytest

from langadapt.report import SECTIONS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    run = tmp_path / "demo-quick"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "demo", "run_demo.py"), "--quick",
                           "--set", f"RUN_DIR={run}"], capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    # every stage's output
    for rel in ("tokenizer/langadapt_tokenizer.json", "tokenizer/merge_report.json",
                "pretrain/adapter_model.safetensors", "pretrain/all_results.json", "pretrain/trainer_state.json",
                "bilingual/adapter_model.safetensors", "bilingual/trainer_state.json", "bilingual/run_args.json",
                "sft/adapter_model.safetensors", "sft/all_results.json", "sft/langadapt_template.json",
                "sft_merged/config.json", "sft_merged/merge_report.json",
                "predictions/base/scores.json", "predictions/pretrain/scores.json",
                "predictions/bilingual/scores.json", "predictions/sft/scores.json",
                "perplexity/base/perplexity.json", "perplexity/base_merged/perplexity.json",
                "perplexity/pretrain/perplexity.json", "perplexity/bilingual/perplexity.json",
                "perplexity/sft/perplexity.json",
                "scores/comparison.json", "timings.json", "report.md", "report.json", "demo_settings.json"):
        assert (run / rel).is_file(), rel

    # the report: every section, no missing part, finite numbers, charts, goals evaluated
    text = (run / "report.md").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"## {section}\n" in text, section
    assert "MISSING" not in text
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert {g["status"] for g in report["goals"]} <= {"PASS", "FAIL"}
    assert all(math.isfinite(g["value"]) for g in report["goals"])
    # the bilingual stage trained the pretraining adapter further on the demo's parallel documents, and SFT went on
    bilingual_args = json.loads((run / "bilingual" / "run_args.json").read_text(encoding="utf-8"))
    assert "bilingual/pretrain" in json.dumps(bilingual_args) and str(run / "pretrain") in json.dumps(bilingual_args)
    assert str(run / "bilingual") in (run / "sft" / "run_args.json").read_text(encoding="utf-8")
    assert list(report["scores"]["rows"]) == ["base", "pretrain", "bilingual", "sft"]
    for stage in ("base", "base_merged", "pretrain", "bilingual", "sft"):
        for key in ("fa", "en"):
            assert math.isfinite(report["perplexity"][stage]["files"][key]["ppl_word"])
    for row in report["scores"]["rows"].values():
        assert all(v is None or math.isfinite(v) for v in row.values())
    numbers = re.findall(r"(?<![\w.])-?\d[\d,]*\.\d+", text)
    assert numbers and all(math.isfinite(float(n.replace(",", ""))) for n in numbers)
    for chart in report["charts"].values():
        assert (run / chart).stat().st_size > 1000
    assert "## Goals" in proc.stdout  # printed at the end

    # The run time is recorded for the report (timings.json), not held to a pass/fail budget on a shared machine.
    timings = json.loads((run / "timings.json").read_text(encoding="utf-8"))
    assert timings["wall_seconds"] > 0

    # a second run resumes: every step is skipped, the report is rewritten
    again = subprocess.run([sys.executable, os.path.join(REPO, "demo", "run_demo.py"), "--quick",
                            "--set", f"RUN_DIR={run}"], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "step pretrain: already complete" in again.stderr
