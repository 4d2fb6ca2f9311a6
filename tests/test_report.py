"""The run report: every section from a fake run directory, goals evaluated from the numbers, charts written."""

import json
import math
import os
import re
import sys

import pytest

from langadapt import report
from langadapt.cli import UsageError
import _scripts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
    return _scripts.load_script("inference/report.py")


def _w(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        if isinstance(obj, list):
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in obj))
        else:
            json.dump(obj, f, ensure_ascii=False)


def _ppl(name, fa, en):
    files = {}
    for key, ppl, tpw in (("fa", fa, 1.5), ("en", en, 1.3)):
        words = 1000
        nll = words * math.log(ppl)
        files[key] = {"file": f"heldout/{key}.jsonl", "documents": 10, "tokens": int(words * tpw), "words": words,
                      "chars": 5000, "nll": nll, "ppl_word": ppl, "ppl_char": math.exp(nll / 5000),
                      "ppl_token": math.exp(nll / (words * tpw)), "tokens_per_word": tpw,
                      "bytes": 9000, "bpb": nll / math.log(2) / 9000}
    return {"name": name, "files": files}


def make_run_dir(root, pretrain_fa=2000.0, pretrain_en=1050.0, total_seconds=900):
    _w(f"{root}/tokenizer/merge_report.json", {
        "kind": "byte_level_bpe", "base_vocab_size": 49152, "merged_vocab_size": 57344, "new_pieces": 8192,
        "eval": {"/x/heldout/fa.jsonl": {"base_tokens_per_word": 4.3, "merged_tokens_per_word": 1.4, "words": 11000},
                 "/x/heldout/en.jsonl": {"base_tokens_per_word": 1.36, "merged_tokens_per_word": 1.36, "words": 6000}}})
    for stage, losses in (("pretrain", [6.0, 4.5, 3.9]), ("sft", [3.0, 2.1])):
        history = [{"step": 10 * (i + 1), "loss": v} for i, v in enumerate(losses)]
        history += [{"step": 20, "eval_loss": losses[-1] + 0.1},
                    {"step": 30, "train_runtime": 123.4, "train_loss": 4.0}]
        _w(f"{root}/{stage}/trainer_state.json", {"log_history": history})
        _w(f"{root}/{stage}/checkpoint-10/trainer_state.json", {"log_history": [{"step": 1, "loss": 99.0}]})
    _w(f"{root}/perplexity/base/perplexity.json", _ppl("base", 50000.0, 1000.0))
    _w(f"{root}/perplexity/base_merged/perplexity.json", _ppl("base_merged", 90000.0, 1000.0))
    _w(f"{root}/perplexity/pretrain/perplexity.json", _ppl("pretrain", pretrain_fa, pretrain_en))
    _w(f"{root}/perplexity/sft/perplexity.json", _ppl("sft", 2500.0, 1100.0))
    from langadapt.compare import comparison

    def scores(acc, bleu):
        return {"fa/sentiment": {"task": "sentiment", "n": 5, "accuracy": acc, "macro_f1": acc, "unparsed": 0.0},
                "fa/translation_en_fa": {"task": "translation", "n": 5, "bleu": bleu, "chrf": bleu, "rouge1": 1.0,
                                         "rouge2": 1.0, "rougeL": 1.0}}

    _w(f"{root}/scores/comparison.json", comparison([("base", scores(20.0, 1.0)), ("sft", scores(60.0, 8.0))]))
    for stage, answer in (("base", "I am SmolLM"), ("pretrain", "خوب"), ("sft", "مثبت")):
        _w(f"{root}/predictions/{stage}/fa/sentiment.jsonl",
           [{"id": i, "instruction": "احساس؟", "input": f"متن {i} | با خط", "output": answer, "answer": "مثبت"}
            for i in range(3)])
    _w(f"{root}/timings.json", {"stages": {"prepare": 40.0, "tokenizer": 60.0, "pretrain": 500.0, "sft": 200.0},
                                "total_seconds": total_seconds})
    return root


def _numbers(text):
    return [float(x.replace(",", "")) for x in re.findall(r"(?<![\w.])-?\d[\d,]*\.?\d*(?:e[+-]?\d+)?", text)]


