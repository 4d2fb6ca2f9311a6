"""Scorer: label canonicalization, metrics equal to scikit-learn/sacrebleu, Persian-safe ROUGE, score.py files."""

from __future__ import annotations

import json
import os
import random

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, f1_score

from _inference_helpers import TESTSET_DIR, bundled, load_script, write_jsonl
from langadapt.cli import UsageError
from langadapt.evaldata import task_of, translation_target
from langadapt.metrics import (UNPARSED, UnicodeTokenizer, bleu_tokenizer, canonical_label, classification_scores,
                               extract_label, generation_scores)

score = load_script("inference/score.py")


@pytest.mark.parametrize("raw, key", [
    (0, "0"), ("0", "0"), ("۰", "0"), ("٢", "2"), (2.0, "2"), (" 1 ", "1"), ("1.", "1"),
    ("Positive", "positive"), ("positive", "positive"), ("POSITIVE.", "positive"), ("مثبت", "positive"),
    ("منفی", "negative"), ("خنثی", "neutral"), ("Neutral", "neutral"),
    ("b", "b"), ("B", "b"), ("Option B", "b"), ("(B)", "b"), ("B)", "b"), ("option (b)", "b"), ("Answer: B", "b"),
    ("The answer is B.", "b"), ("ب", "b"), ("گزینهٔ ب", "b"), ("گزینه ب", "b"), ("الف", "a"), ("د", "d"),
    ("پاسخ: ج", "c"), ("«استلزام»", "entailment"), ("Entailment", "entailment"), ("تناقض", "contradiction"),
    ("not entailment", "not_entailment"), ("not_entailment", "not_entailment"), ("بله", "yes"), ("خیر", "no"),
    ("", None), (None, None),
])
def test_canonical_label(raw, key):
    assert canonical_label(raw) == key


@pytest.mark.parametrize("text, labels, found", [
    ("The sentiment is positive.", ["negative", "neutral", "positive"], "positive"),
    ("این نظر منفی است، نه مثبت.", ["negative", "neutral", "positive"], "negative"),  # first mention wins
    ("Positive", ["negative", "positive"], "positive"),
    ("I think the answer is (C) because it is a metal.", ["a", "b", "c", "d"], "c"),
    ("a cat sat on a mat", ["a", "b", "c", "d"], None),  # the article "a" is not option A
    ("A", ["a", "b", "c", "d"], "a"),
    ("گزینهٔ ج درست است.", ["a", "b", "c", "d"], "c"),
    ("پاسخ درست د است", ["a", "b", "c", "d"], "d"),
    ("It is not entailment.", ["entailment", "not_entailment"], "not_entailment"),
    ("Entailment: the second follows.", ["entailment", "not_entailment"], "entailment"),
    ("برچسب ۲ است", ["0", "1", "2"], "2"),
    ("label 12", ["1", "2"], None),
    ("rain", ["positive", "negative"], None),
    (None, ["positive"], None),
])
def test_extract_label(text, labels, found):
    assert extract_label(text, labels) == found


def test_accuracy_and_macro_f1_equal_sklearn_on_random_predictions():
    rng = random.Random(0)
    spellings = {"positive": ["positive", "Positive", "مثبت"], "negative": ["negative", "NEGATIVE", "منفی"],
                 "neutral": ["neutral", "خنثی"]}
    keys = sorted(spellings)
    gold_keys = [rng.choice(keys) for _ in range(300)]
    golds = [rng.choice(spellings[k]) for k in gold_keys]
    pred_keys = [rng.choice(keys + [UNPARSED]) for _ in gold_keys]
    preds = [f"I would say {rng.choice(spellings[k])}." if k != UNPARSED else "no idea" for k in pred_keys]
    s = classification_scores(golds, preds)
    assert s["accuracy"] == pytest.approx(100 * accuracy_score(gold_keys, pred_keys))
    assert s["macro_f1"] == pytest.approx(100 * f1_score(gold_keys, pred_keys, labels=keys, average="macro"))
    assert s["unparsed_count"] == pred_keys.count(UNPARSED)
    assert s["unparsed"] == pytest.approx(100 * pred_keys.count(UNPARSED) / 300)
    # Mixed gold spellings of one label are one class.
    assert classification_scores([0, "0", "۰", 1], ["0", "۰", "zero is 0", "1"])["accuracy"] == 100.0


def test_bleu_and_chrf_equal_sacrebleu():
    en = [r["output"] for r in bundled("en", "translation_fa_en")]
    fa = [r["output"] for r in bundled("en", "translation_en_fa")]
    rng = random.Random(1)
    for refs, tokenize in ((en, "13a"), (fa, "intl")):
        hyps = [" ".join(rng.sample(r.split(), k=max(1, len(r.split()) - 2))) for r in refs]
        s = generation_scores(refs, hyps)
        assert bleu_tokenizer(refs) == tokenize
        assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score)
        assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
        assert 0 < s["bleu"] < 100
    assert generation_scores(fa, fa, bleu_tokenize="char")["bleu"] == pytest.approx(100.0)


