"""langadapt.scripts: the one Unicode script table behind every "is this an Arabic-script letter" question."""

from __future__ import annotations

import re
import unicodedata

from langadapt.scripts import (ARABIC_BLOCK, ARABIC_LETTER, ARABIC_LETTERS, SCRIPT_BLOCKS, ZWNJ, has_arabic_letter,
                               script_chars)
from langadapt.vocab import allowed_chars


def test_arabic_letters_are_the_persian_letters_and_no_digit_or_punctuation():
    persian = "ابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهی" + "ءآأؤإئةۀ"
    assert all(ARABIC_LETTER.fullmatch(c) for c in persian)
    assert all(ARABIC_LETTER.fullmatch(c) for c in "يكى")  # the Arabic yeh/kaf/alef maksura too
    not_letters = "۰۱۹٠٩،؛؟٪۔" + "\u064b\u0650\u0652" + ZWNJ + "a1 "
    assert not any(ARABIC_LETTER.fullmatch(c) for c in not_letters)
    # Every character of the class is a letter (category L*) or the superscript alef U+0670 (a mark).
    members = [chr(i) for i in range(0x0600, 0x0700) if re.fullmatch(f"[{ARABIC_LETTERS}]", chr(i))]
    assert {unicodedata.category(c) for c in members} <= {"Lo", "Lm", "Mn"}
    assert [c for c in members if unicodedata.category(c) == "Mn"] == ["\u0670"]


def test_has_arabic_letter():
    assert has_arabic_letter("Hello سلام") and has_arabic_letter("كتاب")
    assert not has_arabic_letter("Hello, 123 ۱۲۳ ،؟")


def test_arabic_block_spans_the_whole_block():
    block = re.compile(f"[{ARABIC_BLOCK}]")
    assert all(block.fullmatch(chr(i)) for i in range(0x0600, 0x0700))
    assert not block.fullmatch("\u05ff") and not block.fullmatch("\u0700")


def test_script_chars_are_letters_and_marks_of_the_blocks_plus_zwnj():
    arabic = script_chars(("Arabic",))
    assert allowed_chars(("Arabic",)) == arabic
    assert ZWNJ in arabic and "پ" in arabic and "\u064b" in arabic  # letters, marks, ZWNJ
    assert not {"۱", "،", "؟", "a"} & arabic  # digits, punctuation, other scripts
    assert all(any(lo <= ord(c) <= hi for lo, hi in SCRIPT_BLOCKS["Arabic"]) for c in arabic - {ZWNJ})
    latin = script_chars(("Latin",))
    assert set("azAZé") <= latin and not set("09 _") & latin
    assert script_chars(("Arabic", "Latin")) == arabic | latin
