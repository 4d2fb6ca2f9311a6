"""Unicode script tables: which characters belong to a writing system, defined once for every module that asks.

Python's :mod:`unicodedata` has no script property, so a script is a list of Unicode blocks (:data:`SCRIPT_BLOCKS`).
Two narrower Arabic-script sets are used for Persian text:

* :data:`ARABIC_LETTERS`: the letters of the Arabic block and its Persian/Urdu extensions (no digits, punctuation
  or combining marks), the test for "is this an Arabic-script letter" (normalization decides with it whether a
  zero-width character sits inside a word; the parallel-data filter whether a side holds Persian at all);
* :data:`ARABIC_BLOCK`: the whole U+0600-U+06FF block (letters, marks, Arabic-Indic digits, Arabic punctuation).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# ZERO WIDTH NON-JOINER: part of Persian spelling (می‌روم), so it belongs inside Arabic-script words.
ZWNJ = "\u200c"

# Unicode blocks of each script. Only letters and combining marks of these blocks count (category L* or M*, see
# script_chars), so Arabic-Indic digits and Arabic punctuation (، ؛ ؟) are not "Arabic" there: with split_digits
# and punctuation kept out, a tokenizer add-on cannot change how numbers or punctuation segment.
SCRIPT_BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    "Arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0x0870, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF)),
    "Cyrillic": ((0x0400, 0x052F),),
    "Greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "Hebrew": ((0x0590, 0x05FF),),
    "Armenian": ((0x0530, 0x058F),),
    "Georgian": ((0x10A0, 0x10FF),),
    "Devanagari": ((0x0900, 0x097F),),
    "Bengali": ((0x0980, 0x09FF),),
    "Tamil": ((0x0B80, 0x0BFF),),
    "Thai": ((0x0E00, 0x0E7F),),
    "Ethiopic": ((0x1200, 0x139F),),
    "Hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF)),
    "Han": ((0x3400, 0x4DBF), (0x4E00, 0x9FFF)),
    "Hiragana": ((0x3040, 0x309F),),
    "Katakana": ((0x30A0, 0x30FF),),
}
# Characters that belong inside words of a script without being letters.
SCRIPT_EXTRA_CHARS: dict[str, str] = {"Arabic": ZWNJ}

# Regex class bodies (use inside [...]). ARABIC_LETTERS: U+0620-064A (hamza-on-yeh .. yeh), U+066E-06D3 (the
# extended letters: پ چ ژ ک گ ی ...), U+06D5 (ae), U+06FA-06FC and U+06FF; it leaves out the tatweel-free marks
# U+064B-065F, the digits U+0660-0669/U+06F0-06F9 and the punctuation U+066A-066D/U+06D4.
ARABIC_LETTERS = "\u0620-\u064a\u066e-\u06d3\u06d5\u06fa-\u06fc\u06ff"
ARABIC_BLOCK = "\u0600-\u06ff"
ARABIC_LETTER = re.compile(f"[{ARABIC_LETTERS}]")


def has_arabic_letter(text: str) -> bool:
    """Whether ``text`` holds at least one Arabic-script letter (:data:`ARABIC_LETTERS`)."""
    return ARABIC_LETTER.search(text) is not None


@lru_cache(maxsize=None)
def script_chars(scripts: tuple[str, ...]) -> frozenset[str]:
    """Letters and marks of ``scripts`` (names of :data:`SCRIPT_BLOCKS`) plus their in-word extras (ZWNJ for
    Arabic)."""
    chars = set()
    for name in scripts:
        for lo, hi in SCRIPT_BLOCKS[name]:
            chars.update(c for c in map(chr, range(lo, hi + 1)) if unicodedata.category(c)[0] in "LM")
        chars.update(SCRIPT_EXTRA_CHARS.get(name, ""))
    return frozenset(chars)