def test_persian_rouge_needs_a_unicode_tokenizer():
    text = "فروش نان سبوس‌دار یک نانوایی در تبریز دو برابر شده است."
    default = rouge_scorer.RougeScorer(["rouge1"]).score(text, text)["rouge1"].fmeasure
    assert default == 0.0  # rouge_score's default tokenizer deletes Persian: why we pass our own
    s = generation_scores([text], [text])
    assert {k: round(v, 6) for k, v in s.items()} == {m: 100.0 for m in ("rouge1", "rouge2", "rougeL", "chrf",
                                                                          "bleu")}
    assert UnicodeTokenizer().tokenize("سبوس‌دار، کتابِ Big") == ["سبوس‌دار", "کتابِ", "big"]
    half = generation_scores([text], ["فروش نان سبوس‌دار یک نانوایی"])
    assert 0 < half["rougeL"] < 100 and half["rouge1"] == pytest.approx(100 * 2 * (5 / 5) * (5 / 11) / (1 + 5 / 11))
    # Arabic yeh/kaf in a prediction cost nothing: both sides are normalized.
    assert generation_scores(["کتاب یک"], ["كتاب يك"])["chrf"] == pytest.approx(100.0)


def _gold_predictions(pred_dir, langs=("fa", "en")) -> None:
    """A prediction folder whose outputs are the gold answers, for every bundled file."""
    for lang in langs:
        for name in sorted(os.listdir(os.path.join(TESTSET_DIR, lang))):
            recs = bundled(lang, name[:-5])
            write_jsonl(os.path.join(pred_dir, lang, name[:-5] + ".jsonl"), [
                {"id": i, "instruction": r["instruction"], "input": r["input"], "output": str(r["output"]),
                 "answer": r["output"]} for i, r in enumerate(recs)])


def test_gold_as_prediction_scores_100_on_every_bundled_file(tmp_path):
    _gold_predictions(tmp_path)
    scores = score.main(["--predictions_dir", str(tmp_path)])
    assert len(scores) == 12
    for key, s in scores.items():
        metrics = {k: v for k, v in s.items() if k not in ("task", "n", "errors", "unparsed", "unparsed_count")}
        assert metrics and all(v == pytest.approx(100.0) for v in metrics.values()), (key, s)
        assert s["n"] >= 20 and s["errors"] == 0
    assert json.load(open(tmp_path / "scores.json")) == json.loads(json.dumps(scores))
    assert scores["fa/multiple_choice"]["task"] == "multiple_choice"
    assert set(scores["en/translation_en_fa"]) == {"task", "n", "errors", "rouge1", "rouge2", "rougeL", "chrf", "bleu"}
    assert set(scores["fa/sentiment"]) == {"task", "n", "errors", "accuracy", "macro_f1", "unparsed",
                                           "unparsed_count"}
    md = (tmp_path / "scores.md").read_text(encoding="utf-8")
    assert "| fa/sentiment | sentiment | 24 | 0 | 100.0 | 100.0 | 0.0 | - |" in md


def test_failed_records_count_as_wrong(tmp_path):
    write_jsonl(tmp_path / "sentiment.jsonl", [
        {"id": 0, "output": "positive", "answer": "positive"},
        {"id": 1, "output": None, "answer": "negative", "error": "ValueError: too long"}])
    s = score.main(["--predictions_dir", str(tmp_path)])["sentiment"]
    assert (s["accuracy"], s["errors"], s["unparsed_count"]) == (50.0, 1, 1)


def test_task_from_name_or_flag(tmp_path):
    assert [task_of(k) for k in ("fa/sentiment", "nli_dev", "summarization", "pn_summary", "translation_en_fa",
                                 "multiple-choice", "mcq", "qa")] == [
        "sentiment", "entailment", "summary", "summary", "translation", "multiple_choice", "multiple_choice", None]
    assert translation_target("fa/translation_en_fa") == "fa"
    write_jsonl(tmp_path / "reviews.jsonl", [{"id": 0, "output": "Positive!", "answer": "positive"}])
    with pytest.raises(UsageError, match=r"reviews\.jsonl: cannot tell the task .* or pass --task"):
        score.main(["--predictions_dir", str(tmp_path)])
    assert score.main(["--predictions_dir", str(tmp_path), "--task", "sentiment"])["reviews"]["accuracy"] == 100.0
    with pytest.raises(UsageError, match="--task: unknown task 'qa'"):
        score.main(["--predictions_dir", str(tmp_path), "--task", "qa"])


