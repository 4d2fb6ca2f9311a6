"""Prediction records (langadapt.evaldata): unambiguous field names, and files of older runs still read."""

from __future__ import annotations

import json

import pytest

from _inference_helpers import load_script, write_jsonl
from langadapt.errors import InputError
from langadapt.evaldata import (Example, open_predictions, prediction_record, read_predictions,
                                upgrade_prediction_record)

EXAMPLES = [Example(0, "احساس؟", "خوب بود", "مثبت"), Example(1, "احساس؟", "بد بود", "منفی")]


def test_prediction_record_names_model_answer_and_gold():
    rec = prediction_record(EXAMPLES[0], "منفی")
    assert rec == {"id": 0, "instruction": "احساس؟", "input": "خوب بود", "prediction": "منفی", "gold": "مثبت"}
    failed = prediction_record(EXAMPLES[1], None, "ValueError: too long")
    assert failed["prediction"] is None and failed["gold"] == "منفی" and failed["error"] == "ValueError: too long"


def test_old_records_are_upgraded_and_new_ones_left_alone():
    old = {"id": 0, "instruction": "i", "input": "x", "output": "model", "answer": "gold", "error": "E"}
    assert upgrade_prediction_record(old) == {"id": 0, "instruction": "i", "input": "x", "prediction": "model",
                                              "gold": "gold", "error": "E"}
    new = {"id": 0, "prediction": "model", "gold": "gold"}
    assert upgrade_prediction_record(new) is new


def test_read_predictions_reads_old_and_new_files_alike(tmp_path):
    new = [prediction_record(ex, "مثبت") for ex in EXAMPLES]
    old = [{"id": r["id"], "instruction": r["instruction"], "input": r["input"], "output": r["prediction"],
            "answer": r["gold"]} for r in new]
    assert read_predictions(write_jsonl(tmp_path / "new.jsonl", new)) == new
    assert read_predictions(write_jsonl(tmp_path / "old.jsonl", old)) == new
    with pytest.raises(InputError, match=r"bad\.jsonl:1: expected a prediction record"):
        read_predictions(write_jsonl(tmp_path / "bad.jsonl", [{"id": 0, "answer": "gold"}]))


def test_resuming_an_old_file_rewrites_it_with_the_new_names(tmp_path):
    path = write_jsonl(tmp_path / "sentiment.jsonl", [
        {"id": 0, "instruction": "احساس؟", "input": "خوب بود", "output": "مثبت", "answer": "مثبت"}])
    f, done = open_predictions(path, EXAMPLES)
    f.close()
    assert done == {0}
    assert [json.loads(line) for line in open(path, encoding="utf-8")] == [prediction_record(EXAMPLES[0], "مثبت")]


def test_old_and_new_files_score_the_same(tmp_path):
    score = load_script("inference/score.py")
    new = [prediction_record(EXAMPLES[0], "مثبت"), prediction_record(EXAMPLES[1], "مثبت")]
    write_jsonl(tmp_path / "new" / "sentiment.jsonl", new)
    write_jsonl(tmp_path / "old" / "sentiment.jsonl",
                [{"id": r["id"], "output": r["prediction"], "answer": r["gold"]} for r in new])
    got_new = score.main(["--predictions_dir", str(tmp_path / "new")])["sentiment"]
    got_old = score.main(["--predictions_dir", str(tmp_path / "old")])["sentiment"]
    assert got_new == got_old and got_new["accuracy"] == 50.0
