import pytest

from langadapt.normalize import NormalizerConfig, normalize

ZWNJ = "\u200c"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("علي", "علی"),  # Arabic yeh -> Persian yeh
        ("موسى", "موسی"),  # alef maksura -> Persian yeh
        ("كتاب", "کتاب"),  # Arabic kaf -> Persian kaf
        ("ﻛﺘﺎﺏ", "کتاب"),  # presentation forms folded
        ("می\u200cروم", "می\u200cروم"),  # a real ZWNJ is kept
        ("می\u200bروم", "می\u200cروم"),  # zero-width space inside a word is a mistyped ZWNJ
        ("می\u200dروم", "می\u200cروم"),  # so is a zero-width joiner
        ("می\u200c\u200cروم", "می\u200cروم"),  # runs collapse
        ("\u200cمی روم\u200c", "می روم"),  # ZWNJ at the edges does nothing
        ("می\u200c روم", "می روم"),  # ZWNJ before a space does nothing
        ("a\u200bb", "ab"),  # zero-width space outside Arabic script is dropped
        ("\u200fسلام\u200e", "سلام"),  # bidi marks removed
        ("\u202bسلام\u202c", "سلام"),  # embeddings removed
        ("\ufeffسلام", "سلام"),  # BOM removed
        ("ســـلام", "سلام"),  # kashida removed
        ("Hello, world!", "Hello, world!"),  # English untouched
        ("سَلام", "سَلام"),  # diacritics kept by default
        ("۱۲۳ 456 ٧٨٩", "۱۲۳ 456 ٧٨٩"),  # digits kept by default
    ],
)
def test_default_normalization(raw, expected):
    assert normalize(raw) == expected


def test_digit_options():
    assert normalize("۱۲۳ 456 ٧٨٩", NormalizerConfig(digits="fa")) == "۱۲۳ ۴۵۶ ۷۸۹"
    assert normalize("۱۲۳ 456 ٧٨٩", NormalizerConfig(digits="en")) == "123 456 789"
    with pytest.raises(ValueError, match="digits"):
        NormalizerConfig(digits="roman")


def test_diacritics_option():
    assert normalize("سَلام", NormalizerConfig(remove_diacritics=True)) == "سلام"


def test_disabled_is_identity():
    raw = "علي\u200f\u200b"
    assert normalize(raw, NormalizerConfig.disabled()) == raw
    assert NormalizerConfig.for_language("en") == NormalizerConfig.disabled()
    assert NormalizerConfig.for_language("fa") == NormalizerConfig()


def test_idempotent_on_real_text(persian_lines):
    for line in persian_lines[:2000]:
        assert normalize(line) == line  # the fixture is already normalized, so a second pass changes nothing


def test_config_round_trip(tmp_path):
    cfg = NormalizerConfig(digits="fa", remove_diacritics=True)
    cfg.save(tmp_path)
    assert NormalizerConfig.from_dir(tmp_path) == cfg
    assert NormalizerConfig.from_dir(tmp_path / "missing-dir-uses-default") == NormalizerConfig()