def test_every_section_with_finite_numbers_and_charts(tmp_path):
    run = make_run_dir(str(tmp_path / "run"))
    out = tmp_path / "report"
    data = load_script().main(["--run_dir", run, "--output_dir", str(out), "--quiet"])
    text = (out / "report.md").read_text(encoding="utf-8")
    for section in report.SECTIONS:
        assert f"## {section}\n" in text
    assert "MISSING" not in text and "nan" not in text.lower() and "inf" not in text.lower()
    assert all(math.isfinite(x) for x in _numbers(text))
    for chart in ("tokens_per_word", "loss", "perplexity", "scores", "timings"):
        assert (out / f"{chart}.png").stat().st_size > 1000
        assert f"({chart}.png)" in text
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [g["status"] for g in saved["goals"]] == ["PASS"] * 4
    # checkpoint folders are not training stages
    assert set(data["training"]) == {"pretrain", "sft"}
    assert data["training"]["pretrain"]["loss"] == [6.0, 4.5, 3.9]
    # the sample table puts every stage's answer to the same item side by side, pipes escaped
    assert "| I am SmolLM | خوب | مثبت |" in text and "متن 0 \\| با خط" in text
    # bits per byte sits next to per-word perplexity in the held-out table
    assert "fa ppl/word | fa bits/byte |" in text
    fa = data["perplexity"]["pretrain"]["files"]["fa"]
    assert f"| {fa['ppl_word']:,.1f} | {fa['bpb']:,.3f} |" in text


def test_goal_numbers_and_failures(tmp_path):
    # Persian 90000 -> 70000 is 22% lower (< 30%), English 1000 -> 1200 is +20% (>= 10%), 25 min (>= 20)
    run = make_run_dir(str(tmp_path / "run"), pretrain_fa=70000.0, pretrain_en=1200.0, total_seconds=1500)
    _, data = report.write_report(run, str(tmp_path / "out"))
    assert [g["status"] for g in data["goals"]] == ["FAIL", "PASS", "FAIL", "FAIL"]
    tok = data["goals"][1]
    assert tok["value"] == pytest.approx(4.3 / 1.4)
    assert data["goals"][2]["value"] == pytest.approx(1 - 70000 / 90000)
    assert data["goals"][3]["value"] == pytest.approx(0.2)
    assert data["goals"][0]["value"] == pytest.approx(25.0)
    assert "22.2% lower" in data["goals"][2]["detail"] and "+20.0%" in data["goals"][3]["detail"]


def test_empty_run_dir_reports_every_section_as_missing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    text, data = report.write_report(str(run), str(tmp_path / "out"))
    for section in report.SECTIONS:
        assert f"## {section}\n" in text
    assert text.count("MISSING") >= 10
    assert {g["status"] for g in data["goals"]} == {"MISSING"}


def test_scores_built_from_per_stage_scores_when_no_comparison(tmp_path):
    run = make_run_dir(str(tmp_path / "run"))
    os.remove(os.path.join(run, "scores", "comparison.json"))
    for stage, acc in (("base", 10.0), ("sft", 70.0)):
        _w(f"{run}/predictions/{stage}/scores.json",
           {"fa/sentiment": {"task": "sentiment", "n": 3, "accuracy": acc, "macro_f1": acc, "unparsed": 0.0}})
    _, data = report.write_report(run, str(tmp_path / "out"))
    assert data["scores"]["rows"]["base"]["fa/sentiment"] == 10.0
    assert list(data["scores"]["rows"]) == ["base", "sft"]


def test_stages_appear_in_the_order_they_ran(tmp_path):
    """A stage whose name sorts first but ran second (the demo's bilingual stage) stays second everywhere."""
    run = make_run_dir(str(tmp_path / "run"))
    history = {"log_history": [{"step": 10, "loss": 5.0}, {"step": 10, "train_runtime": 50.0, "train_loss": 5.0}]}
    _w(f"{run}/bilingual/trainer_state.json", history)
    _w(f"{run}/perplexity/bilingual/perplexity.json", _ppl("bilingual", 2200.0, 1040.0))
    ran = ["pretrain", "bilingual", "sft"]
    for i, stage in enumerate(ran):  # modification times in the order the stages ran
        for rel in (f"{stage}/trainer_state.json", f"perplexity/{stage}/perplexity.json"):
            os.utime(os.path.join(run, rel), (1_000_000 + i, 1_000_000 + i))
    text, data = report.write_report(run, str(tmp_path / "out"))
    assert list(data["training"]) == ran
    assert text.index("| bilingual | 1 |") > text.index("| pretrain | 3 |")
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| after ")]
    assert rows == ["| after pretraining", "| after bilingual", "| after SFT"]


def test_bad_run_dir_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--run_dir: .* is not a folder"):
        load_script().main(["--run_dir", str(tmp_path / "missing")])
    with pytest.raises(UsageError, match="--run_dir is required"):
        load_script().main([])