@pytest.mark.parametrize("content, message", [
    ('{"id": 0, "output": "a", "answer": "a"}\n{"id": 0, "output": "b", "answer": "a"}\n', r":2: id 0 appears twice"),
    ('{"id": 0, "output": "a", "answer": "a"}\n{"id": 1, "outp\n', r"sentiment\.jsonl:2: not valid JSON"),
    ('{"output": "a"}\n', r"sentiment\.jsonl:1: expected a prediction record"),
    ('{"id": 0, "output": "a"}\n', r"records \[0\] have no gold"),
])
def test_bad_prediction_files(tmp_path, content, message):
    (tmp_path / "sentiment.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        score.main(["--predictions_dir", str(tmp_path)])
    assert not (tmp_path / "scores.json").exists()


def test_bad_score_flags(tmp_path):
    with pytest.raises(UsageError, match="holds no .jsonl prediction files"):
        score.main(["--predictions_dir", str(tmp_path)])
    with pytest.raises(UsageError, match="is not a folder"):
        score.main(["--predictions_dir", str(tmp_path / "nope")])
    with pytest.raises(UsageError, match="either --predictions_dir"):
        score.main([])
    with pytest.raises(UsageError, match="--compare needs --output_dir"):
        score.main(["--compare", f"a={tmp_path}"])
    with pytest.raises(UsageError, match="is not NAME=DIR"):
        score.main(["--compare", str(tmp_path), "--output_dir", str(tmp_path / "o")])
    with pytest.raises(UsageError, match="--bleu_tokenize"):
        score.main(["--predictions_dir", str(tmp_path), "--bleu_tokenize", "flores200"])


def test_compare_stages(tmp_path):
    gold, half = tmp_path / "sft", tmp_path / "base"
    _gold_predictions(gold)
    _gold_predictions(half, langs=("fa",))
    path = half / "fa" / "sentiment.jsonl"
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in recs[::2]:
        r["output"] = "I cannot tell."
    write_jsonl(path, recs)
    out = tmp_path / "cmp"
    table = score.main(["--compare", f"base={half}", f"sft={gold}", "--output_dir", str(out)])
    assert sorted(os.listdir(out)) == ["comparison.json", "comparison.md", "comparison.png"]
    assert list(table["rows"]) == ["base", "sft"]
    cols = [c["key"] for c in table["columns"]]
    assert cols[:2] == ["en/entailment", "fa/entailment"] and len(cols) == 12  # task x language
    assert table["rows"]["base"]["fa/sentiment"] == pytest.approx(50.0)
    assert table["rows"]["base"]["en/sentiment"] is None  # this stage has no English predictions
    assert table["rows"]["sft"]["fa/translation_en_fa"] == pytest.approx(100.0)
    md = (out / "comparison.md").read_text(encoding="utf-8").splitlines()
    assert md[0].startswith("| stage | entailment (en) accuracy | entailment (fa) accuracy |")
    assert md[2].startswith("| base | - | 100.0 (")  # (n) records per cell
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UsageError, match="exists and is not empty"):
        score.main(["--compare", f"base={half}", "--output_dir", str(out)])
    with pytest.raises(UsageError, match="--compare x: .* holds no .jsonl"):
        score.main(["--compare", f"x={tmp_path / 'cmp'}", "--output_dir", str(tmp_path / "o2")])


def _recorded_predictions(tmp_path, keep: int | None):
    """A one-file test set of 24 records, and a prediction folder whose run_args.json names it, holding the first
    ``keep`` predictions (None: all), as a killed inference job leaves them."""
    data = tmp_path / "testset"
    data.mkdir(exist_ok=True)
    records = [{"instruction": "احساس این جمله؟", "input": f"جمله {i}", "output": "مثبت"} for i in range(24)]
    (data / "sentiment.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    preds = tmp_path / f"pred{keep}"
    preds.mkdir()
    (preds / "run_args.json").write_text(json.dumps({"inference": {"data_dir": str(data)}}), encoding="utf-8")
    write_jsonl(str(preds / "sentiment.jsonl"),
                [{"id": i, "instruction": r["instruction"], "input": r["input"], "output": "مثبت", "answer": "مثبت"}
                 for i, r in enumerate(records[:keep])])
    return preds


def test_incomplete_predictions_are_refused_unless_allowed(tmp_path):
    """Finding 4: 7 of 24 records were scored with exit 0 and compared beside complete folders."""
    from langadapt.errors import InputError

    partial, full = _recorded_predictions(tmp_path, 7), _recorded_predictions(tmp_path, None)
    with pytest.raises(InputError, match=r"sentiment: 7 of 24 records \(missing ids 7, 8, 9, 10, 11, ...\)"):
        score.main(["--predictions_dir", str(partial)])
    assert not (partial / "scores.json").exists()
    with pytest.raises(InputError, match="--allow_incomplete") as e:
        score.main(["--compare", f"a={partial}", f"b={full}", "--output_dir", str(tmp_path / "cmp")])
    assert e.value.arg == "compare" and not (tmp_path / "cmp").exists()
    assert score.main(["--predictions_dir", str(full)])["sentiment"]["n"] == 24
    assert score.main(["--predictions_dir", str(partial), "--allow_incomplete"])["sentiment"]["n"] == 7
    score.main(["--compare", f"a={partial}", f"b={full}", "--output_dir", str(tmp_path / "cmp"),
                "--allow_incomplete"])
    md = (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8").splitlines()
    assert md[2] == "| a | 100.0 (7) |" and md[3] == "| b | 100.0 (24) |"
