"""Translation instructions from pairs, in both directions, the instruction worded in Persian or English, in the SFT
stage's ``instruction``/``input``/``output`` format."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from langadapt.normalize import NormalizerConfig, normalize
from langadapt.parallel.pairs import Pair
from langadapt.parallel.ratios import allocate

DIRECTIONS = ("en_fa", "fa_en")

# Instruction wordings, several per direction and language so the model does not learn one fixed string.
INSTRUCTIONS = {
    ("en_fa", "en"): ("Translate the following text from English to Persian.",
                      "Translate this English text into Persian (Farsi).",
                      "What is the Persian translation of the following English text?"),
    ("fa_en", "en"): ("Translate the following text from Persian to English.",
                      "Translate this Persian (Farsi) text into English.",
                      "What is the English translation of the following Persian text?"),
    ("en_fa", "fa"): ("متن زیر را از انگلیسی به فارسی ترجمه کن.",
                      "این متن انگلیسی را به فارسی برگردان.",
                      "ترجمهٔ فارسی متن انگلیسی زیر چیست؟"),
    ("fa_en", "fa"): ("متن زیر را از فارسی به انگلیسی ترجمه کن.",
                      "این متن فارسی را به انگلیسی برگردان.",
                      "ترجمهٔ انگلیسی متن فارسی زیر چیست؟"),
}


def translation_instructions(pairs: Sequence[Pair], directions: Sequence[str], fa_wording_ratio: float,
                             seed: int, norm: NormalizerConfig | None = None) -> tuple[list[dict], dict]:
    """SFT examples ``{"instruction", "input", "output"}``: every pair once per direction, the instruction worded
    in Persian for ``fa_wording_ratio`` of them (exactly, per direction) and in English for the rest.

    Returns the shuffled examples and counts ``{"en_fa/fa": n, ...}`` (direction / wording language).
    """
    rng = random.Random(seed)
    examples, counts = [], Counter()
    for direction in directions:
        wordings = allocate(len(pairs), {"fa": fa_wording_ratio, "en": 1.0 - fa_wording_ratio}, rng)
        for pair, lang in zip(pairs, wordings):
            instruction = rng.choice(INSTRUCTIONS[(direction, lang)])
            if lang == "fa":
                instruction = normalize(instruction, norm)
            src, tgt = (pair.en, pair.fa) if direction == "en_fa" else (pair.fa, pair.en)
            examples.append({"instruction": instruction, "input": src, "output": tgt})
            counts[f"{direction}/{lang}"] += 1
    rng.shuffle(examples)
    return examples, dict(sorted(counts.items()))
