"""langadapt.hf_normalizer: tokenizer.json computes langadapt.normalize, so plain AutoTokenizer gets training's ids."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from langadapt.hf_normalizer import (
    attach_normalizer, detach_normalizer, has_normalizer, hf_normalizers, warn_if_missing,
)
from langadapt.normalize import NormalizerConfig, normalize

# Each case is one thing users paste: Arabic yeh/kaf, presentation forms (lam-alef, Allah ligature, a form followed by
# a vowel sign), kashida, stray and doubled ZWNJ, ZWJ/ZWSP/soft hyphen inside and outside words, bidi marks, BOM.
CASES = [
    "علي به كتابخانه رفت و كتابي خريد.",
    "مصطفى",
    "ﻻ إله ﺇﻻ ﷲ",
    "ﺑَﺮ ﺳﺮ ﺁﻥ",
    "کـــتـاب",
    "\u200cمی\u200c\u200cخواهم\u200c",
    "می\u200dخواهم و می\u200bروم، خانه\u00adها",
    "سلام \u200c دنیا\u200c.",
    "\u200fسلام\u200e \u202bدنیا\u202c\u2067!\u2069",
    "\ufeffاین متن BOM دارد",
    "a\u200bb soft\u00adhyphen e\u0301",
    "Plain English text, with punctuation; and digits 123.",
]


def _normalizer(config: NormalizerConfig | None = None):
    spec = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "pre_tokenizer": None,
            "normalizer": {"type": "Sequence", "normalizers": hf_normalizers(config)}, "post_processor": None,
            "decoder": None, "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}
    return Tokenizer.from_str(json.dumps(spec)).normalizer


@pytest.mark.parametrize("text", CASES)
def test_same_text_as_the_python_normalizer(text):
    assert _normalizer().normalize_str(text) == normalize(text)


@pytest.mark.parametrize("config", [
    NormalizerConfig(), NormalizerConfig(remove_diacritics=True, digits="fa"), NormalizerConfig(digits="en"),
    NormalizerConfig(unify_zwnj=False, remove_kashida=False), NormalizerConfig(unify_letters=False),
])
def test_random_strings_of_the_hard_characters(config):
    alphabet = list("سلامکتابیيكى ab1۱٢._\n") + [
        "\u200c", "\u200d", "\u200b", "\u00ad", "\u0640", "\u200f", "\ufeff", "\u064e", "\u0670", "\u0653",
        "\u0654", "\u0301", "\u00b2", "\ufef5", "\ufe91", "\ufe8e", "\ufdf2", "\ufb8e"]
    hf = _normalizer(config)
    rng = random.Random(0)
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        assert hf.normalize_str(s) == normalize(s, config), repr(s)


def test_disabled_config_adds_nothing():
    assert hf_normalizers(NormalizerConfig.disabled()) == []


@pytest.fixture()
def ext_tok(tmp_path, bpe_base_dir):
    d = str(tmp_path / "tok")
    shutil.copytree(bpe_base_dir, d)
    NormalizerConfig().save(d)
    return d


def test_attach_gives_langadapt_ids_on_raw_text_and_keeps_english(ext_tok, bpe_base_dir, persian_lines,
                                                                   english_lines):
    before = AutoTokenizer.from_pretrained(ext_tok)
    assert not has_normalizer(ext_tok)
    assert attach_normalizer(ext_tok) and has_normalizer(ext_tok)
    after = AutoTokenizer.from_pretrained(ext_tok)
    for text in CASES + persian_lines[:200]:
        raw = text.replace("ی", "ي").replace("ک", "ك")  # typed on an Arabic keyboard
        assert after(raw)["input_ids"] == before(normalize(raw))["input_ids"]
    for text in english_lines[:500]:
        assert after(text)["input_ids"] == before(text)["input_ids"]
    assert after(CASES[0])["input_ids"] != before(CASES[0])["input_ids"]  # the file did change what users get


def test_attach_is_idempotent_and_detach_restores(ext_tok):
    path = os.path.join(ext_tok, "tokenizer.json")
    original = json.load(open(path, encoding="utf-8"))["normalizer"]
    assert attach_normalizer(ext_tok)
    once = open(path, encoding="utf-8").read()
    assert not attach_normalizer(ext_tok)
    assert open(path, encoding="utf-8").read() == once
    assert detach_normalizer(ext_tok)
    assert json.load(open(path, encoding="utf-8"))["normalizer"] == original
    assert not detach_normalizer(ext_tok)


def test_sentencepiece_tokenizer_keeps_its_own_normalizer_after_ours(tmp_path, sp_base_dir):
    d = str(tmp_path / "sp")
    AutoTokenizer.from_pretrained(sp_base_dir).save_pretrained(d)
    own = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))["normalizer"]
    before = AutoTokenizer.from_pretrained(d)
    attach_normalizer(d, NormalizerConfig())
    steps = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))["normalizer"]["normalizers"]
    ours = hf_normalizers()
    own_steps = (own or {}).get("normalizers", [own] if own else [])
    assert steps[len(ours):] == own_steps
    after = AutoTokenizer.from_pretrained(d)
    for text in CASES:
        # Known difference (NOT_EXPRESSIBLE): a removed first character keeps Metaspace from prepending its "▁".
        text = text if normalize(text[:1]) else "x" + text
        assert after(text)["input_ids"] == before(normalize(text))["input_ids"]


def test_folder_from_an_older_version_gets_a_warning(ext_tok, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="langadapt.hf_normalizer"):
        assert warn_if_missing(ext_tok)
    assert "older langadapt" in caplog.text and "attach_normalizer" in caplog.text
    attach_normalizer(ext_tok)
    assert not warn_if_missing(ext_tok)
    assert not warn_if_missing(str(tmp_path))  # no langadapt_normalizer.json: nothing to say
