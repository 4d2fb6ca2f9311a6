"""The bundled test sets: well-formed, normalized, parallel across languages, 20-50 items, tasks recognized."""

from __future__ import annotations

import os

from _inference_helpers import TESTSET_DIR
from langadapt.evaldata import file_key, list_testsets, load_testset, task_of
from langadapt.metrics import canonical_label
from langadapt.normalize import normalize

STEMS = ["entailment", "multiple_choice", "sentiment", "summary", "translation_en_fa", "translation_fa_en"]


def test_bundled_files_load_and_name_their_task():
    files = list_testsets(TESTSET_DIR)
    keys = [file_key(f, TESTSET_DIR) for f in files]
    assert keys == [f"{lang}/{s}" for lang in ("en", "fa") for s in STEMS]
    for path, key in zip(files, keys):
        examples = load_testset(path)
        assert 20 <= len(examples) <= 50, key
        assert task_of(key) is not None
        assert all(ex.gold not in (None, "") for ex in examples)


def test_bundled_persian_is_normalized_and_sets_are_parallel():
    for stem in STEMS:
        fa = load_testset(os.path.join(TESTSET_DIR, "fa", f"{stem}.json"))
        en = load_testset(os.path.join(TESTSET_DIR, "en", f"{stem}.json"))
        assert len(fa) == len(en), stem
        for ex in fa + en:
            for text in (ex.instruction, ex.input, str(ex.gold)):
                assert normalize(text) == text, text
        if stem in ("entailment", "multiple_choice", "sentiment"):
            # Same label in both languages, item by item (Persian label words map to the English ones).
            assert [canonical_label(e.gold) for e in fa] == [canonical_label(e.gold) for e in en], stem
    assert "\u200c" in load_testset(os.path.join(TESTSET_DIR, "fa", "summary.json"))[0].input  # ZWNJ kept
